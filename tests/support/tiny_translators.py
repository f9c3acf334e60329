"""Build tiny translation models that reproduce a few sentence pairs exactly (run in venv/translation).

    venv/translation/bin/python tests/support/tiny_translators.py {nllb|indictrans2} OUT_DIR PAIRS_JSON [--check-only]

PAIRS_JSON holds a list of {"src_lang": "eng_Latn", "tgt_lang": "fra_Latn", "src": "...", "tgt": "..."} objects
(FLORES-200 codes; several language pairs and directions may share one model). The translation tests need models
that load and run through the very code the pipeline runs, offline and in seconds, and whose output is known in
advance: each builder trains a 2-layer, 64-wide transformer on the pairs until every target token is predicted with
a probability above TARGET_PROB, saves it laid out like the real hub repo, then reloads OUT_DIR in a fresh process
and checks that each pair's src translates to exactly its tgt, batched and one by one, with the inference code of
translate_nllb, translate_nllb_ct2 and translate_indictrans2 (the pipeline's). The CLI exits 0 only if all match.
A build is deterministic (fixed seed, one thread) and takes seconds on a CPU.

nllb: an M2M100ForConditionalGeneration shaped like facebook/nllb-200-*, with NllbTokenizer over a sentencepiece
  BPE model trained on the pair texts (same ids as NLLB: <s> 0, <pad> 1, </s> 2, <unk> 3, pieces, all of
  NllbTokenizer's FLORES-200 language codes, <mask>), so any FLORES code works as src_lang or forced BOS.
  OUT_DIR: config.json, generation_config.json, model.safetensors, sentencepiece.bpe.model, special_tokens_map.json,
  tokenizer.json, tokenizer_config.json. The check also runs a CTranslate2 int8 conversion of it (in a temp dir,
  with offline_speech.provisioning.convert, as cache-models.sh --nllb does).
  tokenizer.json comes from transformers' NllbConverter, fed through sentencepiece because the converter's own
  reader needs protobuf, which the translation venv does not install (AutoTokenizer needs tokenizer.json then).
indictrans2: a model shaped like ai4bharat/indictrans2-*-1B, loaded with trust_remote_code: OUT_DIR holds short
  configuration_indictrans.py, modeling_indictrans.py (M2M100 subclasses: the encoder embeds the source vocabulary,
  the decoder and output layer the target one) and tokenization_indictrans.py (IndicTransTokenizer: model.SRC /
  model.TGT sentencepiece models, dict.SRC.json / dict.TGT.json vocabularies, language tags in the source one),
  config.json and tokenizer_config.json with their auto_map, generation_config.json, special_tokens_map.json and
  model.safetensors, plus the pytorch_model.bin twin the real repos carry, here a decoy of the same size (not a
  pickle: this project never writes or loads one) so that tests can prove provisioning skips it. Sources are
  trained in the form IndicProcessor.preprocess_batch gives them; each target in the first form among
  (IndicProcessor's target preprocessing, the raw text) that decode + IndicProcessor.postprocess_batch turns back
  into exactly tgt.

This file is the command line; the builders are tiny_translators_nllb.py and tiny_translators_indictrans2.py, their
shared training tiny_translators_train.py, the checks tiny_translators_check.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if not __package__:  # run by path in venv/translation: import the siblings as the package `support`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "support"

from .tiny_translators_check import CHECKS
from .tiny_translators_indictrans2 import build_indictrans2
from .tiny_translators_nllb import build_nllb
from .tiny_translators_train import setup_torch

BUILDERS = {"nllb": build_nllb, "indictrans2": build_indictrans2}


def load_pairs(path: Path) -> list[dict]:
    pairs = json.loads(Path(path).read_text(encoding="utf-8"))
    keys = {"src_lang", "tgt_lang", "src", "tgt"}
    if not pairs or not all(isinstance(p, dict) and keys <= p.keys() for p in pairs):
        raise ValueError(f"{path}: expected a non-empty list of objects with {sorted(keys)}")
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(BUILDERS))
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("pairs_json", type=Path)
    parser.add_argument("--check-only", action="store_true", help="only check an existing OUT_DIR")
    args = parser.parse_args(argv)
    pairs = load_pairs(args.pairs_json)
    if args.check_only:
        setup_torch()
        wrong = CHECKS[args.kind](args.out_dir, pairs)
        print("\n".join(wrong) or f"all {len(pairs)} pairs come out exactly")
        return 1 if wrong else 0
    start = time.monotonic()
    BUILDERS[args.kind](args.out_dir, pairs)
    print(f"built and checked {args.kind} in {time.monotonic() - start:.1f} s")
    for p in sorted(args.out_dir.iterdir()):
        print(f"{p.stat().st_size:>9}  {p.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
