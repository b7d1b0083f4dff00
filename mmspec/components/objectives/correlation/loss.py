"""Loss of the `correlation` objective."""

from __future__ import annotations

import torch

from mmspec.components.objectives.runtime import ObjectiveModule, one


def correlations(a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """Pearson correlation of each column of a [B, D] with the same column of b [B, D], over the batch -> [D]."""
    a, b = a - a.mean(0), b - b.mean(0)  # B,D
    return (a * b).sum(0) / torch.sqrt((a * a).sum(0) * (b * b).sum(0) + eps)  # D


class Correlation(ObjectiveModule):
    """-sum_k corr(input_k, target_k)."""

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps

    def forward(self, args, targets):
        return -correlations(one(args["input"]), one(args["target"]), self.eps).sum()
