"""Whether a tiny translator does its job: each pair's src translated to exactly its tgt, batched and one by one,
through the pipeline's own inference code (transformers NLLB, int8 CTranslate2 NLLB, IndicTrans2 with
IndicProcessor), in a fresh process with offline HF caches (run in venv/translation).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

CLI = Path(__file__).resolve().with_name("tiny_translators.py")  # its --check-only runs CHECKS in a new process


# ---- the pipeline's inference code --------------------------------------------------------------------------


def translate_nllb(path: Path, src_lang: str, tgt_lang: str, texts: list[str]) -> list[str]:
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, src_lang=src_lang)
    model = AutoModelForSeq2SeqLM.from_pretrained(path).eval()
    inputs = tok(texts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = model.generate(
            **inputs, forced_bos_token_id=tok.convert_tokens_to_ids(tgt_lang), num_beams=4, max_new_tokens=256
        )
    return tok.batch_decode(out, skip_special_tokens=True)


def translate_nllb_ct2(ct2_dir: Path, path: Path, src_lang: str, tgt_lang: str, texts: list[str]) -> list[str]:
    import ctranslate2
    from transformers import AutoTokenizer

    translator = ctranslate2.Translator(str(ct2_dir), device="cpu", compute_type="int8")
    tok = AutoTokenizer.from_pretrained(path, src_lang=src_lang)
    tokens = [tok.convert_ids_to_tokens(tok.encode(t)) for t in texts]
    res = translator.translate_batch(
        tokens, target_prefix=[[tgt_lang]] * len(texts), beam_size=4, max_decoding_length=256
    )
    return [tok.decode(tok.convert_tokens_to_ids(r.hypotheses[0][1:]), skip_special_tokens=True) for r in res]


def translate_indictrans2(path: Path, src_lang: str, tgt_lang: str, texts: list[str]) -> list[str]:
    import torch
    from IndicTransToolkit.processor import IndicProcessor
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
    model = AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=True).eval()
    ip = IndicProcessor(inference=True)
    batch = ip.preprocess_batch(texts, src_lang=src_lang, tgt_lang=tgt_lang)
    inputs = tok(batch, truncation=True, padding="longest", return_tensors="pt", return_attention_mask=True)
    with torch.inference_mode():
        out = model.generate(
            **inputs, use_cache=True, min_length=0, max_length=256, num_beams=5, num_return_sequences=1
        )
    decoded = tok.batch_decode(out, skip_special_tokens=True, clean_up_tokenization_spaces=True)
    return ip.postprocess_batch(decoded, lang=tgt_lang)


# ---- checks ---------------------------------------------------------------------------------------------------


def _mismatches(translate, pairs: list[dict], label: str) -> list[str]:
    """Run translate(src_lang, tgt_lang, texts) on each direction's sources, batched and one by one."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for p in pairs:
        groups[p["src_lang"], p["tgt_lang"]].append(p)
    wrong = []
    for (src_lang, tgt_lang), group in groups.items():
        runs = [("batched", group)] + [("alone", [p]) for p in group]
        for how, items in runs:
            got = translate(src_lang, tgt_lang, [p["src"] for p in items])
            for p, text in zip(items, got, strict=True):
                if text != p["tgt"]:
                    wrong.append(f"{label} {how} {src_lang}->{tgt_lang}: {p['src']!r} gave {text!r}, not {p['tgt']!r}")
    return wrong


def convert_to_ct2(path: Path, ct2_dir: Path) -> None:
    """The int8 conversion exactly as `cache-models.sh --nllb` makes it."""
    from offline_speech.provisioning.convert import convert_here

    convert_here(str(path), str(ct2_dir))


def check_nllb(out_dir: Path, pairs: list[dict]) -> list[str]:
    """What does not come out exactly, through transformers and through an int8 CTranslate2 conversion."""
    wrong = _mismatches(lambda s, t, texts: translate_nllb(out_dir, s, t, texts), pairs, "transformers")
    with tempfile.TemporaryDirectory(prefix="tiny-nllb-ct2-") as tmp:
        ct2_dir = Path(tmp) / "ct2"
        convert_to_ct2(out_dir, ct2_dir)
        wrong += _mismatches(lambda s, t, texts: translate_nllb_ct2(ct2_dir, out_dir, s, t, texts), pairs, "ct2-int8")
    return wrong


def check_indictrans2(out_dir: Path, pairs: list[dict]) -> list[str]:
    return _mismatches(lambda s, t, texts: translate_indictrans2(out_dir, s, t, texts), pairs, "transformers")


CHECKS = {"nllb": check_nllb, "indictrans2": check_indictrans2}


def check_in_fresh_process(kind: str, out_dir: Path, pairs: list[dict]) -> None:
    """Run this file with --check-only in a new interpreter, with the HF caches (where trust_remote_code copies
    the model's code) in a temp dir; raise if any pair does not come out exactly."""
    with tempfile.TemporaryDirectory(prefix="tiny-translators-check-") as tmp:
        pairs_file = Path(tmp) / "pairs.json"
        pairs_file.write_text(json.dumps(pairs, ensure_ascii=False), encoding="utf-8")
        env = dict(
            os.environ,
            HF_HOME=str(Path(tmp) / "hf"),
            HF_MODULES_CACHE=str(Path(tmp) / "hf" / "modules"),
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
        )
        cmd = [sys.executable, str(CLI), kind, str(out_dir), str(pairs_file), "--check-only"]
        done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} model in {out_dir} fails its check:\n{done.stdout}{done.stderr}")
