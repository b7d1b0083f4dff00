"""Module behind the `convnet` encoder."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.activations import activation


class ConvNet(nn.Module):
    """[Conv2d -> act (-> max or average pool)] per layer; `pooled` = dense layers on the flattened map (the last
    one followed by `last_act`, default `act`), or its global mean; the activations of the `taps` layers are
    emitted as `layer_<i>`."""

    def __init__(self, channels: int, convs: list[tuple[int, int, int, int, int]], act: str, flat: int,
                 dense: list[int], pooling: str = "max", taps: list[int] = (), last_act: str | None = None):
        super().__init__()
        pool_layer = nn.MaxPool2d if pooling == "max" else nn.AvgPool2d
        layers: list[nn.Module] = []
        self.taps: dict[int, str] = {}  # index in `body` of a tapped layer's activation -> output name
        for i, (out, kernel, stride, padding, pool) in enumerate(convs):
            layers += [nn.Conv2d(channels, out, kernel, stride, padding), activation(act)]
            if i in taps:
                self.taps[len(layers) - 1] = f"layer_{i}"
            layers += [pool_layer(pool)] if pool > 1 else []
            channels = out
        self.body = nn.Sequential(*layers)
        fc: list[nn.Module] = []
        for i, width in enumerate(dense):
            fc += [nn.Linear(flat, width), activation(act if i < len(dense) - 1 else last_act or act)]
            flat = width
        self.dense = nn.Sequential(*fc) if fc else None

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        features, taps = inputs["input"]["pixels"], {}  # B,C,H,W
        for j, layer in enumerate(self.body):
            features = layer(features)  # B,C_i,h_i,w_i
            if j in self.taps:
                taps[self.taps[j]] = features
        if self.dense is None:
            return {"features": features, "pooled": features.mean((2, 3)), **taps}  # B,C
        return {"features": features, "pooled": self.dense(features.flatten(1)), **taps}  # B,dense[-1]
