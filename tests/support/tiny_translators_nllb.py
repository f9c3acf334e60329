"""The tiny NLLB: an M2M100 shaped like facebook/nllb-200-*, with an NllbTokenizer over a sentencepiece model of
the pair texts, trained to reproduce the pairs and checked in a fresh process (run in venv/translation).
"""

from __future__ import annotations

from pathlib import Path

from .tiny_translators_check import check_in_fresh_process
from .tiny_translators_train import MODEL_SIZE, pad, prepare_out_dir, setup_torch, train, train_spm


def _nllb_tokenizer(spm_file: Path):
    """NllbTokenizerFast over spm_file, its tokenizer.json built by transformers' NllbConverter from a stand-in
    for the sentencepiece protobuf (no protobuf in the venv), so it matches the slow NllbTokenizer id for id."""
    from types import SimpleNamespace as Proto

    import sentencepiece as spm
    from transformers import NllbTokenizer, NllbTokenizerFast
    from transformers.convert_slow_tokenizer import NllbConverter

    sp = spm.SentencePieceProcessor(model_file=str(spm_file))
    proto = Proto(
        pieces=[
            Proto(piece=sp.id_to_piece(i), score=sp.get_score(i), type=3 if sp.is_control(i) else 1)
            for i in range(sp.get_piece_size())
        ],
        trainer_spec=Proto(model_type=2, unk_id=0, unk_piece="<unk>", byte_fallback=False),  # 2: BPE
        normalizer_spec=Proto(precompiled_charsmap=b""),  # the identity rule
    )
    converter = NllbConverter.__new__(NllbConverter)  # its __init__ would parse the file with protobuf
    converter.original_tokenizer = NllbTokenizer(vocab_file=str(spm_file))
    converter.proto = proto
    options = {"clean_up_tokenization_spaces": True, "model_max_length": 1024}  # as facebook/nllb-200-* have
    fast = NllbTokenizerFast(vocab_file=str(spm_file), tokenizer_object=converter.converted(), **options)
    if fast.get_vocab() != converter.original_tokenizer.get_vocab():
        raise RuntimeError("the fast and slow NLLB tokenizers disagree")
    return fast


def build_nllb(out_dir: Path, pairs: list[dict]) -> Path:
    """Train, save into out_dir (absent or empty) and check a tiny NLLB-200 model for the pairs."""
    setup_torch()
    from transformers import GenerationConfig, M2M100Config, M2M100ForConditionalGeneration

    out_dir = prepare_out_dir(out_dir, pairs)
    spm_file = out_dir / "sentencepiece.bpe.model"
    spm_file.write_bytes(train_spm([p[k] for p in pairs for k in ("src", "tgt")]))
    tok = _nllb_tokenizer(spm_file)

    sources, targets = [], []
    for p in pairs:
        tok.src_lang, tok.tgt_lang = p["src_lang"], p["tgt_lang"]
        enc = tok(p["src"], text_target=p["tgt"])
        if tok.decode(enc["labels"], skip_special_tokens=True) != p["tgt"]:
            raise ValueError(f"NllbTokenizer cannot decode to exactly {p['tgt']!r} (spacing?)")
        sources.append(enc["input_ids"])
        targets.append(enc["labels"])
    tok.src_lang, tok.tgt_lang = "eng_Latn", None  # back to the defaults before saving

    config = M2M100Config(
        vocab_size=len(tok),
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.eos_token_id,
        tokenizer_class="NllbTokenizer",
        **MODEL_SIZE,
    )
    model = M2M100ForConditionalGeneration(config)
    input_ids = pad(sources, tok.pad_token_id)
    # Decoder input: </s> tgt_lang text; generation forces tgt_lang, so only what follows it is learnt.
    decoder_input_ids = pad([[tok.eos_token_id, *t[:-1]] for t in targets], tok.pad_token_id)
    labels = pad([[-100, *t[1:]] for t in targets], -100)
    train(model, input_ids, input_ids != tok.pad_token_id, decoder_input_ids, labels)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.eos_token_id,
        max_length=200,
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir, legacy_format=False)  # tokenizer.json, no added_tokens.json
    check_in_fresh_process("nllb", out_dir, pairs)
    return out_dir
