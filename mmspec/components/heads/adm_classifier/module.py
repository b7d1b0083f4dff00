"""Module behind the `adm_classifier` encoder."""

from __future__ import annotations

import torch

from mmspec.blocks.adm import ADMClassifier


class ADMClassifierModule(ADMClassifier):
    """ADM's noisy-image classifier on a modality's pixels and a timestep."""

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        t = next(iter(inputs["timestep"].values()))  # B
        return {"logits": super().forward(inputs["input"]["pixels"], t)}  # B,classes
