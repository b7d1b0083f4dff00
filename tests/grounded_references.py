"""Reference networks of the grounded language specs (ISL-12 ...), rebuilt from installable parts with the
official configurations (the authors' code is not installable), so that tests/references.py can compare the
specs' parameter counts and the coverage tests their outputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import transformers as tf
from torch import nn


class VokenHead(nn.Module):
    """Vokenization's voken-classification head (vlm/model.py BertVLMClassificationHead): dense -> GELU ->
    LayerNorm -> one logit per image of the voken set."""

    def __init__(self, width: int, vokens: int, eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(width, width)
        self.layer_norm = nn.LayerNorm(width, eps=eps)
        self.decoder = nn.Linear(width, vokens)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer_norm(F.gelu(self.dense(h))))  # B,S,vokens


class VokenLM(tf.BertForMaskedLM):
    """CoLwithBert with do_voken_cls: BertForMaskedLM (no pooler, MLM decoder tied to the word table) plus the
    voken head `visual_cls_head`; forward returns (MLM logits, voken logits)."""

    def __init__(self, config: tf.BertConfig, vokens: int = 50000):
        super().__init__(config)
        self.visual_cls_head = VokenHead(config.hidden_size, vokens, config.layer_norm_eps)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):  # noqa: D102
        h = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]  # B,S,D
        return self.cls(h), self.visual_cls_head(h)


def vokenization(width: int = 768, layers: int = 12, heads: int = 12, ffn: int = 3072, vokens: int = 50000,
                 vocab: int = 30522, positions: int = 512) -> VokenLM:
    """The official LM configuration (vlm/configs/bert-12L-768H.json and bert-6L-512H.json) with 50,000 vokens."""
    return VokenLM(tf.BertConfig(vocab_size=vocab, hidden_size=width, num_hidden_layers=layers,
                                 num_attention_heads=heads, intermediate_size=ffn, max_position_embeddings=positions),
                   vokens)
