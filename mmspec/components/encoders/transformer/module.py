"""The module behind the `transformer` encoder."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.attention import causal_bias, padding_bias
from mmspec.blocks.embeddings import PatchEmbedding, RegionEmbedding, TokenEmbedding
from mmspec.blocks.pooling import make_pool
from mmspec.blocks.transformer import make_blocks


class TransformerEncoderModule(nn.Module):
    """embed -> blocks -> optional final norm -> optional pooling, over one input bundle."""

    def __init__(self, cfg, bundle, modality):
        super().__init__()
        e = cfg.embed
        if e.type == "tokens":
            self.embed = TokenEmbedding(
                modality.vocab_size, cfg.width, e.positions, e.segments, e.norm, cfg.eps, cfg.dropout, e.padding_idx
            )
        elif e.type == "patches":
            grid = (modality.height // e.patch_size) * (modality.width // e.patch_size)
            self.embed = PatchEmbedding(
                modality.channels, cfg.width, e.patch_size, grid, e.bias, e.class_token, e.norm, cfg.eps, cfg.dropout
            )
        else:
            self.embed = RegionEmbedding(modality.dim, modality.boxes, cfg.width, cfg.eps, cfg.dropout)
        self.kind = e.type
        self.layers = make_blocks(cfg, cfg.layers)
        self.final_norm = nn.LayerNorm(cfg.width, eps=cfg.eps) if cfg.final_norm else None
        self.pool = make_pool(cfg.pool, cfg.width, cfg.eps)
        self.causal = cfg.causal

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        b = inputs["input"]
        mask = b.get("mask")
        if self.kind == "tokens":
            x = self.embed(b["ids"], b.get("segments"))  # B,S,D
        elif self.kind == "patches":
            x = self.embed(b["pixels"])  # B,N,D
        else:
            x = self.embed(b["features"], b.get("boxes"))  # B,R,D
        bias = padding_bias(mask, x) if mask is not None else None  # B,1,1,S
        if self.causal:
            bias = causal_bias(x) if bias is None else bias + causal_bias(x)  # (B,1,)S,S
        for layer in self.layers:
            x = layer(x, bias)  # B,S,D
        if self.final_norm is not None:
            x = self.final_norm(x)
        out = {"sequence": x}
        if mask is not None:
            out["mask"] = mask
        if self.pool is not None:
            out["pooled"] = self.pool(x, b.get("ids"), mask)  # B,D'
        return out
