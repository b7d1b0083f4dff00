"""The module behind the `hip` encoder."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.perceiver import PerceiverLayer


class HiPLevelModule(nn.Module):
    """One level: per-group latents [G*K, D] cross-attend to their group of the input, then self-attend."""

    def __init__(self, level, reads: int, skip: int | None, act: str, eps: float):
        super().__init__()
        d = level.width
        self.groups, self.latents_per_group = level.groups, level.latents
        self.latents = nn.Parameter(torch.randn(level.groups * level.latents, d) * 0.02)
        self.skip = nn.Linear(skip, d) if skip is not None and skip != d else None
        self.cross = PerceiverLayer(d, reads, reads, reads, level.cross_heads, level.cross_widening, act, eps, 0.0,
                                    cross=True)
        self.layers = nn.ModuleList(
            PerceiverLayer(d, d, d, d, level.heads, level.widening, act, eps, 0.0, cross=False)
            for _ in range(level.layers)
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        g, k = self.groups, self.latents_per_group
        x = x.reshape(x.shape[0] * g, x.shape[1] // g, x.shape[2])  # B*G,T/G,C
        z = self.latents.reshape(g, k, -1).repeat(x.shape[0] // g, 1, 1)  # B*G,K,D
        if skip is not None:
            z = z + (self.skip(skip) if self.skip is not None else skip)  # B*G,K,D
        z = self.cross(z, x)  # B*G,K,D
        for layer in self.layers:
            z = layer(z)  # B*G,K,D
        return z


class HiPModule(nn.Module):
    """Embed + positions -> the levels (U-Net skips into the decoder levels) -> latents and a reconstruction."""

    def __init__(self, cfg, field: str, length: int, channels: int, reads: list[int]):
        super().__init__()
        n, e = len(cfg.levels), cfg.embed
        self.field, self.middle = field, n // 2
        self.embed = nn.Linear(channels, e)
        self.position = nn.Parameter(torch.randn(length, e) * 0.02)
        self.levels = nn.ModuleList(
            HiPLevelModule(level, reads[i], cfg.levels[n - 1 - i].width if i > n // 2 else None, cfg.activation,
                           cfg.eps)
            for i, level in enumerate(cfg.levels)
        )
        last = cfg.levels[-1]
        self.head = PerceiverLayer(e, last.width, last.width, last.width, 1, 1, cfg.activation, cfg.eps, 0.0,
                                   cross=True, query_residual=False)
        self.unembed = nn.Linear(e, channels)
        self.groups, self.tokens, self.width = last.groups, last.groups * last.latents, last.width

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = inputs["input"][self.field]  # B,M,C
        batch, length = x.shape[0], x.shape[1]
        h = self.embed(x) + self.position  # B,M,E
        hidden: list[torch.Tensor] = []
        n = len(self.levels)
        for i, level in enumerate(self.levels):
            z = level(h, hidden[n - 1 - i] if i > self.middle else None)  # B*G,K,D
            hidden.append(z)
            h = z.reshape(batch, -1, z.shape[2])  # B,G*K,D
        g = self.groups
        query = self.position.reshape(g, length // g, -1).repeat(batch, 1, 1)  # B*G,M/G,E
        y = self.head(query, hidden[-1])  # B*G,M/G,E
        return {"sequence": h, "reconstruction": self.unembed(y.reshape(batch, length, -1))}  # B,G*K,D / B,M,C
