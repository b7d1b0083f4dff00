"""The module behind the `highway` head."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.activations import activation
from mmspec.blocks.io import only


class HighwayModule(nn.Module):
    """[BatchNorm ->] dropout -> `layers` x (g * act(W_n x) + (1 - g) * W_l x) [-> BatchNorm] on [B, D]."""

    def __init__(self, dim: int, layers: int, act: str, norm: str, dropout: float):
        super().__init__()
        self.nonlinear = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.linear = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.gate = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.act = activation(act)
        self.norm_in = nn.BatchNorm1d(dim) if norm == "batch" else nn.Identity()
        self.norm_out = nn.BatchNorm1d(dim) if norm == "batch" else nn.Identity()
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = self.dropout(self.norm_in(only(inputs)))  # B,D
        for nonlinear, linear, gate in zip(self.nonlinear, self.linear, self.gate, strict=True):
            g = torch.sigmoid(gate(x))  # B,D
            x = g * self.act(nonlinear(x)) + (1 - g) * linear(x)  # B,D
        return {"embedding": self.norm_out(x)}  # B,D
