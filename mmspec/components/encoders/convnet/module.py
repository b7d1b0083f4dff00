"""Module behind the `convnet` encoder."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.activations import activation


class ConvNet(nn.Module):
    """[Conv2d -> act (-> MaxPool2d)] per layer; `pooled` = dense layers on the flattened map, or its global mean."""

    def __init__(self, channels: int, convs: list[tuple[int, int, int, int, int]], act: str, flat: int,
                 dense: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        for out, kernel, stride, padding, pool in convs:
            layers += [nn.Conv2d(channels, out, kernel, stride, padding), activation(act)]
            layers += [nn.MaxPool2d(pool)] if pool > 1 else []
            channels = out
        self.body = nn.Sequential(*layers)
        fc: list[nn.Module] = []
        for width in dense:
            fc += [nn.Linear(flat, width), activation(act)]
            flat = width
        self.dense = nn.Sequential(*fc) if fc else None

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        features = self.body(inputs["input"]["pixels"])  # B,C,h,w
        if self.dense is None:
            return {"features": features, "pooled": features.mean((2, 3))}  # B,C
        return {"features": features, "pooled": self.dense(features.flatten(1))}  # B,dense[-1]
