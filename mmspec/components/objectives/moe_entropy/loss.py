"""LIMoE's local and global entropy losses over router logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmspec.components.objectives.runtime import ObjectiveModule, one


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of distributions over the last axis [..., E] -> [...]."""
    return -(probs * torch.log(probs.clamp_min(1e-9))).sum(-1)


class MoEEntropy(ObjectiveModule):
    """`local`: mean_t H(p_t); `global`: -H(mean_t p_t), or max(0, threshold - H(mean_t p_t)) with a threshold;
    p_t the softmax of token t's router logits, over every token of the batch."""

    def __init__(self, kind: str, threshold: float | None):
        super().__init__()
        self.kind, self.threshold = kind, threshold

    def forward(self, args, targets):
        probs = F.softmax(one(args["input"]).flatten(0, -2).float(), dim=-1)  # N,E
        if self.kind == "local":
            return entropy(probs).mean()
        spread = entropy(probs.mean(0))  # scalar
        return -spread if self.threshold is None else F.relu(self.threshold - spread)
