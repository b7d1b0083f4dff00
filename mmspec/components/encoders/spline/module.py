"""Modules behind the `spline` and `random_effect` encoders (parameter-free bases)."""

from __future__ import annotations

import math

import torch
from torch import nn


class BSplineBasis(nn.Module):
    """Cardinal B-splines on equally spaced knots: with spacing h = (hi - lo) / (knots - 1) and t_j = lo + (j -
    degree) h, basis j is N((x - t_j) / h), N(u) = 1/d! sum_{k=0}^{d+1} (-1)^k C(d+1, k) (u - k)_+^d on
    0 < u < d + 1 (zero elsewhere): elementwise operations only."""

    def __init__(self, column: int | None, degree: int, knots: int, bounds: tuple[float, float]):
        super().__init__()
        self.column, self.degree = column, degree
        self.lo, self.hi = bounds
        self.step = (self.hi - self.lo) / (knots - 1)
        starts = [self.lo + (j - degree) * self.step for j in range(knots + degree - 1)]
        self.register_buffer("starts", torch.tensor(starts), persistent=False)
        coef = [(-1) ** k * math.comb(degree + 1, k) / math.factorial(degree) for k in range(degree + 2)]
        self.register_buffer("coef", torch.tensor(coef), persistent=False)
        self.register_buffer("shifts", torch.arange(degree + 2, dtype=torch.float32), persistent=False)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = next(iter(inputs["input"].values()))  # B or B,D
        x = x if self.column is None else x[:, self.column]  # B
        u = (x.clamp(self.lo, self.hi)[:, None] - self.starts) / self.step  # B,K
        powers = torch.relu(u[..., None] - self.shifts) ** self.degree  # B,K,d+2
        values = (powers * self.coef).sum(-1)  # B,K
        inside = (u > 0) & (u < self.degree + 1)
        return {"basis": torch.where(inside, values, torch.zeros_like(values))}


class OneHot(nn.Module):
    """Group ids [B] -> one-hot float [B, groups]."""

    def __init__(self, groups: int):
        super().__init__()
        self.register_buffer("ids", torch.arange(groups), persistent=False)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        ids = next(iter(inputs["input"].values()))  # B
        return {"basis": (ids[:, None] == self.ids).float()}  # B,G
