"""translate: every segment of the source transcript into every target language, keeping each segment's timing.

Runs in the translation venv. The request names the models of the run (`models`: key -> spec) and, per job,
its targets with the route chosen at prepare time (IndicTrans2 direction or NLLB, FLORES-200 codes). The stage
loads each model once, translates the segments of every job and target that use it (deduplicated, sorted by
length, batched), frees it, and goes on with the next model; so a run needs one model in memory at a time.

IndicTrans2 goes through IndicTransToolkit's IndicProcessor (pre- and post-processing) with the remote code of
the exact commit in the lock (`trust_remote_code` only where the catalog says so). That code runs only when every
module it may import (each .py of the snapshot, each class its auto_map names, in this repo or another) has the
sha256 the catalog pins for the commit it comes from (reviewed code), or when the user allowed
it for this run (run-pipeline.sh --trust-remote-code); otherwise the model is refused before anything imports
it (`remote_code_refusal`, which preflight asks too). NLLB runs on CTranslate2 int8
when cache-models.sh has converted it (`ct2` in the spec), otherwise on transformers. Device: CUDA, then Apple
MPS (transformers only), then CPU.
"""

from __future__ import annotations

import gc
import time
import traceback
from pathlib import Path

from ..remote_code import remote_code_refusal
from ..schema import read_transcript
from ..util import usable_cpus, write_json
from .base import Events, StageFailure, main

NAME = "translate"
MAX_TOKENS = 256
NLLB_BEAMS = 4
INDICTRANS2_BEAMS = 5  # what IndicTrans2's authors use


def pick_device(cuda: bool, mps: bool) -> str:
    """transformers' device: CUDA, then Apple's Metal (MPS), then the CPU."""
    return "cuda" if cuda else "mps" if mps else "cpu"


def device() -> str:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return pick_device(torch.cuda.is_available(), mps is not None and mps.is_available())


def torch_dtype_name(where: str) -> str:
    """float16 on CUDA; float32 elsewhere (MPS float16 generation is not reliable for these models; CPU lacks it)."""
    return "float16" if where == "cuda" else "float32"


def ct2_target(cuda_devices: int, cpus: int) -> tuple[str, str, int]:
    """CTranslate2's (device, compute type, intra threads): int8_float16 on CUDA, int8 on every CPU core."""
    return ("cuda", "int8_float16", 0) if cuda_devices > 0 else ("cpu", "int8", max(1, cpus))


def batch_size(where: str) -> int:
    return 64 if where == "cuda" else 16


class Translator:
    """A loaded model that translates lists of sentences between FLORES-200 codes, `batch` at a time."""

    engine = "?"
    batch = 16

    def translate(self, texts: list[str], src: str, tgt: str) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class TransformersTranslator(Translator):
    """NLLB / M2M100 or IndicTrans2 on transformers (torch)."""

    def __init__(self, spec: dict):
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        self.torch = torch
        self.device = device()
        self.indic = spec["kind"] == "indictrans2"
        remote = bool(spec.get("trust_remote_code"))
        self.engine = f"transformers ({self.device})"
        self.batch = batch_size(self.device)
        dtype = getattr(torch, torch_dtype_name(self.device))
        self.tokenizer = AutoTokenizer.from_pretrained(spec["path"], trust_remote_code=remote)
        model = AutoModelForSeq2SeqLM.from_pretrained(spec["path"], trust_remote_code=remote, torch_dtype=dtype)
        self.model = model.to(self.device).eval()
        if self.indic:
            from IndicTransToolkit.processor import IndicProcessor

            self.processor = IndicProcessor(inference=True)

    def translate(self, texts: list[str], src: str, tgt: str) -> list[str]:
        tok, torch = self.tokenizer, self.torch
        if self.indic:
            batch = self.processor.preprocess_batch(texts, src_lang=src, tgt_lang=tgt)
            inputs = tok(batch, truncation=True, padding="longest", return_tensors="pt", return_attention_mask=True)
            options = {"use_cache": True, "min_length": 0, "max_length": MAX_TOKENS, "num_beams": INDICTRANS2_BEAMS}
        else:
            tok.src_lang = src
            inputs = tok(texts, truncation=True, max_length=MAX_TOKENS, padding=True, return_tensors="pt")
            options = {
                "forced_bos_token_id": tok.convert_tokens_to_ids(tgt),
                "num_beams": NLLB_BEAMS,
                "max_new_tokens": MAX_TOKENS,
            }
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            generated = self.model.generate(**inputs, num_return_sequences=1, **options)
        if self.indic:
            decoded = tok.batch_decode(generated, skip_special_tokens=True, clean_up_tokenization_spaces=True)
            return list(self.processor.postprocess_batch(decoded, lang=tgt))
        return tok.batch_decode(generated, skip_special_tokens=True)

    def close(self) -> None:
        del self.model
        gc.collect()
        if self.device == "cuda":
            self.torch.cuda.empty_cache()


class CTranslate2Translator(Translator):
    """NLLB converted to CTranslate2 (int8 on CPU, int8_float16 on CUDA); the tokenizer of the source snapshot."""

    def __init__(self, spec: dict):
        import ctranslate2
        from transformers import AutoTokenizer

        where, compute, threads = ct2_target(ctranslate2.get_cuda_device_count(), usable_cpus())
        self.engine = f"ctranslate2 {compute} ({where})"
        self.batch = batch_size(where)
        self.tokenizer = AutoTokenizer.from_pretrained(spec["path"])
        self.model = ctranslate2.Translator(spec["ct2"], device=where, compute_type=compute, intra_threads=threads)

    def translate(self, texts: list[str], src: str, tgt: str) -> list[str]:
        tok = self.tokenizer
        tok.src_lang = src
        tokens = [tok.convert_ids_to_tokens(tok.encode(t, truncation=True, max_length=MAX_TOKENS)) for t in texts]
        results = self.model.translate_batch(
            tokens, target_prefix=[[tgt]] * len(texts), beam_size=NLLB_BEAMS, max_decoding_length=MAX_TOKENS
        )
        return [tok.decode(tok.convert_tokens_to_ids(r.hypotheses[0][1:]), skip_special_tokens=True) for r in results]

    def close(self) -> None:
        del self.model
        gc.collect()


def load(spec: dict) -> Translator:
    refusal = remote_code_refusal(spec)
    if refusal:
        raise StageFailure(refusal)
    if spec["kind"] == "nllb" and spec.get("ct2"):
        return CTranslate2Translator(spec)
    return TransformersTranslator(spec)


def translate_all(translator: Translator, texts: list[str], src: str, tgt: str, size: int, done=None) -> list[str]:
    """Translate `texts` (duplicates and empty strings handled once), batched by similar length."""
    unique = sorted({t.strip() for t in texts if t.strip()}, key=len)
    result: dict[str, str] = {"": ""}
    for i in range(0, len(unique), size):
        chunk = unique[i : i + size]
        for source, target in zip(chunk, translator.translate(chunk, src, tgt)):
            result[source] = target.strip()
        if done:
            done(min(i + size, len(unique)), len(unique))
    return [result[t.strip()] for t in texts]


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _write(job: dict, doc: dict, translations: dict[str, list[str]], models: dict) -> None:
    """One transcript document per target: the source segments' times and speakers (a --diarize job's `[anna]` on
    every translated cue too), the translated text (and the source's)."""
    for target in job["targets"]:
        lang = target["language"]
        if lang not in translations:
            raise StageFailure(f"no model in this run translates into {lang}")
        spec = models[target["model"]]
        segments = [
            {
                "start": s["start"],
                "end": s["end"],
                "text": text,
                "source": s["text"],
                **({"speaker": s["speaker"]} if "speaker" in s else {}),
            }
            for s, text in zip(doc["segments"], translations[lang])
        ]
        write_json(
            Path(job["outputs"][lang]),
            {
                **{k: doc[k] for k in ("kind", "schema", "job", "clip", "warnings")},
                "stage": NAME,
                "language": lang,
                "source_language": doc["language"],
                "segments": segments,
                "model": {
                    "key": target["model"],
                    "commit": spec.get("commit"),
                    "kind": spec["kind"],
                    "src": target["src"],
                    "tgt": target["tgt"],
                },
            },
        )


def run(request: dict, events: Events) -> None:
    jobs = {job["id"]: job for job in request["jobs"]}
    docs: dict[str, dict] = {}
    failed: dict[str, str] = {}
    for jid, job in jobs.items():
        events.job_started(jid)
        try:
            docs[jid] = read_transcript(Path(job["inputs"]["transcript"]))
        except Exception as exc:  # a bad input fails its job only
            failed[jid] = str(exc).splitlines()[0]
    results: dict[str, dict[str, list[str]]] = {jid: {} for jid in jobs}  # job -> target -> translated segments
    finished = dict.fromkeys(jobs, 0)
    for key, spec in request["models"].items():
        users = [
            (jid, t) for jid, job in jobs.items() if jid not in failed for t in job["targets"] if t["model"] == key
        ]
        if not users:
            continue
        started = time.monotonic()
        try:
            translator = load(spec)
        except StageFailure as exc:  # refused (remote code): one line, no traceback
            for jid, _ in users:
                failed.setdefault(jid, str(exc))
            continue
        except Exception as exc:  # the jobs that need this model fail, the others go on
            traceback.print_exc()
            for jid, _ in users:
                failed.setdefault(jid, f"{key} did not load: {_one_line(exc)}")
            continue
        events.model_loaded(key, spec.get("commit"), started, engine=translator.engine)
        for jid, target in users:
            if jid in failed:
                continue
            texts = [s["text"] for s in docs[jid]["segments"]]
            clip = docs[jid]["clip"]
            span = clip["end"] - clip["start"]

            def done(n: int, total: int, jid: str = jid, span: float = span) -> None:
                share = (finished[jid] + n / max(total, 1)) / max(len(jobs[jid]["targets"]), 1)
                events.progress(jid, span * share)

            t0 = time.monotonic()
            try:
                results[jid][target["language"]] = translate_all(
                    translator, texts, target["src"], target["tgt"], translator.batch, done
                )
            except Exception as exc:
                traceback.print_exc()
                failed[jid] = f"{target['src']} -> {target['tgt']} with {key}: {_one_line(exc)}"
                continue
            finished[jid] += 1
            events.log(
                jid,
                f"{target['language']}: {len(texts)} segments with {key} ({translator.engine}) "
                f"{target['src']} -> {target['tgt']} in {time.monotonic() - t0:.2f} s",
            )
        translator.close()
    for jid, job in jobs.items():
        if jid in failed:
            events.job_failed(jid, failed[jid])
            continue
        try:
            _write(job, docs[jid], results[jid], request["models"])
        except StageFailure as exc:
            events.job_failed(jid, str(exc))
            continue
        events.job_done(jid, job["outputs"], {"targets": [t["language"] for t in job["targets"]]})


if __name__ == "__main__":
    main(run)
