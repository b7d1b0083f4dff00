"""The module behind the `interpolate` fusion."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.io import only


class Interpolate(nn.Module):
    """{"mixed": beta * x + (1 - beta) * x.roll(shift, 0)}: example i with example i - shift."""

    def __init__(self, beta: float, shift: int):
        super().__init__()
        self.beta, self.shift = beta, shift

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = only(inputs)  # B,...
        return {"mixed": self.beta * x + (1 - self.beta) * x.roll(self.shift, 0)}  # B,...
