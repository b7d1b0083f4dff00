"""Module behind the `risk` head."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.activations import activation
from mmspec.blocks.io import only


class Risk(nn.Module):
    """[Linear -> act (-> BatchNorm1d) (-> Dropout)] x len(hidden) -> Linear(1, bias=bias); [B, D] -> [B, 1]."""

    def __init__(self, dim: int, hidden: list[int], act: str, batch_norm: bool, dropout: float, bias: bool,
                 eps: float):
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(dim, width), activation(act)]
            layers += [nn.BatchNorm1d(width, eps=eps)] if batch_norm else []
            layers += [nn.Dropout(dropout)] if dropout else []
            dim = width
        layers.append(nn.Linear(dim, 1, bias=bias))
        self.mlp = nn.Sequential(*layers)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {"risk": self.mlp(only(inputs))}  # B,1
