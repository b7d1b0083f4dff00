"""The module behind the `unicl` objective."""

from __future__ import annotations

import torch.nn.functional as F

from mmspec.blocks.distributed import gather_rows
from mmspec.components.objectives.supervised.loss import SymmetricInfoNCE


class UniCLLoss(SymmetricInfoNCE):
    """SymmetricInfoNCE's logits and scale clamp, with targets spread uniformly over each row's positives (the
    gathered rows carrying its label) instead of one diagonal entry."""

    def forward(self, args, targets):
        head = args["input"]
        a, b = head[f"{self.a}_embeds"], head[f"{self.b}_embeds"]  # B,D (unit norm)
        all_a, _ = gather_rows(a)  # K*B,D
        all_b, _ = gather_rows(b)  # K*B,D
        labels = targets["labels"]  # B
        all_labels, _ = gather_rows(labels)  # K*B
        positives = (labels[:, None] == all_labels[None, :]).to(a.dtype)  # B,K*B
        spread = positives / positives.sum(1, keepdim=True)  # B,K*B
        scale = self._scale[0].exp()
        logits_a, logits_b = scale * a @ all_b.t(), scale * b @ all_a.t()  # B,K*B
        self.negatives = logits_a.shape[1] - 1
        return -((spread * F.log_softmax(logits_a, 1)).sum(1).mean()
                 + (spread * F.log_softmax(logits_b, 1)).sum(1).mean()) / 2
