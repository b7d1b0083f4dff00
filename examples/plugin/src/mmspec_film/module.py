"""The torch module of `film` (imported only when a model is built)."""

from __future__ import annotations

import torch
from torch import nn


class FilmModule(nn.Module):
    def __init__(self, condition: int, channels: int, hidden: int | None):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(condition, hidden), nn.ReLU()) if hidden else nn.Identity()
        self.to_gamma_beta = nn.Linear(hidden or condition, 2 * channels)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = next(iter(inputs["input"].values()))  # B,...,D
        c = next(iter(inputs["condition"].values()))  # B,C
        gamma, beta = self.to_gamma_beta(self.hidden(c)).chunk(2, dim=-1)  # B,D each
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
        return {"fused": gamma.reshape(shape) * x + beta.reshape(shape)}  # B,...,D
