"""The module behind the `pathnet` encoder, and the host-side step that fixes a trained path."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.activations import activation


class PathNetModule(nn.Module):
    """`layers` x `modules` Linear + activation modules; layer l sums its modules' outputs weighted by path[:, l]."""

    def __init__(self, dim: int, layers: int, modules: int, width: int, act: str):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(nn.Linear(dim if i == 0 else width, width) for _ in range(modules)) for i in range(layers))
        self.act = activation(act)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        (x,) = inputs["input"].values()  # B,D
        (path,) = inputs["path"].values()  # B,L,M
        for i, layer in enumerate(self.layers):
            out = torch.stack([self.act(module(x)) for module in layer], 1)  # B,M,W
            x = (path[:, i].unsqueeze(-1) * out).sum(1)  # B,W
        return {"embedding": x}


def fix_path(module: PathNetModule, path: list[list[int]]) -> None:
    """End of a task (PathNet's transfer step): the modules of the winning `path` (per layer, its module indices)
    are frozen, every other module is re-initialised for the next task."""
    for layer, active in zip(module.layers, path, strict=True):
        for m, linear in enumerate(layer):
            if m in active:
                linear.requires_grad_(False)
            elif linear.weight.requires_grad:
                linear.reset_parameters()
