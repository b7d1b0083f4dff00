"""The modules behind the `tabular` and `wide` encoders."""

from __future__ import annotations

import math

import torch
from torch import nn


def _numeric(inputs: dict[str, dict[str, torch.Tensor]], scalar: bool) -> torch.Tensor:
    bundle = inputs["numeric"]
    x = bundle["values"] if "values" in bundle else next(iter(bundle.values()))  # B,N or B
    return x[:, None] if scalar else x  # B,N


def _offsets(sizes: list[int]) -> torch.Tensor:
    """Start row of each block in a table that stacks blocks of `sizes` rows."""
    return torch.tensor([0, *sizes[:-1]], dtype=torch.int64).cumsum(0)


class TabularModule(nn.Module):
    """ids [B, C] -> per-column embeddings [B, sum d_c], numeric [B, N] -> (BatchNorm) -> concatenated [B, D].
    Columns of one width: one packed table (rows of column c start at offsets[c]); else one table per column."""

    def __init__(self, levels: list[int], dims: list[int], numeric: int, scalar: bool, norm: str, dropout: float):
        super().__init__()
        self.scalar = scalar
        self.packed = len(set(dims)) == 1 and len(dims) > 1
        if self.packed:
            self.table = nn.Embedding(sum(levels), dims[0])
            self.register_buffer("offsets", _offsets(levels), persistent=False)
        else:
            self.tables = nn.ModuleList(nn.Embedding(n, d) for n, d in zip(levels, dims, strict=True))
        self.has_categorical = bool(levels)
        self.norm = nn.BatchNorm1d(numeric) if norm == "batch" else nn.Identity()
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        parts = []
        if self.has_categorical:
            ids = inputs["categorical"]["ids"]  # B,C
            if self.packed:
                parts.append(self.table(ids + self.offsets).flatten(1))  # B,C*d
            else:
                parts += [table(ids[:, c]) for c, table in enumerate(self.tables)]  # B,d_c each
            parts = [self.dropout(torch.cat(parts, dim=-1))]  # B,sum d_c
        if "numeric" in inputs:
            parts.append(self.norm(_numeric(inputs, self.scalar)))  # B,N
        return {"features": torch.cat(parts, dim=-1)}  # B,D


class WideModule(nn.Module):
    """w^T [one-hot columns, one-hot crosses, numeric] + b as lookups: one weight row per level of each column
    and per level combination of each cross (mixed-radix index of the crossed columns' ids)."""

    def __init__(self, levels: list[int], crosses: list[list[int]], numeric: int, scalar: bool, dim: int,
                 bias: bool):
        super().__init__()
        self.scalar = scalar
        sizes = [*levels, *(math.prod(levels[c] for c in cross) for cross in crosses)]
        self.crosses = crosses
        self.weight = nn.Embedding(sum(sizes), dim) if sizes else None
        if sizes:
            self.register_buffer("offsets", _offsets(sizes), persistent=False)
        strides = [[math.prod(levels[c] for c in cross[k + 1:]) for k in range(len(cross))] for cross in crosses]
        self.strides = strides
        self.numeric = nn.Linear(numeric, dim, bias=False) if numeric else None
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        terms = []
        if self.weight is not None:
            ids = inputs["categorical"]["ids"]  # B,C
            crossed = [sum(ids[:, c] * s for c, s in zip(cross, stride, strict=True))
                       for cross, stride in zip(self.crosses, self.strides, strict=True)]  # B each
            rows = torch.cat([ids, *(c[:, None] for c in crossed)], dim=1) + self.offsets  # B,C+X
            terms.append(self.weight(rows).sum(dim=1))  # B,dim
        if self.numeric is not None:
            terms.append(self.numeric(_numeric(inputs, self.scalar)))  # B,dim
        logits = terms[0] if len(terms) == 1 else terms[0] + terms[1]  # B,dim
        return {"logits": logits + self.bias if self.bias is not None else logits}
