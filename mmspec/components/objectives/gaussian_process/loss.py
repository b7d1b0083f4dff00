"""Loss of the `gp_marginal_likelihood` objective."""

from __future__ import annotations

import math

import torch

from mmspec.components.objectives.runtime import ObjectiveModule


class GPMarginalLikelihood(ObjectiveModule):
    """Reads the head's last batch of locations and times (its forward stores them while training)."""

    def __init__(self, head: torch.nn.Module):
        super().__init__()
        self._head = [head]

    def forward(self, args, targets):
        head = self._head[0]
        mean = args["input"]["mean"]  # B
        g, t = head.last_batch  # B,L ; B
        r = targets["y"].to(mean.dtype) - mean  # B
        chol = torch.linalg.cholesky(head.covariance(g, t))  # B,B
        z = torch.cholesky_solve(r[:, None], chol)[:, 0]  # B
        n = r.shape[0]
        return (r @ z + 2 * torch.log(torch.diagonal(chol)).sum() + n * math.log(2 * math.pi)) / (2 * n)
