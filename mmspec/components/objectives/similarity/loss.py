"""Losses of the similarity family: cross-modal margin similarity, binary cross-entropy."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from mmspec.components.objectives.runtime import ObjectiveModule, one


class ModalitySimilarity(ObjectiveModule):
    """Mean over modality pairs (m, n), m != n, and patients a != b with a_m, a_n, b_n present of
    relu(margin - cos(a_m, a_n) + cos(a_m, b_n))."""

    def __init__(self, count: int, flagged: list[int], margin: float):
        super().__init__()
        self.count, self.flagged, self.margin = count, flagged, margin

    def forward(self, args, targets):
        e = [F.normalize(one(args[str(i)]), dim=-1) for i in range(self.count)]  # B,D each
        ones = torch.ones(e[0].shape[0], dtype=torch.bool, device=e[0].device)  # B
        p = [one(args[f"present{i}"]) != 0 if i in self.flagged else ones for i in range(self.count)]  # B each
        other = ~torch.eye(e[0].shape[0], dtype=torch.bool, device=e[0].device)  # B,B: a != b
        total, terms = e[0].new_zeros(()), e[0].new_zeros(())
        for m, n in itertools.permutations(range(self.count), 2):
            sim = e[m] @ e[n].T  # B,B: cos(a_m, b_n)
            hinge = F.relu(self.margin - sim.diagonal()[:, None] + sim)  # B,B
            valid = other & (p[m] & p[n])[:, None] & p[n][None, :]  # B,B
            total = total + (hinge * valid).sum()
            terms = terms + valid.sum()
        return total / terms.clamp_min(1)


class BinaryCrossEntropy(ObjectiveModule):
    """Mean logistic loss of logits [B] or [B, 1] against labels in {0, 1}."""

    def forward(self, args, targets):
        logit = one(args["input"]).reshape(-1)  # B
        return F.binary_cross_entropy_with_logits(logit, targets["labels"].reshape(-1).to(logit.dtype))
