"""The module behind the `cross_modality` fusion (LXMERT's cross-modality encoder, XDBERT)."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.attention import Attention, padding_bias
from mmspec.blocks.pooling import make_pool, stream_bundle
from mmspec.blocks.transformer import Block, Residual


class CrossModalityLayer(nn.Module):
    """One LXMERT x-layer: a [B,S,Da] and b [B,T,Db] each attend to the other's input (post-norm Add&Norm), then
    each runs its own post-norm self-attention + feed-forward block."""

    def __init__(self, cfg, dim_a: int, dim_b: int):
        super().__init__()
        a, b, drop, att = cfg.text, cfg.vision, cfg.dropout, cfg.attention_dropout
        self.a_from_b = Attention(dim_a, dim_b, dim_a, a.heads, dim_a, att)
        self.b_from_a = Attention(dim_b, dim_a, dim_b, b.heads, dim_b, att)
        self.a_res = Residual(dim_a, False, cfg.eps, drop)
        self.b_res = Residual(dim_b, False, cfg.eps, drop)
        self.a_block = Block(dim_a, a.heads, a.ffn, cfg.activation, False, cfg.eps, drop, att)
        self.b_block = Block(dim_b, b.heads, b.ffn, cfg.activation, False, cfg.eps, drop, att)

    def forward(self, a, a_bias, b, b_bias):
        a2 = self.a_res(a, self.a_from_b, b, b_bias)  # B,S,Da
        b2 = self.b_res(b, self.b_from_a, a, a_bias)  # B,T,Db
        return self.a_block(a2, a_bias), self.b_block(b2, b_bias)  # B,S,Da; B,T,Db


class CrossModalityModule(nn.Module):
    """`cfg.layers` cross-modality layers over the text and vision streams, then the optional pools."""

    def __init__(self, cfg, text_width: int, vision_width: int):
        super().__init__()
        self.layers = nn.ModuleList(CrossModalityLayer(cfg, text_width, vision_width) for _ in range(cfg.layers))
        self.text_pool = make_pool(cfg.text_pool, text_width, cfg.eps)
        self.vision_pool = make_pool(cfg.vision_pool, vision_width, cfg.eps)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        t, v = inputs["text"]["sequence"], inputs["vision"]["sequence"]  # B,S,Dt / B,T,Dv
        t_mask, v_mask = inputs["text"].get("mask"), inputs["vision"].get("mask")
        t_bias = padding_bias(t_mask, t) if t_mask is not None else None  # B,1,1,S
        v_bias = padding_bias(v_mask, v) if v_mask is not None else None  # B,1,1,T
        for layer in self.layers:
            t, v = layer(t, t_bias, v, v_bias)
        return stream_bundle({"text": (t, t_mask, self.text_pool), "vision": (v, v_mask, self.vision_pool)})
