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
    image with the next example's condition (matching-aware GAN-CLS); a network with an unconditional logit
    adds `real_uncond` and `fake_uncond`."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def _score(self, name: str, x: torch.Tensor, c: torch.Tensor | None) -> dict[str, torch.Tensor]:
        out = self.net(x) if c is None else self.net(x, c)
        return {name: out} if isinstance(out, torch.Tensor) else {name: out[0], f"{name}_uncond": out[1]}  # B,1

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        real = next(iter(inputs["real"].values()))  # B,C,H,W
        fake = next(iter(inputs["fake"].values()))  # B,C,H,W
        c = next(iter(inputs["condition"].values())) if "condition" in inputs else None  # B,C
        out = {**self._score("real", real, c), **self._score("fake", fake, c)}
        if c is not None:
            out["mismatched"] = self._score("mismatched", real, c.roll(1, 0))["mismatched"]  # another's condition
        return out


class Augmentation(nn.Module):
    """`input` text embedding [B, T] -> {"code", "mean", "log_var"} [B, c] (StackGAN conditioning augmentation)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return self.net(next(iter(inputs["input"].values())))
