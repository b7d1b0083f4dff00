"""The module behind the `clip_resnet` encoder."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.pooling import AttentionPool


def _conv_bn(cin: int, cout: int, kernel: int, eps: float) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout, eps=eps)]


class Bottleneck(nn.Module):
    """1x1, 3x3, [avg-pool stride], 1x1 (x4), each BatchNormed; ReLU after each but the last, which follows
    the sum with the shortcut (average pool + 1x1 conv + BatchNorm when the shape changes)."""

    def __init__(self, inplanes: int, planes: int, stride: int, eps: float):
        super().__init__()
        pool = [nn.AvgPool2d(stride)] if stride > 1 else []
        self.body = nn.Sequential(*_conv_bn(inplanes, planes, 1, eps), nn.ReLU(), *_conv_bn(planes, planes, 3, eps),
                                  nn.ReLU(), *pool, *_conv_bn(planes, 4 * planes, 1, eps))
        changes = stride > 1 or inplanes != 4 * planes
        self.shortcut = nn.Sequential(*pool, *_conv_bn(inplanes, 4 * planes, 1, eps)) if changes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))  # B,C,H,W


class ClipResNetModule(nn.Module):
    """Three-conv stem + 2x2 average pool, the bottlenecks, attention pooling."""

    def __init__(self, channels: int, width: int, blocks: list[tuple[int, int, int]], positions: int, heads: int,
                 output: int, eps: float):
        super().__init__()
        half = width // 2
        self.stem = nn.Sequential(
            nn.Conv2d(channels, half, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(half, eps=eps), nn.ReLU(),
            *_conv_bn(half, half, 3, eps), nn.ReLU(), *_conv_bn(half, width, 3, eps), nn.ReLU(), nn.AvgPool2d(2))
        self.blocks = nn.Sequential(*(Bottleneck(i, p, s, eps) for i, p, s in blocks))
        self.pool = AttentionPool(positions, 32 * width, heads, output)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        features = self.blocks(self.stem(inputs["input"]["pixels"]))  # B,32w,H/32,W/32
        return {"features": features, "pooled": self.pool(features)}  # B,output
