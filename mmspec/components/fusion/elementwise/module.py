"""Parameter-free fusion modules; inputs arrive as single-field bundles in reference order."""

from __future__ import annotations

import torch
from torch import nn


def _tensors(inputs: dict[str, dict[str, torch.Tensor]]) -> list[torch.Tensor]:
    return [next(iter(bundle.values())) for bundle in inputs.values()]


class Elementwise(nn.Module):
    def __init__(self, op: str):
        super().__init__()
        self.op = op

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        xs = _tensors(inputs)
        y = xs[0]
        for x in xs[1:]:
            y = y * x if self.op == "product" else y + x
        return {"fused": y / len(xs) if self.op == "mean" else y}


class Concat(nn.Module):
    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {"fused": torch.cat(_tensors(inputs), dim=-1)}
