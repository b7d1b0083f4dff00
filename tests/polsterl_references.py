"""The wide and deep PointNet of Pölsterl et al. (SU-09) rebuilt with torch.nn from the first author's own
implementation, `WidePointNetClassifier` in ai-med/SVEHNN (svehnn/adni/model.py; MICCAI 2021, whose Fig. 1 is the
"Wide and Deep PointNet Architecture (adapted from" the survival paper)): no code was released with the survival
paper itself, and SVEHNN is not an installable package, so tests/references.py compares the spec's count with this
rebuild."""

from __future__ import annotations

import torch
from torch import nn


class WidePointNet(nn.Module):
    """PointNetfeat without input and feature transforms (per-point Conv1d 3 -> 64 -> 128 -> `glob` (`point` sets
    the first two), BatchNorm after each, ReLU after the first two, max over the points), fully connected glob ->
    glob/2 -> glob/4 -> `deep` (each with BatchNorm and ReLU), then one Linear(deep + features, outputs) on
    [deep features, tabular features]."""

    def __init__(self, features: int = 31, outputs: int = 1, glob: int = 600, deep: int = 100,
                 point: tuple[int, int] = (64, 128)):
        super().__init__()
        widths = [3, *point, glob]
        point = []
        for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
            point += [nn.Conv1d(a, b, 1), nn.BatchNorm1d(b), *([nn.ReLU()] if i < 2 else [])]
        self.point = nn.Sequential(*point)
        widths = [glob, glob // 2, glob // 4, deep]
        self.fc = nn.Sequential(*(m for a, b in zip(widths, widths[1:], strict=False)
                                  for m in (nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU())))
        self.out = nn.Linear(deep + features, outputs)

    def forward(self, points: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        x = self.point(points.transpose(1, 2)).amax(2)  # B,glob (points B,N,3 -> B,3,N)
        return self.out(torch.cat([self.fc(x), features], dim=1))  # B,outputs
