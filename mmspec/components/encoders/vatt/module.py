"""The module behind the `vatt` encoder."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.activations import activation
from mmspec.blocks.attention import padding_bias
from mmspec.blocks.transformer import freeze, make_blocks


class VATTModule(nn.Module):
    """Patches -> linear projection (or words -> table) [-> Dense + act] -> + LayerNorm(sum of per-axis positions)
    -> [DropToken] -> [agg] + tokens -> pre-norm blocks -> LayerNorm (blocks and LayerNorm maybe another tower's)."""

    def __init__(self, cfg, channels: int, grid: tuple[int, ...], vocab: int | None = None,
                 owner: VATTModule | None = None):
        super().__init__()
        self.kind = "words" if vocab else "video" if len(grid) == 3 else "waveform"
        if vocab:
            self.embed = nn.Embedding(vocab, channels)
            if not cfg.table.trainable:
                freeze(self.embed)
        else:
            conv = nn.Conv3d if self.kind == "video" else nn.Conv1d
            self.project = conv(channels, cfg.width, tuple(cfg.patch), stride=tuple(cfg.patch))
        fan_out = channels if vocab else cfg.width
        self.pre = nn.Sequential(nn.Linear(fan_out, cfg.width), activation(cfg.project)) if cfg.project else None
        self.positions = nn.ParameterList(nn.Parameter(torch.randn(g, cfg.width) * cfg.width**-0.5) for g in grid)
        self.position_norm = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.agg = nn.Parameter(torch.randn(1, 1, cfg.width) * 0.02)
        self.keep = cfg.keep
        if owner is not None:  # share_stack: the owner's blocks and final LayerNorm (VATT-MA)
            self.layers, self.norm = owner.layers, owner.norm
        else:
            self.layers = make_blocks(cfg, cfg.layers)
            self.norm = nn.LayerNorm(cfg.width, eps=cfg.eps)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        mask = inputs["input"].get("mask") if self.kind == "words" else None
        if self.kind == "words":
            x = self.embed(inputs["input"]["ids"])  # B,S,E
            pos = self.positions[0]  # S,D
        elif self.kind == "video":
            x = self.project(inputs["input"]["pixels"].transpose(1, 2)).flatten(2).transpose(1, 2)  # B,N,D
            t, h, w = self.positions
            pos = t[:, None, None] + h[None, :, None] + w[None, None, :]  # T',H',W',D
        else:
            x = self.project(inputs["input"]["values"].transpose(1, 2)).flatten(2).transpose(1, 2)  # B,L',D
            pos = self.positions[0]  # L',D
        if self.pre is not None:
            x = self.pre(x)  # B,N,D
        x = x + self.position_norm(pos.flatten(0, -2))  # B,N,D
        if self.training and self.keep < 1.0 and self.kind != "words":
            keep = int(x.shape[1] * self.keep)
            x = x[:, torch.randperm(x.shape[1], device=x.device)[:keep]]  # B,K,D
        x = torch.cat([self.agg.expand(x.shape[0], -1, -1), x], dim=1)  # B,1+N,D
        bias = None
        if mask is not None:
            bias = padding_bias(torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1), x)  # B,1,1,1+N
        for layer in self.layers:
            x = layer(x, bias)  # B,1+N,D
        x = self.norm(x)  # B,1+N,D
        return {"sequence": x, "pooled": x[:, 0]}  # B,1+N,D; B,D
