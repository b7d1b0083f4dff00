"""Parameter-free fusion modules; inputs arrive as single-field bundles in reference order."""

from __future__ import annotations

import torch
from torch import nn


def _tensors(inputs: dict[str, dict[str, torch.Tensor]]) -> list[torch.Tensor]:
    return [next(iter(bundle.values())) for bundle in inputs.values()]


class Elementwise(nn.Module):
    def __init__(self, op: str):
        super().__init__()
        self.op = op

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        xs = _tensors(inputs)
        y = xs[0]
        for x in xs[1:]:
            y = y * x if self.op == "product" else y + x
        return {"fused": y / len(xs) if self.op == "mean" else y}


class Concat(nn.Module):
    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {"fused": torch.cat(_tensors(inputs), dim=-1)}


class ConcatSequences(nn.Module):
    """Sequences [B, S_i, D] (an input's `sequence`, or its only tensor) -> `sequence` [B, sum S_i, D] and, with
    `mask`, `mask` [B, sum S_i] (int64; an input without a mask counts as all ones)."""

    def __init__(self, mask: bool):
        super().__init__()
        self.mask = mask

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        seqs = [b["sequence"] if "sequence" in b else next(iter(b.values())) for b in inputs.values()]  # B,S_i,D
        out = {"sequence": torch.cat(seqs, dim=1)}  # B,S,D
        if self.mask:
            masks = [b["mask"] if "sequence" in b and "mask" in b else torch.ones_like(s[..., 0], dtype=torch.int64)
                     for b, s in zip(inputs.values(), seqs, strict=True)]  # B,S_i
            out["mask"] = torch.cat(masks, dim=1)  # B,S
        return out
