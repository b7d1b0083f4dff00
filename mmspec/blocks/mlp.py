"""Position-wise feed-forward layers."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.activations import activation


class FeedForward(nn.Module):
    """Position-wise MLP: Linear(dim, hidden) -> act -> Linear(hidden, out)."""

    def __init__(self, dim: int, hidden: int, act: str, out: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = activation(act)
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
