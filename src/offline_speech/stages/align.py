"""align: word timestamps with whisperx.alignment and the aligner the catalog names for the language.

Hub aligners (wav2vec2 CTC repos) load from their cached snapshot; torchaudio aligners (en/fr/de/es/it) from
$TORCH_HOME/hub/checkpoints with weights_only=True (tensors only, no arbitrary pickled objects). Sentences are
split with nltk punkt_tab from $NLTK_DATA. A job whose language has no aligner keeps its segment timestamps (and
Whisper's own word estimates from asr) and gets a warning. Every aligner is loaded once per run, whatever the
number of jobs. Runs in venv/whisperx.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..schema import read_transcript
from ..util import write_json
from .audio import read_wav
from .base import Events, StageFailure, for_each_job, main

NAME = "align"


def load_aligner(spec: dict, device: str):
    """(model, whisperx metadata) for a catalog aligner resolved by the runner."""
    import whisperx.alignment as wxa

    if spec["kind"] == "torchaudio":
        import torchaudio

        bundle = getattr(torchaudio.pipelines, wxa.DEFAULT_ALIGN_MODELS_TORCH[spec["language"]])
        model_dir = str(Path(spec["path"]).parent)
        model = bundle.get_model(dl_kwargs={"model_dir": model_dir, "weights_only": True, "progress": False})
        labels = bundle.get_labels()
        metadata = {
            "language": spec["language"],
            "dictionary": {c.lower(): i for i, c in enumerate(labels)},
            "type": "torchaudio",
        }
        return model.to(device).eval(), metadata
    model, metadata = wxa.load_align_model(spec["language"], device, model_name=spec["path"], model_cache_only=True)
    return model.eval(), metadata


def check_punkt(fetch: str) -> None:
    """StageFailure naming `fetch` (the command that caches it) when punkt_tab is not on NLTK_DATA."""
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        raise StageFailure(
            f"nltk punkt_tab is not in the cache (whisperx would fetch it from GitHub): {fetch}"
        ) from None


def words_with_times(segment: dict) -> list[dict]:
    """whisperx leaves characters it cannot align (digits, symbols) without times: give such words the
    neighbouring times inside their segment (marked interpolated) so every word has a start and an end."""
    words = [dict(w) for w in segment.get("words", []) if str(w.get("word", "")).strip()]
    lo, hi = segment["start"], segment["end"]
    for i, w in enumerate(words):
        if "start" in w and "end" in w:
            w["start"], w["end"] = min(max(w["start"], lo), hi), min(max(w["end"], lo), hi)
            continue
        before = next((words[j]["end"] for j in range(i - 1, -1, -1) if "end" in words[j]), lo)
        after = next((words[j]["start"] for j in range(i + 1, len(words)) if "start" in words[j]), hi)
        w["start"], w["end"], w["interpolated"] = before, max(before, after), True
    out, last = [], lo
    for w in words:
        start = max(round(w["start"], 3), last)
        end = max(round(w["end"], 3), start)
        item = {"word": w["word"], "start": start, "end": end}
        if w.get("score") is not None:
            item["score"] = round(float(w["score"]), 3)
        if w.get("interpolated"):
            item["interpolated"] = True
        out.append(item)
        last = start
    return out


def run(request: dict, events: Events) -> None:
    device = "cpu"
    loaded: dict[str, tuple] = {}
    aligners = [job["aligner"] for job in request["jobs"] if job.get("aligner")]
    if aligners:
        import torch
        import whisperx.alignment as wxa

        check_punkt(aligners[0].get("fetch", "./cache-models.sh --align"))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        torch.set_num_threads(max(1, torch.get_num_threads()))

    def work(job: dict) -> dict:
        doc = read_transcript(Path(job["inputs"]["transcript"]))
        spec = job.get("aligner")
        if not spec or not doc["segments"]:
            reason = job.get("no_aligner_reason") or "no speech to align"
            if spec is None:
                note = f"word times are Whisper's own estimates, not a wav2vec2 alignment: {reason}"
                doc["warnings"].append(note)
                events.log(job["id"], f"WARNING: {note}; segment timestamps kept")
            doc["stage"], doc["aligner"] = NAME, None
            write_json(Path(job["outputs"]["transcript"]), doc)
            return {"aligned": False, "warnings": doc["warnings"]}
        if spec["key"] not in loaded:
            t0 = time.monotonic()
            try:
                loaded[spec["key"]] = load_aligner(spec, device)
            except Exception as exc:
                raise StageFailure(f"could not load aligner {spec['key']} from {spec['path']}: {exc}") from exc
            events.model_loaded(spec["key"], spec.get("commit"), t0, device=device)
        model, metadata = loaded[spec["key"]]
        offset = doc["clip"]["start"]
        audio = read_wav(Path(job["inputs"]["audio"]))
        relative = [
            {"start": s["start"] - offset, "end": s["end"] - offset, "text": s["text"]} for s in doc["segments"]
        ]
        t0 = time.monotonic()
        result = wxa.align(relative, model, metadata, audio, device, return_char_alignments=False)
        segments = []
        for seg in result["segments"]:
            start, end = round(seg["start"] + offset, 3), round(seg["end"] + offset, 3)
            shifted = {
                "start": start,
                "end": end,
                "words": [
                    {**w, **{k: w[k] + offset for k in ("start", "end") if k in w}} for w in seg.get("words", [])
                ],
            }
            segments.append(
                {"start": start, "end": end, "text": seg["text"].strip(), "words": words_with_times(shifted)}
            )
            events.progress(job["id"], seg["end"])
        segments.sort(key=lambda s: s["start"])
        doc.update(stage=NAME, segments=segments, aligner={"key": spec["key"], "commit": spec.get("commit")})
        words = sum(len(s["words"]) for s in segments)
        interpolated = sum(1 for s in segments for w in s["words"] if w.get("interpolated"))
        events.log(
            job["id"],
            f"aligned {words} words in {len(segments)} segments with {spec['key']} "
            f"in {time.monotonic() - t0:.2f} s ({interpolated} interpolated)",
        )
        write_json(Path(job["outputs"]["transcript"]), doc)
        return {"aligned": True, "words": words, "interpolated": interpolated}

    for_each_job(request, events, work)


if __name__ == "__main__":
    main(run)
