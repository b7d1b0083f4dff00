"""Module behind the `diffusion_unet` encoder."""

from __future__ import annotations

import torch

from mmspec.blocks.diffusion import DiffusionUNet
from mmspec.blocks.schedules import alphas_cumprod, low_res_input


class DiffusionUNetModule(DiffusionUNet):
    """The shared diffusion U-Net on a modality's pixels, a timestep modality and optionally the `context_field`
    sequence of the context bundle (its padding the `mask_field` of the context_mask bundle), a low-resolution
    image (resized bilinearly and concatenated) and its augmentation level; parameters named as the block's
    (diffusers', attentions aside), so the `diffusers` layout is nearly the identity."""

    def __init__(self, context_field: str | None, mask_field: str | None, aug_steps: int | None, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.context_field, self.mask_field = context_field, mask_field
        if aug_steps:  # the augmentation's cumulative alphas, abar_0..abar_{A-1}
            self.register_buffer("aug_abar", alphas_cumprod("squaredcos_cap_v2", aug_steps), persistent=False)  # A

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = inputs["input"]["pixels"]  # B,C,H,W
        t = next(iter(inputs["timestep"].values()))  # B
        context = inputs["context"][self.context_field] if self.context_field else None  # B,S,D
        mask = inputs["context_mask"][self.mask_field] if self.mask_field else None  # B,S
        level = next(iter(inputs["aug_level"].values())) if "aug_level" in inputs else None  # B
        if "low_res" in inputs:
            x = low_res_input(x, inputs["low_res"]["pixels"], level, getattr(self, "aug_abar", None), self.training,
                              "bilinear")  # B,2C,H,W
        return {"eps": super().forward(x, t, context, mask, level)}  # B,C_out,H,W
