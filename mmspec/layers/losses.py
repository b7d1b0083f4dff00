"""Loss modules behind the objective components: (input bundles, targets) -> scalar."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmspec.layers.objective import ObjectiveModule


class CrossEntropyLoss(ObjectiveModule):
    """Mean CE of per-example logits [B, C] against targets["labels"] [B] class ids, with label smoothing.
    (The other objectives' modules are in losses_*.py, by family.)"""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, args: dict[str, dict[str, torch.Tensor]], targets: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(args["input"]["logits"], targets["labels"], label_smoothing=self.label_smoothing)
