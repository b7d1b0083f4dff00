"""Modules behind the head components."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmspec.layers.common import activation


def _only(inputs: dict[str, dict[str, torch.Tensor]]) -> torch.Tensor:
    return next(iter(inputs["input"].values()))


class Select(nn.Module):
    """Apply a module to the single input tensor and name the result."""

    def __init__(self, inner: nn.Module, name: str):
        super().__init__()
        self.inner = inner
        self.name = name

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {self.name: self.inner(_only(inputs))}


class MLPClassifier(nn.Module):
    """[Linear -> act (-> LN) -> dropout] x len(hidden) -> Linear(num_classes)."""

    def __init__(self, dim: int, hidden: list[int], num_classes: int, act: str, norm: bool, eps: float, dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(dim, width), activation(act)]
            layers += [nn.LayerNorm(width, eps=eps)] if norm else []
            layers.append(nn.Dropout(dropout))
            dim = width
        layers.append(nn.Linear(dim, num_classes))
        self.mlp = nn.Sequential(*layers)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {"logits": self.mlp(_only(inputs))}  # B,C


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
        h = self.transform(_only(inputs))  # B,S,D
        return {"logits": F.linear(h, self.weight, self.bias)}  # B,S,C


class ContrastiveModule(nn.Module):
    """CLIP similarity logits with a learned log inverse temperature (exp'd, as in the reference)."""

    def __init__(self, names: list[str], logit_scale_init: float):
        super().__init__()
        self.a, self.b = names
        self.logit_scale = nn.Parameter(torch.tensor(logit_scale_init))

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        a = next(iter(inputs[self.a].values()))
        b = next(iter(inputs[self.b].values()))
        a = a / a.norm(p=2, dim=-1, keepdim=True)  # Ba,D
        b = b / b.norm(p=2, dim=-1, keepdim=True)  # Bb,D
        logits = self.logit_scale.exp() * a @ b.t()  # Ba,Bb
        return {
            f"logits_per_{self.a}": logits,
            f"logits_per_{self.b}": logits.t(),
            f"{self.a}_embeds": a,
            f"{self.b}_embeds": b,
        }
