"""Loss of the `pixel_cross_entropy` objective."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmspec.components.objectives.runtime import ObjectiveModule, one


class PixelCrossEntropy(ObjectiveModule):
    """Mean over pixels: BCE with logits (one channel, positives weighted) or softmax cross-entropy (K channels)."""

    def __init__(self, positive_weight: float):
        super().__init__()
        self.positive_weight = positive_weight

    def forward(self, args, targets):
        logits = one(args["input"], "logits")  # B,K,H,W
        mask = targets["mask"]  # B,H,W
        if logits.shape[1] == 1:
            weight = torch.tensor(self.positive_weight, dtype=logits.dtype, device=logits.device)
            return F.binary_cross_entropy_with_logits(logits[:, 0], mask.to(logits.dtype), pos_weight=weight)
        return F.cross_entropy(logits, mask)
