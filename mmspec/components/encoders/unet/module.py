"""Module behind the `unet` encoder."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.unet import UNet


class UNetModule(nn.Module):
    """The shared U-Net block on a modality's pixels."""

    def __init__(self, channels: int, widths: list[int], classes: int, norm: bool):
        super().__init__()
        self.unet = UNet(channels, widths, classes, norm)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        logits, bottleneck = self.unet(inputs["input"]["pixels"])  # B,K,H,W ; B,C,h,w
        return {"logits": logits, "bottleneck": bottleneck}
