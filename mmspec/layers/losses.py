"""Loss modules behind the objective components: (head outputs, targets) -> scalar."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CrossEntropyLoss(nn.Module):
    """targets["labels"]: [B] class ids."""

    def __init__(self, label_smoothing: float):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(outputs["logits"], targets["labels"], label_smoothing=self.label_smoothing)


class MaskedCrossEntropyLoss(nn.Module):
    """targets["labels"]: [B, S] token ids, -100 where the position was not masked."""

    def forward(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = outputs["logits"]  # B,S,V
        return F.cross_entropy(logits.flatten(0, 1), targets["labels"].flatten(), ignore_index=-100)


class MaskedKLLoss(nn.Module):
    """targets["distribution"]: [B, R, C] detector class probabilities; targets["masked"]: [B, R] 0/1."""

    def forward(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
        logp = F.log_softmax(outputs["logits"], dim=-1)  # B,R,C
        kl = F.kl_div(logp, targets["distribution"], reduction="none").sum(-1)  # B,R
        masked = targets["masked"].to(kl.dtype)  # B,R
        return (kl * masked).sum() / masked.sum().clamp_min(1.0)


class SymmetricInfoNCELoss(nn.Module):
    """Mean of CE(logits_per_a, diag) and CE(logits_per_b, diag); matching pairs share a row index."""

    def forward(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
        per = [v for k, v in outputs.items() if k.startswith("logits_per_")]
        labels = torch.arange(per[0].shape[0], device=per[0].device)  # B
        return sum(F.cross_entropy(logits, labels) for logits in per) / len(per)
