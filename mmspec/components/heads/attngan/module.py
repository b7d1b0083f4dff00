"""Modules behind the AttnGAN / DM-GAN stage heads: `mmspec.blocks.attngan` networks behind the component
interface (bundles in, bundles out), each stage with its own image head."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.attngan import ToImage


class InitStageModule(nn.Module):
    """noise [B, nz] and condition code [B, c] -> {"features": [B, W, S, S], "image": [B, channels, S, S]}."""

    def __init__(self, net: nn.Module, width: int, channels: int):
        super().__init__()
        self.net, self.to_image = net, ToImage(width, channels)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        z = next(iter(inputs["input"].values()))  # B,nz
        c = next(iter(inputs["condition"].values()))  # B,c
        h = self.net(z, c)  # B,W,S,S
        return {"features": h, "image": self.to_image(h)}  # B,channels,S,S


class StageModule(nn.Module):
    """previous features [B, C, h, w], words [B, S, E] (field `words` of their bundle) and their padding mask [B, S]
    (the `mask` port, when given) -> {"features": [B, C, 2h, 2w], "image", "attention": [B, S, h, w]}."""

    def __init__(self, net: nn.Module, width: int, channels: int, words: str):
        super().__init__()
        self.net, self.to_image, self.words = net, ToImage(width, channels), words

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        prev = inputs["input"]
        h = prev["features"] if "features" in prev else next(iter(prev.values()))  # B,C,h,w
        given = inputs.get("mask")
        mask = (given["mask"] if "mask" in given else next(iter(given.values()))) if given is not None else None  # B,S
        out, weights = self.net(h, inputs["words"][self.words], mask)  # B,C,2h,2w; B,S,h,w
        return {"features": out, "image": self.to_image(out), "attention": weights}
