"""The module behind the `co_attention` fusion (ViLBERT)."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.attention import padding_bias
from mmspec.blocks.pooling import make_pool, stream_bundle
from mmspec.blocks.transformer import CoAttentionBlock, make_blocks


class CoAttentionModule(nn.Module):
    """Runs text layers, vision layers and co-attention blocks in ViLBERT's order: before co block k,
    text layers up to text_layers[k] and vision layers up to vision_layers[k] (none when the id repeats the
    previous one); the rest run at the end. Every layer runs exactly once."""

    def __init__(self, cfg):
        super().__init__()
        t, v, co = cfg.text, cfg.vision, cfg.co
        self.text_layers = make_blocks(t, t.layers, trainable=t.trainable)
        self.vision_layers = make_blocks(v, v.layers, trainable=v.trainable)
        self.co_layers = nn.ModuleList(
            CoAttentionBlock(
                v.width,
                t.width,
                co.width,
                co.heads,
                v.ffn,
                t.ffn,
                t.activation,
                t.eps,
                co.dropout,
                co.attention_dropout,
            )
            for _ in co.text_layers
        )
        self.schedule = list(zip(co.text_layers, co.vision_layers, strict=True))
        self.text_pool = make_pool(cfg.text_pool, t.width, t.eps)
        self.vision_pool = make_pool(cfg.vision_pool, v.width, v.eps)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        t, v = inputs["text"]["sequence"], inputs["vision"]["sequence"]  # B,T,Dt / B,R,Dv
        t_mask, v_mask = inputs["text"].get("mask"), inputs["vision"].get("mask")
        t_bias = padding_bias(t_mask, t) if t_mask is not None else None  # B,1,1,T
        v_bias = padding_bias(v_mask, v) if v_mask is not None else None  # B,1,1,R
        ti = vi = 0
        for block, (t_end, v_end) in zip(self.co_layers, self.schedule, strict=True):
            for layer in self.text_layers[ti:t_end]:
                t = layer(t, t_bias)
            for layer in self.vision_layers[vi:v_end]:
                v = layer(v, v_bias)
            v, t = block(v, v_bias, t, t_bias)
            ti, vi = t_end, v_end
        for layer in self.text_layers[ti:]:
            t = layer(t, t_bias)
        for layer in self.vision_layers[vi:]:
            v = layer(v, v_bias)
        return stream_bundle({"text": (t, t_mask, self.text_pool), "vision": (v, v_mask, self.vision_pool)})
