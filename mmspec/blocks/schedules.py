"""Schedules that training follows: EMA momentum over steps, diffusion noise levels over timesteps."""

from __future__ import annotations

import math

import torch


def momentum(start: float, end: float, kind: str, step: int, steps: int) -> float:
    """EMA momentum tau at update `step` (0-based) of `steps`: `constant` start; `linear` start -> end, then
    end (data2vec); `cosine` end - (end - start) * (cos(pi * step / steps) + 1) / 2 (BYOL)."""
    frac = min(step / steps, 1.0) if steps > 0 else 1.0
    if kind == "constant":
        return start
    if kind == "linear":
        return start + (end - start) * frac
    return end - (end - start) * (math.cos(math.pi * frac) + 1) / 2


def betas(kind: str, steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Diffusion noise schedule beta_1..beta_T [steps] (float64): `linear` (DDPM), `scaled_linear` (latent
    diffusion), `squaredcos_cap_v2` (improved DDPM cosine, s = 0.008, betas capped at 0.999)."""
    if kind == "linear":
        return torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    if kind == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=torch.float64) ** 2

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return torch.tensor(
        [min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), 0.999) for i in range(steps)], dtype=torch.float64
    )


def alphas_cumprod(kind: str, steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """abar_t = prod_{s <= t} (1 - beta_s) of `betas`, [steps] float32: the signal kept at each noise level."""
    return torch.cumprod(1 - betas(kind, steps, beta_start, beta_end), 0).float()  # T
