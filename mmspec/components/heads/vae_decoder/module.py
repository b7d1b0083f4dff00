"""Module behind the `vae_decoder` head."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.diffusion import VAEDecoder


class VAEDecoderModule(nn.Module):
    """`post_quant_conv` and `decoder` named as in diffusers' AutoencoderKL."""

    def __init__(self, latent: int, channels: int, widths: list[int], depth: int, groups: int, eps: float,
                 post_quant_conv: bool, attention: list[bool] | None = None):
        super().__init__()
        self.post_quant_conv = nn.Conv2d(latent, latent, 1) if post_quant_conv else nn.Identity()
        self.decoder = VAEDecoder(latent, channels, widths, depth, groups, eps, attention)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        z = next(iter(inputs["input"].values()))  # B,L,h,w
        return {"pixels": self.decoder(self.post_quant_conv(z))}  # B,C,H,W
