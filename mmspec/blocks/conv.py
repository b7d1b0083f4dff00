"""Convolution stages: conv-BN-ReLU, residual blocks, ResNet bodies (v1.5 stride placement)."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """Bottleneck (1x1 -> 3x3 -> 1x1, width = out / reduction) or basic (3x3 -> 3x3) block with projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, bottleneck: bool, reduction: int):
        super().__init__()
        if bottleneck:
            mid = cout // reduction
            self.body = nn.Sequential(
                conv_bn(cin, mid, 1), conv_bn(mid, mid, 3, stride), conv_bn(mid, cout, 1, relu=False)
            )
        else:
            self.body = nn.Sequential(conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, 3, relu=False))
        needs_projection = cin != cout or stride != 1
        self.shortcut = conv_bn(cin, cout, 1, stride, relu=False) if needs_projection else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))  # B,C',H',W'


class ResNet(nn.Module):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) + stages; returns the final feature map [B, C, h, w]."""

    def __init__(
        self, channels: int, stem: int, widths: list[int], depths: list[int], bottleneck: bool, reduction: int
    ):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(channels, stem, 7, 2), nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], stem
        for i, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(ResidualBlock(cin, width, stride, bottleneck, reduction))
                cin = width
        self.stages = nn.Sequential(*blocks)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(pixels))  # B,C,h,w
