"""The module behind the `modality_pool` fusion."""

from __future__ import annotations

import torch
from torch import nn


class ModalityPoolModule(nn.Module):
    """Vectors [B, D] of M modalities and presence flags [B] of some of them -> the mean / max / sum over the
    present ones [B, D] (zeros where none is present). Training with `dropout` > 0 also hides each present
    modality of each example with that probability."""

    def __init__(self, count: int, flagged: list[int], op: str, dropout: float):
        super().__init__()
        self.count, self.flagged, self.op, self.dropout = count, flagged, op, dropout

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = torch.stack([next(iter(inputs[str(i)].values())) for i in range(self.count)], dim=1)  # B,M,D
        ones = torch.ones(x.shape[:1], dtype=torch.bool, device=x.device)  # B
        present = torch.stack([next(iter(inputs[f"present{i}"].values())) != 0 if i in self.flagged else ones
                               for i in range(self.count)], dim=1)  # B,M
        if self.training and self.dropout > 0:
            present = present & (torch.rand(present.shape, device=x.device) >= self.dropout)  # B,M
        weight = present.unsqueeze(-1)  # B,M,1
        if self.op == "max":
            pooled = x.masked_fill(~weight, float("-inf")).amax(dim=1)  # B,D
            return {"fused": torch.where(present.any(dim=1, keepdim=True), pooled, torch.zeros_like(pooled))}
        total = (x * weight.to(x.dtype)).sum(dim=1)  # B,D
        if self.op == "sum":
            return {"fused": total}
        return {"fused": total / weight.sum(dim=1).clamp_min(1).to(x.dtype)}  # B,D
