"""The module behind the `reduce` fusion."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.io import only


class ReduceModule(nn.Module):
    """mean / max / sum over axis 1."""

    def __init__(self, op: str):
        super().__init__()
        self.op = op

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = only(inputs)  # B,M,...
        if self.op == "max":
            return {"pooled": x.amax(dim=1)}  # B,...
        return {"pooled": x.mean(dim=1) if self.op == "mean" else x.sum(dim=1)}  # B,...
