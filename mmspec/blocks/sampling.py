"""Spatial down- and up-sampling by a factor of 2 for U-Nets, VAEs and GAN generators (diffusers layouts).

Contract: `Downsample` maps [B, C, H, W] -> [B, C', ceil(H/2), ceil(W/2)] (conv) or [B, C, H//2, W//2] (avg);
`Upsample` maps [B, C, H, W] -> [B, C', 2H, 2W]. Parameters are named as in diffusers' Downsample2D/Upsample2D
(`conv`), so their checkpoints map one to one. Both are torch.fx symbolically traceable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DOWN_MODES = ("conv", "avg")
UP_MODES = ("conv", "transpose", "nearest")


class Downsample(nn.Module):
    """Halve H and W: mode "conv" is a 3x3 stride-2 conv with padding 1 (DDPM; Downsample2D(use_conv=True)),
    "avg" a 2x2 average pool (channels unchanged; Downsample2D(use_conv=False)). `padding=0` pads only the right and
    bottom by one before an unpadded conv (diffusers' `downsample_padding=0`, the DDPM CIFAR-10 and VAE setting)."""

    def __init__(self, channels: int, out: int | None = None, mode: str = "conv", padding: int = 1):
        super().__init__()
        out = out or channels
        self.asymmetric = mode == "conv" and padding == 0
        if mode == "conv":
            self.conv = nn.Conv2d(channels, out, 3, stride=2, padding=padding)
        elif mode == "avg":
            if out != channels:
                raise ValueError("average-pool downsampling keeps the channel count")
            self.conv = nn.AvgPool2d(2, stride=2)
        else:
            raise ValueError(f"unknown downsample mode {mode!r}; expected one of {', '.join(DOWN_MODES)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.asymmetric:
            x = F.pad(x, (0, 1, 0, 1))  # B,C,H+1,W+1
        return self.conv(x)  # B,C',H/2,W/2


class Upsample(nn.Module):
    """Double H and W: mode "conv" is nearest-neighbour x2 then a 3x3 conv (DDPM; Upsample2D(use_conv=True)),
    "transpose" a 4x4 stride-2 transposed conv (Upsample2D(use_conv_transpose=True)), "nearest" nearest x2 only."""

    def __init__(self, channels: int, out: int | None = None, mode: str = "conv"):
        super().__init__()
        out = out or channels
        self.mode = mode
        if mode == "conv":
            self.conv = nn.Conv2d(channels, out, 3, padding=1)
        elif mode == "transpose":
            self.conv = nn.ConvTranspose2d(channels, out, 4, stride=2, padding=1)
        elif mode == "nearest":
            if out != channels:
                raise ValueError("nearest upsampling without a conv keeps the channel count")
            self.conv = nn.Identity()
        else:
            raise ValueError(f"unknown upsample mode {mode!r}; expected one of {', '.join(UP_MODES)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "transpose":
            return self.conv(x)  # B,C',2H,2W
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # B,C',2H,2W
