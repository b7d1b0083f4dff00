"""Adapters between component bundles ({port: {field: tensor}}) and plain tensor modules."""

from __future__ import annotations

import torch
from torch import nn


def only(inputs: dict[str, dict[str, torch.Tensor]]) -> torch.Tensor:
    return next(iter(inputs["input"].values()))


class Select(nn.Module):
    """Apply a module to the single input tensor and name the result."""

    def __init__(self, inner: nn.Module, name: str):
        super().__init__()
        self.inner = inner
        self.name = name

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {self.name: self.inner(only(inputs))}
