"""The module behind the `masking_noise` encoder."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.io import only


class MaskingNoiseModule(nn.Module):
    """x * keep, keep ~ Bernoulli(1 - prob) per element, while training; x otherwise."""

    def __init__(self, prob: float):
        super().__init__()
        self.prob = prob

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = only(inputs)  # B,...
        if not self.training:
            return {"corrupted": x}
        keep = torch.rand_like(x) >= self.prob  # B,...
        return {"corrupted": x * keep}  # B,...
