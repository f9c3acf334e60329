"""IndicTransForConditionalGeneration of the tiny IndicTrans2 test model (tests/support/tiny_translators.py):
M2M100 whose encoder embeds the source vocabulary while the decoder embedding, shared with the output layer, covers
the target vocabulary."""

import math

from torch import nn
from transformers.models.m2m_100.modeling_m2m_100 import (
    M2M100ForConditionalGeneration,
    M2M100Model,
    M2M100PreTrainedModel,
    M2M100ScaledWordEmbedding,
)

from .configuration_indictrans import IndicTransConfig


class IndicTransModel(M2M100Model):
    config_class = IndicTransConfig
    _tied_weights_keys = ["decoder.embed_tokens.weight"]

    def __init__(self, config):
        super().__init__(config)  # self.shared: the target-vocabulary embedding of the decoder
        embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.encoder.embed_tokens = M2M100ScaledWordEmbedding(
            config.encoder_vocab_size, config.d_model, config.pad_token_id, embed_scale=embed_scale
        )
        self.post_init()

    def _tie_weights(self):
        if self.config.tie_word_embeddings:
            self._tie_or_clone_weights(self.decoder.embed_tokens, self.shared)


class IndicTransForConditionalGeneration(M2M100ForConditionalGeneration):
    config_class = IndicTransConfig
    _tied_weights_keys = ["decoder.embed_tokens.weight", "lm_head.weight"]

    def __init__(self, config):
        M2M100PreTrainedModel.__init__(self, config)
        self.model = IndicTransModel(config)
        self.lm_head = nn.Linear(config.d_model, config.decoder_vocab_size, bias=False)
        self.post_init()
