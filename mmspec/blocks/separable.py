"""Depthwise-separable 1-D convolution (Xception; MultiModel's and SliceNet's convolution steps).

Contract: `SeparableConv1d` maps a channels-last sequence [B, S, C_in] -> [B, S, C_out] with "same" length: a
depthwise conv (one k-tap filter per channel, dilation d, padding (k - 1) d / 2 on both sides, no bias), then a
pointwise Linear C_in -> C_out. Parameters: k C_in + C_in C_out (+ C_out with `bias`), as TensorFlow's
separable_conv2d with depth multiplier 1. torch.fx symbolically traceable.
"""

from __future__ import annotations

import torch
from torch import nn


class SeparableConv1d(nn.Module):
    """Depthwise k-tap conv per channel (dilated, zero "same" padding), then a pointwise projection."""

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int = 1, *, bias: bool = False):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"same padding needs an odd kernel, got {kernel}")
        pad = (kernel - 1) * dilation // 2
        self.depthwise = nn.Conv1d(cin, cin, kernel, dilation=dilation, padding=pad, groups=cin, bias=False)
        self.pointwise = nn.Linear(cin, cout, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.depthwise(x.transpose(1, 2)).transpose(1, 2)  # B,S,C_in
        return self.pointwise(h)  # B,S,C_out
