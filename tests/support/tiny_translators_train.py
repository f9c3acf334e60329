"""How the tiny translators are trained: the shared size and stopping rule, sentencepiece models of the pair texts,
and a training loop that runs until every target token is near certain (run in venv/translation).

Shared by tiny_translators_nllb.py and tiny_translators_indictrans2.py; torch, transformers and sentencepiece are
imported inside the functions so that the command line starts (and --help answers) without them.
"""

from __future__ import annotations

from pathlib import Path

SEED = 0
TARGET_PROB = 0.99  # every target token this likely: beam search and int8 CTranslate2 cannot go astray
MAX_STEPS = 2000
MODEL_SIZE = {
    "d_model": 64,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 128,
    "decoder_ffn_dim": 128,
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "encoder_layerdrop": 0.0,
    "decoder_layerdrop": 0.0,
    "activation_function": "relu",
    "scale_embedding": True,
    "init_std": 0.02,
}
EXTRA_PIECES = 100  # BPE merges on top of the characters: short sequences, small vocabulary


def setup_torch():
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    return torch


def train_spm(texts: list[str]) -> bytes:
    """A BPE sentencepiece model of the texts, with NLLB's ids <unk> 0, <s> 1, </s> 2 and no normalisation."""
    import io

    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sorted(set(texts))),
        model_writer=buf,
        model_type="bpe",
        vocab_size=len(set("".join(texts))) + 3 + EXTRA_PIECES,
        hard_vocab_limit=False,
        character_coverage=1.0,
        normalization_rule_name="identity",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    return buf.getvalue()


def spm_pieces(spm_file: Path) -> list[str]:
    """The pieces of a sentencepiece model, less <unk>, <s> and </s>."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spm_file))
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not (sp.is_control(i) or sp.is_unknown(i))]


def pad(rows: list[list[int]], value: int):
    """Right-pad rows of ids into one tensor."""
    import torch

    width = max(map(len, rows))
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


def train(model, input_ids, attention_mask, decoder_input_ids, labels) -> None:
    """Fit the batch with Adam until every label token (-100: not learnt) has probability >= TARGET_PROB."""
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    learnt = labels != -100
    model.train()
    for _ in range(MAX_STEPS):
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            labels=labels,
            use_cache=False,
        )
        with torch.no_grad():
            probs = out.logits.softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            if probs[learnt].min() >= TARGET_PROB:
                model.eval()
                return
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    raise RuntimeError(f"the tiny model did not learn the pairs in {MAX_STEPS} steps")


def prepare_out_dir(out_dir: Path, pairs: list[dict]) -> Path:
    """out_dir, created, once it is known to be empty and the pairs to be learnable (one tgt per src)."""
    targets: dict[tuple[str, str, str], str] = {}
    for p in pairs:
        if targets.setdefault((p["src_lang"], p["tgt_lang"], p["src"]), p["tgt"]) != p["tgt"]:
            raise ValueError(f"{p['src']!r} has two {p['src_lang']}->{p['tgt_lang']} targets")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir
