"""IndicTransConfig of the tiny IndicTrans2 test model (tests/support/tiny_translators.py): M2M100Config with separate
source (encoder) and target (decoder) vocabulary sizes, as the real IndicTrans2 configuration has."""

from transformers import M2M100Config


class IndicTransConfig(M2M100Config):
    model_type = "IndicTrans"

    def __init__(self, encoder_vocab_size=128, decoder_vocab_size=128, **kwargs):
        self.encoder_vocab_size = encoder_vocab_size
        self.decoder_vocab_size = decoder_vocab_size
        kwargs["vocab_size"] = decoder_vocab_size
        super().__init__(**kwargs)
