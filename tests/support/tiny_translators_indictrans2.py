"""The tiny IndicTrans2: a model shaped like ai4bharat/indictrans2-*-1B with its own remote code (tiny_indictrans2/),
source and target sentencepiece models and dictionaries, trained on IndicProcessor's forms of the pairs and checked
in a fresh process (run in venv/translation).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import sys
import tempfile
from pathlib import Path

from .tiny_translators_check import check_in_fresh_process
from .tiny_translators_train import MODEL_SIZE, pad, prepare_out_dir, setup_torch, spm_pieces, train, train_spm

# The language tags IndicTrans2 (and IndicProcessor) know; they head the source dictionary.
INDICTRANS2_TAGS = [
    "asm_Beng",
    "awa_Deva",
    "ben_Beng",
    "bho_Deva",
    "brx_Deva",
    "doi_Deva",
    "eng_Latn",
    "gom_Deva",
    "gon_Deva",
    "guj_Gujr",
    "hin_Deva",
    "hne_Deva",
    "kan_Knda",
    "kas_Arab",
    "kas_Deva",
    "kha_Latn",
    "lus_Latn",
    "mag_Deva",
    "mai_Deva",
    "mal_Mlym",
    "mar_Deva",
    "mni_Beng",
    "mni_Mtei",
    "npi_Deva",
    "ory_Orya",
    "pan_Guru",
    "san_Deva",
    "sat_Olck",
    "snd_Arab",
    "snd_Deva",
    "tam_Taml",
    "tel_Telu",
    "urd_Arab",
    "unr_Deva",
]
INDICTRANS2_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # fairseq's ids 0-3, in both dictionaries

# The model's own code, which trust_remote_code loads: three files of tiny_indictrans2/, copied into every build.
INDICTRANS2_CODE = {
    name: (Path(__file__).resolve().parent / "tiny_indictrans2" / name).read_text(encoding="utf-8")
    for name in ("configuration_indictrans.py", "modeling_indictrans.py", "tokenization_indictrans.py")
}


def _indictrans2_example(pair: dict, ip, plain_ip) -> tuple[str, str]:
    """(source, target) to train on: the source as IndicProcessor(inference=True).preprocess_batch gives it, the
    target the first of (IndicProcessor's target form, the raw text) that decode + postprocess_batch turn into
    exactly tgt. plain_ip (inference=False) wraps no placeholders, so entities stay literal in the target."""
    from transformers import PreTrainedTokenizerBase

    src_lang, tgt_lang = pair["src_lang"], pair["tgt_lang"]
    for text in (plain_ip.preprocess_batch([pair["tgt"]], src_lang=tgt_lang, is_target=True)[0], pair["tgt"]):
        source = ip.preprocess_batch([pair["src"]], src_lang=src_lang, tgt_lang=tgt_lang)[0]  # queues placeholders
        decoded = PreTrainedTokenizerBase.clean_up_tokenization(" ".join(text.split()))  # what decode returns
        if ip.postprocess_batch([decoded], lang=tgt_lang)[0] == pair["tgt"]:
            return source, text
    raise ValueError(f"IndicProcessor.postprocess_batch cannot give exactly {pair['tgt']!r} ({tgt_lang})")


@contextlib.contextmanager
def _indictrans2_code(work: Path):
    """Import the remote code as a package, as trust_remote_code would, so that save_pretrained (which finds the
    files through sys.modules) copies it next to the model and writes the auto_map entries."""
    package = work / "tiny_indictrans2_code"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    for name, code in INDICTRANS2_CODE.items():
        (package / name).write_text(code, encoding="utf-8")
    sys.path.insert(0, str(work))
    try:
        yield [
            importlib.import_module(f"{package.name}.{m}") for m in ("tokenization_indictrans", "modeling_indictrans")
        ]
    finally:
        sys.path.remove(str(work))
        for name in [n for n in sys.modules if n.startswith(package.name)]:
            del sys.modules[name]


def build_indictrans2(out_dir: Path, pairs: list[dict]) -> Path:
    """Train, save into out_dir (absent or empty) and check a tiny IndicTrans2 model for the pairs."""
    setup_torch()
    from IndicTransToolkit.processor import IndicProcessor
    from transformers import GenerationConfig

    out_dir = prepare_out_dir(out_dir, pairs)
    ip, plain_ip = IndicProcessor(inference=True), IndicProcessor(inference=False)
    examples = [_indictrans2_example(p, ip, plain_ip) for p in pairs]
    sources, targets = [source for source, _ in examples], [target for _, target in examples]

    with tempfile.TemporaryDirectory(prefix="tiny-indictrans2-") as tmp, _indictrans2_code(Path(tmp)) as code:
        work = Path(tmp)
        tokenization, modeling = code
        files = {}
        for side, texts, head in (
            ("SRC", [s.split(" ", 2)[2] for s in sources], [*INDICTRANS2_SPECIALS, *INDICTRANS2_TAGS]),
            ("TGT", targets, list(INDICTRANS2_SPECIALS)),
        ):
            spm_file, dict_file = work / f"model.{side}", work / f"dict.{side}.json"
            spm_file.write_bytes(train_spm(texts))
            vocab = head + [piece for piece in spm_pieces(spm_file) if piece not in head]
            dict_file.write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False), encoding="utf-8")
            files[f"{side.lower()}_spm_fp"], files[f"{side.lower()}_vocab_fp"] = str(spm_file), str(dict_file)
        tok = tokenization.IndicTransTokenizer(**files, model_max_length=256, clean_up_tokenization_spaces=True)
        labels = [
            [tok.tgt_encoder[piece] for piece in tok.tgt_spm.encode(t, out_type=str)] + [tok.eos_token_id]
            for t in targets
        ]
        inputs = tok(sources, padding="longest", return_tensors="pt")

        config_class = modeling.IndicTransForConditionalGeneration.config_class
        config = config_class(
            encoder_vocab_size=len(tok.src_encoder),
            decoder_vocab_size=len(tok.tgt_encoder),
            max_position_embeddings=256,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.eos_token_id,
            **MODEL_SIZE,
        )
        model = modeling.IndicTransForConditionalGeneration(config)
        decoder_input_ids = pad([[tok.eos_token_id, *t[:-1]] for t in labels], tok.pad_token_id)
        train(model, inputs["input_ids"], inputs["attention_mask"], decoder_input_ids, pad(labels, -100))
        model.generation_config = GenerationConfig(
            bos_token_id=tok.bos_token_id,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.eos_token_id,
        )
        config.register_for_auto_class()
        model.register_for_auto_class("AutoModelForSeq2SeqLM")
        tok.register_for_auto_class("AutoTokenizer")
        model.save_pretrained(out_dir, safe_serialization=True)
        tok.save_pretrained(out_dir)
    # The real repos' pytorch_model.bin twin, as a decoy of the same size: never a pickle (nothing may load one).
    size = (out_dir / "model.safetensors").stat().st_size
    (out_dir / "pytorch_model.bin").write_bytes(hashlib.sha256(b"decoy").digest() * (size // 32 + 1))
    check_in_fresh_process("indictrans2", out_dir, pairs)
    return out_dir
