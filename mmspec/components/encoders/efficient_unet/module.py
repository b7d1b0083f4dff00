"""Module behind the `efficient_unet` encoder."""

from __future__ import annotations

import torch

from mmspec.blocks.efficient_unet import EfficientUNet
from mmspec.blocks.schedules import alphas_cumprod, low_res_input


class EfficientUNetModule(EfficientUNet):
    """The Efficient U-Net on a modality's pixels concatenated with the low-resolution image (bicubically resized
    to their size), a timestep modality, the `context_field` sequence of the context bundle (its padding the
    `mask_field` of the context_mask bundle) and optionally the low-resolution image's augmentation level."""

    def __init__(self, context_field: str, mask_field: str | None, aug_steps: int | None, *args, **kwargs):
        super().__init__(*args, aug=aug_steps is not None, **kwargs)
        self.context_field, self.mask_field = context_field, mask_field
        if aug_steps:  # the augmentation's cumulative alphas, abar_0..abar_{A-1}
            self.register_buffer("aug_abar", alphas_cumprod("squaredcos_cap_v2", aug_steps), persistent=False)  # A

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = inputs["input"]["pixels"]  # B,C,H,W
        t = next(iter(inputs["timestep"].values()))  # B
        context = inputs["context"][self.context_field]  # B,S,D
        mask = inputs["context_mask"][self.mask_field] if self.mask_field else None  # B,S
        level = next(iter(inputs["aug_level"].values())) if "aug_level" in inputs else None  # B
        low = inputs["low_res"]["pixels"]  # B,C,h,w
        x = low_res_input(x, low, level, getattr(self, "aug_abar", None), self.training, "bicubic")  # B,2C,H,W
        return {"eps": super().forward(x, t, context, mask, level)}  # B,C,H,W
