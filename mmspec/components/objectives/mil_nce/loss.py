"""The module behind the `mil_nce` objective."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmspec.components.objectives.runtime import ObjectiveModule, one


class MILNCELoss(ObjectiveModule):
    """Mean over clips of logsumexp(clip i vs every caption, every clip vs i's captions) - logsumexp(i's own)."""

    def __init__(self, temperature: float):
        super().__init__()
        self.temperature = temperature

    def forward(self, args, targets):
        v = F.normalize(one(args["video"]), dim=-1)  # B,D
        t = F.normalize(one(args["text"]), dim=-1)  # B,K,D
        b = v.shape[0]
        sim = torch.einsum("id,jkd->ijk", v, t) / self.temperature  # B,B,K: clip i vs caption k of clip j
        own = sim.diagonal(dim1=0, dim2=1).transpose(0, 1)  # B,K
        every = torch.cat([sim.reshape(b, -1), sim.transpose(0, 1).reshape(b, -1)], dim=1)  # B,2*B*K
        return (torch.logsumexp(every, 1) - torch.logsumexp(own, 1)).mean()
