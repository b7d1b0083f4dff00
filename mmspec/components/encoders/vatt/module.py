"""The module behind the `vatt` encoder."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.transformer import make_blocks


class VATTModule(nn.Module):
    """Patches -> linear projection -> + LayerNorm(sum of per-axis positions) -> [DropToken] -> [agg] + tokens ->
    pre-norm blocks -> LayerNorm."""

    def __init__(self, cfg, channels: int, grid: tuple[int, ...]):
        super().__init__()
        self.video = len(grid) == 3
        conv = nn.Conv3d if self.video else nn.Conv1d
        self.project = conv(channels, cfg.width, tuple(cfg.patch), stride=tuple(cfg.patch))
        self.positions = nn.ParameterList(nn.Parameter(torch.randn(g, cfg.width) * cfg.width**-0.5) for g in grid)
        self.position_norm = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.agg = nn.Parameter(torch.randn(1, 1, cfg.width) * 0.02)
        self.keep = cfg.keep
        self.layers = make_blocks(cfg, cfg.layers)
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.eps)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        if self.video:
            x = self.project(inputs["input"]["pixels"].transpose(1, 2))  # B,D,T',H',W'
            t, h, w = self.positions
            pos = t[:, None, None] + h[None, :, None] + w[None, None, :]  # T',H',W',D
        else:
            x = self.project(inputs["input"]["values"].transpose(1, 2))  # B,D,L'
            pos = self.positions[0]  # L',D
        x = x.flatten(2).transpose(1, 2) + self.position_norm(pos.flatten(0, -2))  # B,N,D
        if self.training and self.keep < 1.0:
            keep = int(x.shape[1] * self.keep)
            x = x[:, torch.randperm(x.shape[1], device=x.device)[:keep]]  # B,K,D
        x = torch.cat([self.agg.expand(x.shape[0], -1, -1), x], dim=1)  # B,1+N,D
        for layer in self.layers:
            x = layer(x, None)  # B,1+N,D
        x = self.norm(x)  # B,1+N,D
        return {"sequence": x, "pooled": x[:, 0]}  # B,1+N,D; B,D
