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


def low_res_input(x: torch.Tensor, low: torch.Tensor, level: torch.Tensor | None, abar: torch.Tensor | None,
                  training: bool, mode: str) -> torch.Tensor:
    """A super-resolution U-Net's input: x [B, C, H, W] and the low-resolution image low [B, C', h, w] resized to
    H x W (`mode`: an F.interpolate mode) -> [B, C + C', H, W]. While training, low is first noised at its
    augmentation level [B] with the cumulative alphas `abar` [A] (Imagen's noise-conditioning augmentation); at
    inference the caller passes the already noised image."""
    if training and level is not None and abar is not None:
        a = abar[level][:, None, None, None]  # B,1,1,1
        low = a.sqrt() * low + (1 - a).sqrt() * torch.randn_like(low)  # B,C',h,w
    low = torch.nn.functional.interpolate(low, size=(x.shape[2], x.shape[3]), mode=mode, align_corners=False)
    return torch.cat([x, low], dim=1)  # B,C+C',H,W
