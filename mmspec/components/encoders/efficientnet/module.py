"""The module behind the `efficientnet` encoder."""

from __future__ import annotations

import torch
from torch import nn


class EfficientNetModule(nn.Module):
    """Stem (pad 1 after, 3x3/2 conv, BN, SiLU), MBConv blocks, head (1x1 conv, BN, SiLU; none when `head` is
    None); mean-pooled + dropout."""

    def __init__(self, channels: int, stem: int, blocks: list[nn.Module], head: int | None, eps: float,
                 dropout: float):
        super().__init__()
        self.stem = nn.Sequential(
            nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(channels, stem, 3, 2, bias=False),
            nn.BatchNorm2d(stem, eps=eps, momentum=0.01), nn.SiLU(),
        )
        self.blocks = nn.Sequential(*blocks)
        last = blocks[-1].project[0].out_channels
        self.head = nn.Identity() if head is None else nn.Sequential(
            nn.Conv2d(last, head, 1, bias=False), nn.BatchNorm2d(head, eps=eps, momentum=0.01), nn.SiLU())
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        features = self.head(self.blocks(self.stem(inputs["input"]["pixels"])))  # B,C,h,w
        return {"features": features, "pooled": self.dropout(features.mean((2, 3)))}  # B,C
