"""Module behind the `googlenet` encoder; attribute names follow torchvision's GoogLeNet (conv1, inception4c.branch2
...), so its state dict loads under the node's prefix."""

from __future__ import annotations

import torch
from torch import nn


class BasicConv2d(nn.Module):
    """Conv2d without bias, BatchNorm2d, ReLU; `padding` kernel // 2 unless given (Inception-v3's convs)."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1, eps: float = 1e-3,
                 padding: int | tuple[int, int] | None = None):
        super().__init__()
        pad = padding if padding is not None else kernel // 2
        self.conv = nn.Conv2d(cin, cout, kernel, stride, pad, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))  # B,cout,h,w


class Inception(nn.Module):
    """1x1 | 1x1 -> 3x3 | 1x1 -> wide x wide | 3x3/1 max-pool -> 1x1, concatenated along the channels."""

    def __init__(self, cin: int, row: list[int], wide: int, eps: float):
        super().__init__()
        c1, c3r, c3, c5r, c5, pool = row
        self.branch1 = BasicConv2d(cin, c1, 1, eps=eps)
        self.branch2 = nn.Sequential(BasicConv2d(cin, c3r, 1, eps=eps), BasicConv2d(c3r, c3, 3, eps=eps))
        self.branch3 = nn.Sequential(BasicConv2d(cin, c5r, 1, eps=eps), BasicConv2d(c5r, c5, wide, eps=eps))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(cin, pool, 1, eps=eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)  # B,C,h,w


class GoogLeNet(nn.Module):
    """Stem, then Inception stages with ceil-mode max-pools between them (2x2/2 before the last)."""

    def __init__(self, channels: int, stem: list[int], stages: list[list[list[int]]], names: list[str], wide: int,
                 taps: list[str], eps: float):
        super().__init__()
        self.conv1 = BasicConv2d(channels, stem[0], 7, stride=2, eps=eps)
        self.conv2 = BasicConv2d(stem[0], stem[1], 1, eps=eps)
        self.conv3 = BasicConv2d(stem[1], stem[2], 3, eps=eps)
        self.stages: list[list[str]] = []
        blocks, cin = iter(names), stem[2]
        for stage in stages:
            self.stages.append([])
            for row in stage:
                name = next(blocks)
                self.add_module(f"inception{name}", Inception(cin, row, wide, eps))
                self.stages[-1].append(name)
                cin = row[0] + row[2] + row[4] + row[5]
        self.taps = set(taps)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = self.conv1(inputs["input"]["pixels"])  # B,stem0,H/2,W/2
        x = self.conv3(self.conv2(nn.functional.max_pool2d(x, 3, 2, ceil_mode=True)))  # B,stem2,H/4,W/4
        taps = {}
        for s, stage in enumerate(self.stages):
            kernel = 2 if s == len(self.stages) - 1 and s > 0 else 3
            x = nn.functional.max_pool2d(x, kernel, 2, ceil_mode=True)  # B,C,h/2,w/2
            for name in stage:
                x = getattr(self, f"inception{name}")(x)  # B,C_i,h,w
                if name in self.taps:
                    taps[f"inception_{name}"] = x
        return {"features": x, "pooled": x.mean((2, 3)), **taps}  # B,C
