"""The module behind the `resnet` encoder."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.conv import ResNet
from mmspec.blocks.norms import freeze_batch_norms


class ResNetModule(nn.Module):
    """The `resnet` encoder component: feature map and its global average."""

    def __init__(
        self, channels: int, stem: int, widths: list[int], depths: list[int], bottleneck: bool, reduction: int,
        frozen_norm: bool = False,
    ):
        super().__init__()
        self.body = ResNet(channels, stem, widths, depths, bottleneck, reduction)
        if frozen_norm:
            freeze_batch_norms(self.body)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        features = self.body(inputs["input"]["pixels"])  # B,C,h,w
        return {"features": features, "pooled": features.mean((2, 3))}  # B,C
