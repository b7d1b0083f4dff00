"""Module behind the `gaussian_process` head, and its host-side conditioning on the training set."""

from __future__ import annotations

import torch
from torch import nn


class GaussianProcessHead(nn.Module):
    """mean = h w + b; prediction = mean + [h, 1] delta + k(x*, X) alpha, where delta = beta - [w, b]."""

    def __init__(self, dim: int, loc: int, points: int, sigma: float, length_location: float, length_time: float,
                 noise: float, prior_variance: float):
        super().__init__()
        self.linear = nn.Linear(dim, 1)
        self.sigma, self.noise, self.prior_variance = sigma, noise, prior_variance
        self.length_location, self.length_time = length_location, length_time
        self.register_buffer("train_location", torch.zeros(points, loc))
        self.register_buffer("train_time", torch.zeros(points))
        self.register_buffer("alpha", torch.zeros(points))
        self.register_buffer("delta", torch.zeros(dim + 1))

    def kernel(self, g1: torch.Tensor, t1: torch.Tensor, g2: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
        """sigma exp(-|g1 - g2|^2 / l_g^2 - (t1 - t2)^2 / l_t^2) [N1, N2] (no noise)."""
        dg = ((g1[:, None, :] - g2[None, :, :]) ** 2).sum(-1) / self.length_location**2  # N1,N2
        dt = (t1[:, None] - t2[None, :]) ** 2 / self.length_time**2  # N1,N2
        return self.sigma * torch.exp(-dg - dt)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        h = next(iter(inputs["input"].values()))  # B,D
        g = next(iter(inputs["location"].values()))  # B,L
        t = next(iter(inputs["time"].values()))  # B
        mean = self.linear(h)[:, 0]  # B
        if self.training:  # the marginal likelihood objective reads the batch's kernel inputs
            self.last_batch = (g, t)
        correction = h @ self.delta[:-1] + self.delta[-1]  # B
        k = self.kernel(g, t, self.train_location, self.train_time)  # B,N
        return {"mean": mean, "prediction": mean + correction + k @ self.alpha}

    def covariance(self, g: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """K + noise I of a set of examples [N, N]."""
        eye = torch.eye(t.shape[0], dtype=t.dtype, device=t.device)
        return self.kernel(g, t, g, t) + self.noise * eye

    @torch.no_grad()
    def condition(self, h: torch.Tensor, g: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> None:
        """Store the posterior over `points` training examples (features h [N, D], locations, times, targets y):
        beta = (I / v + H^T K^-1 H)^-1 (H^T K^-1 y + [w, b] / v) with H = [h, 1], alpha = K^-1 (y - H beta)."""
        if t.shape[0] != self.alpha.shape[0]:
            raise ValueError(f"condition() takes exactly {self.alpha.shape[0]} training examples, got {t.shape[0]}")
        h, g, t, y = (v.double() for v in (h, g, t, y))
        design = torch.cat([h, torch.ones_like(h[:, :1])], 1)  # N,D+1
        prior = torch.cat([self.linear.weight[0], self.linear.bias]).double()  # D+1
        k_inv = torch.linalg.inv(self.covariance(g, t))  # N,N
        eye = torch.eye(design.shape[1], dtype=h.dtype)
        beta = torch.linalg.solve(eye / self.prior_variance + design.T @ k_inv @ design,
                                  design.T @ k_inv @ y + prior / self.prior_variance)  # D+1
        self.alpha.copy_(k_inv @ (y - design @ beta))
        self.delta.copy_(beta - prior)
        self.train_location.copy_(g)
        self.train_time.copy_(t)
