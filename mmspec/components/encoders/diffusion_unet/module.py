"""Module behind the `diffusion_unet` encoder."""

from __future__ import annotations

import torch

from mmspec.blocks.diffusion import DiffusionUNet


class DiffusionUNetModule(DiffusionUNet):
    """The shared diffusion U-Net on a modality's pixels and a timestep modality; parameters named as the block's
    (diffusers UNet2DModel's, attentions aside), so the `diffusers` layout is nearly the identity."""

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        t = next(iter(inputs["timestep"].values()))  # B
        return {"eps": super().forward(inputs["input"]["pixels"], t)}  # B,C_out,H,W
