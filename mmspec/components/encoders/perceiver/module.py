"""The module behind the `perceiver` encoder."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.attention import padding_bias
from mmspec.blocks.embeddings import TokenEmbedding
from mmspec.blocks.perceiver import PerceiverLayer


class PixelFeatures(nn.Module):
    """pixels [B, C, H, W] -> [B, H*W, channels + position width]: a 1x1 conv per pixel, then a learned position
    table (optionally projected) concatenated to every example's pixels."""

    def __init__(self, in_channels: int, pixels: int, cfg):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, cfg.channels, 1)
        self.position = nn.Parameter(torch.randn(pixels, cfg.positions) * 0.02)
        self.project = nn.Linear(cfg.positions, cfg.project) if cfg.project else None

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.conv(pixels).flatten(2).transpose(1, 2)  # B,H*W,c
        pos = self.project(self.position) if self.project is not None else self.position  # H*W,p
        return torch.cat([x, pos.expand(x.shape[0], -1, -1)], dim=-1)  # B,H*W,c+p


class PerceiverModule(nn.Module):
    """[token embeddings] -> latents cross-attend to the input -> `blocks` passes through the shared latent
    self-attention layers -> [mean over the latents]."""

    def __init__(self, cfg, kv_dim: int, modality, field: str | None):
        super().__init__()
        (cqk, cv), (sqk, sv) = cfg.channels(kv_dim)
        self.embed = None
        if cfg.embed is not None and cfg.embed.type == "tokens":
            e = cfg.embed
            self.embed = TokenEmbedding(modality.vocab_size, e.width, e.positions, 0, False, cfg.eps, 0.0)
        elif cfg.embed is not None:
            self.embed = PixelFeatures(modality.channels, modality.height * modality.width, cfg.embed)
        self.field = field
        self.latents = nn.Parameter(torch.randn(cfg.latents, cfg.width) * 0.02)
        common = (cfg.activation, cfg.eps, cfg.attention_dropout)
        self.cross = PerceiverLayer(cfg.width, kv_dim, cqk, cv, cfg.cross_heads, cfg.cross_widening, *common,
                                    cross=True, query_residual=cfg.query_residual)
        self.layers = nn.ModuleList(
            PerceiverLayer(cfg.width, cfg.width, sqk, sv, cfg.heads, cfg.widening, *common, cross=False)
            for _ in range(cfg.layers)
        )
        self.blocks = cfg.blocks
        self.pool = cfg.pool

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        b = inputs["input"]
        if self.field is not None:
            x = b[self.field]  # B,M,C
        else:
            x = self.embed(b["ids"] if "ids" in b else b["pixels"])  # B,M,C
        mask = b.get("mask")
        bias = padding_bias(mask, x) if mask is not None else None  # B,1,1,M
        z = self.latents.expand(x.shape[0], -1, -1)  # B,N,D
        z = self.cross(z, x, bias)  # B,N,D
        for _ in range(self.blocks):
            for layer in self.layers:
                z = layer(z)  # B,N,D
        out = {"sequence": z}
        if self.pool == "mean":
            out["pooled"] = z.mean(dim=1)  # B,D
        return out
