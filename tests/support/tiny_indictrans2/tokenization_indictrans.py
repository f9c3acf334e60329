"""IndicTransTokenizer of the tiny IndicTrans2 test model (tests/support/tiny_translators.py), working like the
real one: the input is IndicProcessor.preprocess_batch output, "src_tag tgt_tag text"; the tags are tokens of the source
dictionary, the text is cut by the source sentencepiece model, and </s> ends it. Ids go back to text through the
target dictionary, the one the decoder writes in. Both dictionaries give <s>, <pad>, </s>, <unk> ids 0-3."""

import json
import os

from sentencepiece import SentencePieceProcessor
from transformers import PreTrainedTokenizer

VOCAB_FILES_NAMES = {
    "src_vocab_fp": "dict.SRC.json",
    "tgt_vocab_fp": "dict.TGT.json",
    "src_spm_fp": "model.SRC",
    "tgt_spm_fp": "model.TGT",
}


class IndicTransTokenizer(PreTrainedTokenizer):
    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "left"

    def __init__(
        self,
        src_vocab_fp,
        tgt_vocab_fp,
        src_spm_fp,
        tgt_spm_fp,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        **kwargs,
    ):
        with open(src_vocab_fp, encoding="utf-8") as f:
            self.src_encoder = json.load(f)
        with open(tgt_vocab_fp, encoding="utf-8") as f:
            self.tgt_encoder = json.load(f)
        self.tgt_decoder = {index: token for token, index in self.tgt_encoder.items()}
        self.src_spm = SentencePieceProcessor(model_file=src_spm_fp)
        self.tgt_spm = SentencePieceProcessor(model_file=tgt_spm_fp)
        super().__init__(unk_token=unk_token, bos_token=bos_token, eos_token=eos_token, pad_token=pad_token, **kwargs)

    @property
    def vocab_size(self):
        return len(self.src_encoder)

    def get_vocab(self):
        return dict(self.src_encoder)

    def _tokenize(self, text):
        src_lang, tgt_lang, text = text.split(" ", 2)
        for tag in (src_lang, tgt_lang):
            if tag not in self.src_encoder:
                raise ValueError(f"unknown language tag {tag!r}: IndicProcessor.preprocess_batch adds the tags")
        return [src_lang, tgt_lang, *self.src_spm.encode(text, out_type=str)]

    def _convert_token_to_id(self, token):
        return self.src_encoder.get(token, self.src_encoder[str(self.unk_token)])

    def _convert_id_to_token(self, index):
        return self.tgt_decoder.get(index, str(self.unk_token))

    def convert_tokens_to_string(self, tokens):
        return "".join(tokens).replace("\u2581", " ").strip()

    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
        return token_ids_0 + [self.eos_token_id]

    def save_vocabulary(self, save_directory, filename_prefix=None):
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        written = []
        for name, vocab in (("dict.SRC.json", self.src_encoder), ("dict.TGT.json", self.tgt_encoder)):
            written.append(os.path.join(save_directory, prefix + name))
            with open(written[-1], "w", encoding="utf-8") as f:
                json.dump(vocab, f, ensure_ascii=False, indent=2)
        for name, spm in (("model.SRC", self.src_spm), ("model.TGT", self.tgt_spm)):
            written.append(os.path.join(save_directory, prefix + name))
            with open(written[-1], "wb") as f:
                f.write(spm.serialized_model_proto())
        return tuple(written)
