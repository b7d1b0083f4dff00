"""Modules behind the `classifier` and `token_classifier` heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmspec.blocks.activations import activation
from mmspec.blocks.io import only


class MLPClassifier(nn.Module):
    """[Linear -> act (-> LN) -> dropout] x len(hidden) -> Linear(num_classes), with or without its bias."""

    def __init__(self, dim: int, hidden: list[int], num_classes: int, act: str, norm: bool, eps: float, dropout: float,
                 bias: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(dim, width), activation(act)]
            layers += [nn.LayerNorm(width, eps=eps)] if norm else []
            layers.append(nn.Dropout(dropout))
            dim = width
        layers.append(nn.Linear(dim, num_classes, bias=bias))
        self.mlp = nn.Sequential(*layers)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {"logits": self.mlp(only(inputs))}  # B,C


class TokenClassifierModule(nn.Module):
    """dense -> act -> LN transform, then x W^T + b with W either its own or a tied embedding matrix."""

    def __init__(
        self,
        dim: int,
        classes: int | None,
        tied: nn.Parameter | None,
        transform: bool,
        act: str,
        eps: float,
        bias: bool = True,
    ):
        super().__init__()
        self.transform = (
            nn.Sequential(nn.Linear(dim, dim), activation(act), nn.LayerNorm(dim, eps=eps))
            if transform
            else nn.Identity()
        )
        if tied is not None:
            self.weight = tied
        else:
            self.weight = nn.Parameter(torch.empty(classes, dim))
            nn.init.normal_(self.weight, std=0.02)
        self.bias = nn.Parameter(torch.zeros(self.weight.shape[0])) if bias else None

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        h = self.transform(only(inputs))  # B,S,D
        return {"logits": F.linear(h, self.weight, self.bias)}  # B,S,C
