"""Normalization layers over the last (feature) axis, chosen by spec name.

Contract: every norm from `make_norm(kind, dim, eps)` maps [..., D] -> [..., D] in the input's dtype:
"layer" (nn.LayerNorm), "rms" (`RMSNorm`, T5-style), "batch" (`BatchNorm`, statistics over every position of the
batch), "none" (identity). All are torch.fx symbolically traceable.
"""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("layer", "rms", "batch", "none")


class RMSNorm(nn.Module):
    """weight * x / sqrt(mean(x^2) + eps) over the last axis: no mean subtraction, no bias (T5LayerNorm).
    The statistics are computed in fp32; the result is cast back to the input's dtype before the scale."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()  # ...,D
        variance = x32.pow(2).mean(-1, keepdim=True)  # ...,1
        return self.weight * (x32 * torch.rsqrt(variance + self.eps)).type_as(x)  # ...,D


class BatchNorm(nn.BatchNorm1d):
    """BatchNorm over the last axis of [..., D]: every leading position is one sample (BatchNorm1d on [B, D])."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).view(x.shape)  # ...,D

    def _check_input_dim(self, input: torch.Tensor) -> None:
        """The input is always 2-D here; BatchNorm1d's rank check would branch on a traced value under torch.fx."""


def make_norm(kind: str, dim: int, eps: float = 1e-5) -> nn.Module:
    """A fresh norm over the last axis of width `dim` by its spec name (one of NORMS)."""
    if kind == "layer":
        return nn.LayerNorm(dim, eps=eps)
    if kind == "rms":
        return RMSNorm(dim, eps=eps)
    if kind == "batch":
        return BatchNorm(dim, eps=eps)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; expected one of {', '.join(NORMS)}")


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d whose affine weights and statistics are buffers, not parameters (torchvision's and DETR's
    FrozenBatchNorm2d): x * weight / sqrt(var + eps) + (bias - mean * weight / sqrt(var + eps)) on [B, C, H, W]."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()  # C
        shift = self.bias - self.running_mean * scale  # C
        return x * scale[None, :, None, None] + shift[None, :, None, None]  # B,C,H,W


def freeze_batch_norms(module: nn.Module) -> nn.Module:
    """Replace every nn.BatchNorm2d inside `module` by a FrozenBatchNorm2d (in place); returns `module`."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, FrozenBatchNorm2d(child.num_features, child.eps))
        else:
            freeze_batch_norms(child)
    return module
