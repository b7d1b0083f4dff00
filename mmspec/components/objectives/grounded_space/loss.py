"""Loss of the `grounded_space` objective (Bordes et al. 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmspec.components.objectives.runtime import ObjectiveModule, one


def cosines(x: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarities of the rows of x [B, D] -> [B, B]."""
    x = F.normalize(x, dim=-1)
    return x @ x.T  # B,B


class GroundedSpace(ObjectiveModule):
    """cluster_weight * cluster hinge + perceptual_weight * (-Pearson correlation of the two similarity
    structures); rows 2i and 2i+1 share an image."""

    def __init__(self, margin: float, cluster_weight: float, perceptual_weight: float):
        super().__init__()
        self.margin, self.cluster_weight, self.perceptual_weight = margin, cluster_weight, perceptual_weight

    def forward(self, args, targets):
        g, v = one(args["input"]), one(args["image"])  # B,D / B,Dv
        b = g.shape[0]
        sim = cosines(g)  # B,B
        rows = torch.arange(b, device=g.device)
        pair = rows // 2  # B: the image of each row
        positive = sim[rows, rows ^ 1]  # B: cos(a, partner of a)
        other = (pair[:, None] != pair[None, :]).to(sim.dtype)  # B,B: rows of the other pairs
        hinge = (self.margin - positive[:, None] + sim).clamp(min=0) * other  # B,B
        cluster = hinge.sum() / other.sum().clamp(min=1)
        upper = torch.triu(torch.ones(b, b, dtype=torch.bool, device=g.device), diagonal=1)  # B,B: i < j
        s, t = sim[upper], cosines(v)[upper]  # P each
        s, t = s - s.mean(), t - t.mean()
        pearson = (s * t).sum() / torch.sqrt((s * s).sum() * (t * t).sum() + 1e-8)
        return self.cluster_weight * cluster - self.perceptual_weight * pearson
