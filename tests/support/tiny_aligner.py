"""Build a tiny random-weight wav2vec2 CTC aligner laid out like a Hugging Face repo (run in venv/whisperx).

    venv/whisperx/bin/python tests/support/tiny_aligner.py OUT_DIR [--alphabet hi|en] [--seed N]

OUT_DIR receives what Wav2Vec2Processor.save_pretrained and Wav2Vec2ForCTC.save_pretrained write: config.json,
preprocessor_config.json, vocab.json, tokenizer_config.json, special_tokens_map.json (and any other tokenizer
file that version writes) and model.safetensors (safetensors only, never a pickle). The model is deterministic for
a given seed and alphabet, small (well under 1 MB) and keeps wav2vec2's standard feature encoder kernels and strides,
so its frames are the usual 20 ms at 16 kHz. Its weights are random, so the timings whisperx.align() gets from it
are structurally valid (every word timed, in order, inside its segment) but not meaningful.

Vocabulary: <pad> (id 0, the CTC blank), <s>, </s>, <unk>, | (word delimiter), then the alphabet's characters:
  hi  Devanagari independent vowels, consonants (with the precomposed nukta forms), vowel signs, virama,
      anusvara, candrabindu, visarga and nukta
  en  lowercase a-z and the apostrophe
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "|"]


def _chars(ranges: list[tuple[int, int]]) -> list[str]:
    return [chr(c) for lo, hi in ranges for c in range(lo, hi + 1)]


ALPHABETS: dict[str, list[str]] = {
    "hi": _chars(
        [
            (0x0901, 0x0903),  # candrabindu, anusvara, visarga
            (0x0905, 0x0914),  # independent vowels
            (0x0915, 0x0939),  # consonants
            (0x093C, 0x093C),  # nukta
            (0x093E, 0x094C),  # dependent vowel signs
            (0x094D, 0x094D),  # virama
            (0x0958, 0x095F),  # precomposed nukta consonants
        ]
    ),
    "en": [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["'"],
}


def vocabulary(alphabet: str) -> dict[str, int]:
    return {tok: i for i, tok in enumerate(SPECIALS + ALPHABETS[alphabet])}


def build(out_dir: Path, alphabet: str = "hi", seed: int = 0) -> Path:
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    vocab = vocabulary(alphabet)
    out_dir.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "vocab.json"
        vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        tokenizer = Wav2Vec2CTCTokenizer(
            str(vocab_file),
            unk_token="<unk>",
            pad_token="<pad>",
            bos_token="<s>",
            eos_token="</s>",
            word_delimiter_token="|",
            do_lower_case=False,
        )
    feature_extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )
    processor = Wav2Vec2Processor(feature_extractor=feature_extractor, tokenizer=tokenizer)

    config = Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),  # wav2vec2's standard encoder: 320 samples = 20 ms a frame
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_bias=True,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,  # the XLSR layout that the catalog's Hindi aligners use
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        mask_time_prob=0.0,
        layerdrop=0.0,
        pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        ctc_loss_reduction="mean",
    )

    torch.manual_seed(seed)
    model = Wav2Vec2ForCTC(config)
    model.eval()

    processor.save_pretrained(str(out_dir))
    model.save_pretrained(str(out_dir), safe_serialization=True)
    for pickled in ("pytorch_model.bin", "training_args.bin"):
        if (out_dir / pickled).exists():
            raise RuntimeError(f"{pickled} was written: this builder writes safetensors only")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--alphabet", choices=sorted(ALPHABETS), default="hi")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = build(args.out_dir, args.alphabet, args.seed)
    for p in sorted(out.iterdir()):
        print(f"{p.stat().st_size:>9}  {p.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
