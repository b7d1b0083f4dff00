"""Position-wise feed-forward layers: the two-layer MLP and the gated variant (GLU family).

Contract: [..., dim] -> [..., out or dim]; `FeedForward` with default options keeps its numerics and captured
graph (golden graphs depend on them). Both are torch.fx symbolically traceable.
"""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.activations import activation


class FeedForward(nn.Module):
    """Position-wise MLP: Linear(dim, hidden) -> act [-> dropout] -> Linear(hidden, out).
    `bias=False` drops both biases and `dropout` adds the inner dropout (T5DenseActDense)."""

    def __init__(
        self, dim: int, hidden: int, act: str, out: int | None = None, *, bias: bool = True, dropout: float = 0.0
    ):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = activation(act)
        self.dropout = nn.Dropout(dropout) if dropout else None
        self.fc2 = nn.Linear(hidden, out or dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc1(x))  # ...,hidden
        if self.dropout is not None:
            h = self.dropout(h)  # ...,hidden
        return self.fc2(h)  # ...,out


class GatedFeedForward(nn.Module):
    """Gated MLP: fc2(dropout(act(gate(x)) * fc1(x))), no biases by default. GeGLU with "gelu_tanh" (T5 v1.1:
    wi_0 -> gate, wi_1 -> fc1, wo -> fc2), SwiGLU with "silu" (Llama: gate_proj, up_proj, down_proj)."""

    def __init__(
        self, dim: int, hidden: int, act: str, out: int | None = None, *, bias: bool = False, dropout: float = 0.0
    ):
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=bias)
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = activation(act)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, out or dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.gate(x)) * self.fc1(x)  # ...,hidden
        return self.fc2(self.dropout(h))  # ...,out
