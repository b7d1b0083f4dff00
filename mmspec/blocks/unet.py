"""U-Net (Ronneberger et al. 2015): a contracting path of double 3x3 convolutions with 2x2 max-pooling, an
expanding path of 2x2 transposed convolutions whose outputs are concatenated with the contracting path's
features at the same resolution, and a 1x1 convolution to the output channels. Padded convolutions, so the output
has the input's height and width (which must divide by 2^(levels - 1))."""

from __future__ import annotations

import torch
from torch import nn


class DoubleConv(nn.Sequential):
    """[Conv3x3 (padding 1) -> BatchNorm -> ReLU] x 2; the convolutions have a bias only without the norm."""

    def __init__(self, cin: int, cout: int, norm: bool):
        layers: list[nn.Module] = []
        for c in (cin, cout):
            layers.append(nn.Conv2d(c, cout, 3, padding=1, bias=not norm))
            layers += [nn.BatchNorm2d(cout)] if norm else []
            layers.append(nn.ReLU())
        super().__init__(*layers)


class UNet(nn.Module):
    """widths[i] channels at level i (resolution / 2^i); returns (logits [B, out, H, W], bottleneck
    [B, widths[-1], H / 2^(L-1), W / 2^(L-1)])."""

    def __init__(self, channels: int, widths: list[int], out: int, norm: bool = True):
        super().__init__()
        self.down = nn.ModuleList()
        for i, width in enumerate(widths):
            self.down.append(DoubleConv(channels if i == 0 else widths[i - 1], width, norm))
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i], widths[i - 1], 2, stride=2)
                                for i in range(len(widths) - 1, 0, -1))
        self.merge = nn.ModuleList(DoubleConv(2 * widths[i - 1], widths[i - 1], norm)
                                   for i in range(len(widths) - 1, 0, -1))
        self.head = nn.Conv2d(widths[0], out, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))  # B,w_i,H/2^i,W/2^i
            skips.append(x)
        bottleneck = x
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1]), strict=True):
            x = merge(torch.cat([skip, up(x)], 1))  # B,w_i,H/2^i,W/2^i
        return self.head(x), bottleneck  # B,out,H,W
