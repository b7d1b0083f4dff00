"""Loss of the patch_cross_entropy objective."""

from __future__ import annotations

import torch.nn.functional as F

from mmspec.blocks.distributed import global_mean
from mmspec.components.objectives.runtime import ObjectiveModule, one


class PatchCrossEntropy(ObjectiveModule):
    """Per-pixel cross-entropy of per-patch logits against a class map, averaged over the counted patches' pixels."""

    def __init__(self, classes: int, patch: int, side: int):
        super().__init__()
        self.classes, self.patch, self.side = classes, patch, side

    def forward(self, args, targets):
        logits, ids, counted = one(args["input"]), one(args["target"], "ids"), one(args["dropped"])  # B,N,P; B,S; B,N
        b, g, p, k = logits.shape[0], self.side, self.patch, self.classes
        logits = logits.reshape(b, g, g, p, p, k).permute(0, 5, 1, 3, 2, 4).reshape(b, k, g * p, g * p)  # B,K,H,W
        loss = F.cross_entropy(logits, ids.reshape(b, g * p, g * p), reduction="none")  # B,H,W
        weight = counted.reshape(b, g, 1, g, 1).expand(b, g, p, g, p).reshape(b, g * p, g * p).to(loss.dtype)  # B,H,W
        return global_mean((loss * weight).sum(), weight.sum())
