"""The module behind the `nfnet` encoder."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.nfnet import NFNet


class NFNetModule(nn.Module):
    """NFNet body; the final grid as features, as a row-major sequence and averaged."""

    def __init__(self, cfg, channels: int):
        super().__init__()
        self.net = NFNet(channels, cfg.widths, cfg.depths, cfg.expansion, cfg.group_width, cfg.se_ratio, cfg.alpha,
                         cfg.activation, cfg.two_convs, cfg.final_mult)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        features = self.net(inputs["input"]["pixels"])  # B,F,h,w
        return {"features": features, "sequence": features.flatten(2).transpose(1, 2),  # B,h*w,F
                "pooled": features.mean((2, 3))}  # B,F
