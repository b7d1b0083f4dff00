"""Small shared blocks: activations by name, residual sublayers, pooling, masks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the GELU approximation used by CLIP."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class GELU(nn.Module):
    """Exact (erf) GELU; `tanh` is a different op, never interchangeable at fp32 tolerances."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate=self.approximate)


ACTIVATIONS = {
    "gelu": lambda: GELU(),
    "gelu_tanh": lambda: GELU("tanh"),
    "quick_gelu": QuickGELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}


def activation(name: str) -> nn.Module:
    """A fresh activation module by its spec name."""
    return ACTIVATIONS[name]()


MASKED = -1e4
"""Additive bias for blocked attention positions (as BERT/ViLBERT): exp underflows to 0 in fp32 and fp16,
and fully masked rows stay finite (uniform), unlike -inf."""


def padding_bias(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B, S] keep-mask (1 = attend) -> additive attention bias [B, 1, 1, S] in the dtype of `like`."""
    return (1.0 - mask[:, None, None, :].type_as(like)) * MASKED  # B,1,1,S


def causal_bias(like: torch.Tensor) -> torch.Tensor:
    """Additive causal bias [S, S] for a sequence `like` [B, S, D]: position i attends to j <= i."""
    idx = torch.arange(like.shape[1], device=like.device)  # S
    return (idx[None, :] > idx[:, None]).type_as(like) * MASKED  # S,S


class FeedForward(nn.Module):
    """Position-wise MLP: Linear(dim, hidden) -> act -> Linear(hidden, out)."""

    def __init__(self, dim: int, hidden: int, act: str, out: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = activation(act)
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Residual(nn.Module):
    """Residual wrapper: post-norm `LN(x + drop(f(x)))` (BERT) or pre-norm `x + drop(f(LN(x)))` (CLIP, ViT)."""

    def __init__(self, dim: int, norm_first: bool, eps: float, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: torch.Tensor, f, *args) -> torch.Tensor:
        if self.norm_first:
            return x + self.dropout(f(self.norm(x), *args))
        return self.norm(x + self.dropout(f(x, *args)))


class Pool(nn.Module):
    """Sequence [B, S, D] -> vector [B, D'] by cls / eos / mean, then optional LayerNorm, dense, activation."""

    def __init__(
        self, kind: str, dim: int, norm: bool, eps: float, dense: int | None, act: str, eos_id: int | None = None
    ):
        super().__init__()
        self.kind = kind
        self.eos_id = eos_id
        self.norm = nn.LayerNorm(dim, eps=eps) if norm else nn.Identity()
        self.dense = nn.Linear(dim, dense) if dense else nn.Identity()
        self.act = activation(act)

    def forward(self, seq: torch.Tensor, ids: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "cls":
            pooled = seq[:, 0]  # B,D
        elif self.kind == "eos":
            rows = torch.arange(seq.shape[0], device=seq.device)  # B
            if self.eos_id is None:
                at = ids.argmax(dim=-1)  # B  (original CLIP: the highest id is the end-of-text token)
            else:
                at = (ids == self.eos_id).to(torch.int32).argmax(dim=-1)  # B  first eos, 0 when there is none
            pooled = seq[rows, at]  # B,D
        elif mask is not None:
            keep = mask.type_as(seq).unsqueeze(-1)  # B,S,1
            pooled = (seq * keep).sum(1) / keep.sum(1).clamp_min(1.0)  # B,D
        else:
            pooled = seq.mean(1)  # B,D
        return self.act(self.dense(self.norm(pooled)))
