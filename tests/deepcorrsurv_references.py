"""DeepCorrSurv (Yao et al. 2017, SU-04) rebuilt with torch.nn from the authors' Theano/Lasagne code
(uta-smile/MICCAI17_DeepCorrLearning: DeepCorrPre.py builds both views and their correlation loss, DeepMultiSurv.py
adds the common sub-network), which cannot be installed; tests/references.py compares the spec's count with it."""

from __future__ import annotations

import torch
from survival_references import deepconvsurv_official
from torch import nn


class DeepCorrSurv(nn.Module):
    """The image view (WSISA's DeepConvSurv layers ending in a linear Dense(32)), the molecular view (Dense 128 +
    ReLU, linear Dense 32) and the common sub-network on their concatenation (Dense 32 + ReLU, linear Dense 8,
    linear Dense 1). Lasagne's Dense layers all have a bias."""

    def __init__(self, channels: int, height: int, width: int, molecular: int, filters: int = 32, view: int = 32,
                 hidden: int = 128, common: tuple[int, int] = (32, 8)):
        super().__init__()
        self.image = deepconvsurv_official(channels, height, width, filters, view)[:-2]  # up to Dense(view), linear
        self.molecular = nn.Sequential(nn.Linear(molecular, hidden), nn.ReLU(), nn.Linear(hidden, view))
        self.common = nn.Sequential(nn.Linear(2 * view, common[0]), nn.ReLU(), nn.Linear(*common),
                                    nn.Linear(common[1], 1))

    def forward(self, patch, values):
        image, molecular = self.image(patch), self.molecular(values)  # B,view each
        return self.common(torch.cat([image, molecular], dim=1))  # B,1
