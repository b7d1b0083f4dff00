"""The module behind the `scalar` encoder."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.activations import activation
from mmspec.blocks.positions import timestep_embedding


class ScalarEmbedding(nn.Module):
    """values [B] -> sinusoid or Linear(1, dim) [B, dim] -> Linear (-> act -> Linear)* [B, D]."""

    def __init__(self, embed: str, dim: int, hidden: list[int], act: str, flip_sin_to_cos: bool, freq_shift: float,
                 max_period: float):
        super().__init__()
        self.dim, self.flip_sin_to_cos, self.freq_shift, self.max_period = dim, flip_sin_to_cos, freq_shift, max_period
        self.proj = nn.Linear(1, dim) if embed == "linear" else None
        layers: list[nn.Module] = []
        for i, width in enumerate(hidden):
            layers += [activation(act)] if i else []
            layers.append(nn.Linear(dim, width))
            dim = width
        self.mlp = nn.Sequential(*layers)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = next(iter(inputs["input"].values()))  # B
        if self.proj is None:
            e = timestep_embedding(x, self.dim, self.flip_sin_to_cos, self.freq_shift,
                                   max_period=self.max_period)  # B,dim
        else:
            e = self.proj(x.float()[:, None])  # B,dim
        return {"embedding": self.mlp(e)}  # B,D
