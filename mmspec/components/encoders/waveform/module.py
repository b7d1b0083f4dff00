"""The module behind the `waveform` encoder."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of [B, C, T]."""

    def __init__(self, channels: int, affine: bool, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps, elementwise_affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)  # B,C,T


class WaveformModule(nn.Module):
    """Temporal convs (+ channel LayerNorm, GELU), LayerNorm + Linear to `width`, conv position embedding."""

    def __init__(self, convs: list[list[int]], bias: bool, width: int, position_layers: int, kernel: int,
                 groups: int, eps: float, dropout: float):
        super().__init__()
        layers, cin = [], 1
        for cout, k, stride in convs:
            layers.append(nn.Sequential(nn.Conv1d(cin, cout, k, stride, bias=bias), ChannelNorm(cout, True), nn.GELU()))
            cin = cout
        self.convs = nn.ModuleList(layers)
        self.proj_norm = nn.LayerNorm(cin, eps=eps)
        self.proj = nn.Linear(cin, width)
        self.positions = nn.ModuleList(nn.Conv1d(width, width, kernel, padding=kernel // 2, groups=groups)
                                       for _ in range(position_layers))
        self.position_norm = ChannelNorm(width, False)
        self.trim = 1 - kernel % 2
        """Frames to drop at the end: an even kernel with padding k // 2 yields one frame too many."""
        self.norm = nn.LayerNorm(width, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = inputs["input"]["values"].transpose(1, 2)  # B,1,L
        for conv in self.convs:
            x = conv(x)  # B,C,T
        features = self.proj_norm(x.transpose(1, 2))  # B,T,C
        h = self.dropout(self.proj(features))  # B,T,D
        if len(self.positions):
            p = h.transpose(1, 2)  # B,D,T
            for conv in self.positions:
                p = conv(p)  # B,D,T(+1)
                p = p[:, :, : p.shape[2] - self.trim]  # B,D,T
                p = F.gelu(self.position_norm(p))  # B,D,T
            h = h + p.transpose(1, 2)  # B,T,D
        h = self.dropout(self.norm(h))  # B,T,D
        return {"features": features, "sequence": h}
