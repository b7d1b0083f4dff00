"""Loss of the `distribution_nll` objective."""

from __future__ import annotations

import torch
from torch import distributions as D

from mmspec.components.objectives.runtime import ObjectiveModule


class DistributionNLL(ObjectiveModule):
    """-mean log p(y | theta) + head.penalty(); Poisson with exposure: rate * exposure is the mean."""

    def __init__(self, family: str, exposure: bool, head: torch.nn.Module):
        super().__init__()
        self.family, self.exposure = family, exposure
        self._head = [head]  # the head's penalty, without registering its parameters a second time

    def forward(self, args, targets):
        theta = args["input"]  # name -> B
        y = targets["y"].to(next(iter(theta.values())).dtype)  # B
        if self.family == "normal":
            dist = D.Normal(theta["loc"], theta["scale"])
        elif self.family == "poisson":
            rate = theta["rate"] * targets["exposure"] if self.exposure else theta["rate"]
            dist = D.Poisson(rate, validate_args=False)
        elif self.family == "bernoulli":
            dist = D.Bernoulli(probs=theta["probs"].clamp(1e-6, 1 - 1e-6))
        else:
            dist = D.Gamma(theta["concentration"], theta["rate"])
        return -dist.log_prob(y).mean() + self._head[0].penalty()
