"""Modules behind the GAN heads: the generator and discriminator networks of `mmspec.blocks.gan` behind the
component interface (bundles in, bundles out)."""

from __future__ import annotations

import torch
from torch import nn


class Generator(nn.Module):
    """`input` noise [B, nz] and optional `condition` [B, C] -> {"image": [B, C, H, W]}."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        z = next(iter(inputs["input"].values()))  # B,nz
        c = next(iter(inputs["condition"].values())) if "condition" in inputs else None  # B,C
        return {"image": self.net(z) if c is None else self.net(z, c)}  # B,C,H,W


class Discriminator(nn.Module):
    """One network scoring `real` and `fake` images -> logits [B, 1]; with a condition also `mismatched`: the real
    image with the next example's condition (matching-aware GAN-CLS)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        real = next(iter(inputs["real"].values()))  # B,C,H,W
        fake = next(iter(inputs["fake"].values()))  # B,C,H,W
        if "condition" not in inputs:
            return {"real": self.net(real), "fake": self.net(fake)}
        c = next(iter(inputs["condition"].values()))  # B,C
        return {"real": self.net(real, c), "fake": self.net(fake, c), "mismatched": self.net(real, c.roll(1, 0))}
