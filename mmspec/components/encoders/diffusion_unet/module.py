"""Module behind the `diffusion_unet` encoder."""

from __future__ import annotations

import torch

from mmspec.blocks.diffusion import DiffusionUNet


class DiffusionUNetModule(DiffusionUNet):
    """The shared diffusion U-Net on a modality's pixels, a timestep modality and optionally the `context_field`
    sequence of the context bundle; parameters named as the block's (diffusers', attentions aside), so the
    `diffusers` layout is nearly the identity."""

    def __init__(self, context_field: str | None, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.context_field = context_field

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        t = next(iter(inputs["timestep"].values()))  # B
        context = inputs["context"][self.context_field] if self.context_field else None  # B,S,D
        return {"eps": super().forward(inputs["input"]["pixels"], t, context)}  # B,C_out,H,W
