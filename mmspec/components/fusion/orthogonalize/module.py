"""Module behind the `orthogonalize` fusion."""

from __future__ import annotations

import torch
from torch import nn


class Orthogonalize(nn.Module):
    """U - X C with X = [1, terms...]: C from the batch while training (and running statistics updated), from the
    stored coefficients `coef` [p, q] in evaluation."""

    def __init__(self, p: int, q: int, terms: int, momentum: float, eps: float):
        super().__init__()
        self.terms, self.momentum, self.eps = terms, momentum, eps
        self.register_buffer("xx", torch.eye(p))
        self.register_buffer("xu", torch.zeros(p, q))
        self.register_buffer("coef", torch.zeros(p, q))

    def design(self, inputs: dict[str, dict[str, torch.Tensor]], u: torch.Tensor) -> torch.Tensor:
        parts = [torch.ones_like(u[:, :1])]
        for i in range(self.terms):
            x = next(iter(inputs[f"x{i}"].values()))  # B or B,p_i
            parts.append(x.reshape(x.shape[0], -1))
        return torch.cat(parts, 1)  # B,p

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        u = next(iter(inputs["input"].values()))  # B,q
        x = self.design(inputs, u)  # B,p
        if not self.training:
            return {"latent": u - x @ self.coef}
        ridge = self.eps * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        xx, xu = x.T @ x, x.T @ u  # p,p ; p,q
        with torch.no_grad():
            m = self.momentum
            self.xx.mul_(1 - m).add_(m * xx / x.shape[0])
            self.xu.mul_(1 - m).add_(m * xu / x.shape[0])
            self.coef.copy_(torch.linalg.solve(self.xx + ridge, self.xu))
        return {"latent": u - x @ torch.linalg.solve(xx + ridge, xu)}  # B,q
