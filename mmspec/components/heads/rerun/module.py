"""The module behind the `rerun` head."""

from __future__ import annotations

import torch
from torch import nn


class Rerun(nn.Module):
    """Another node's module on this node's inputs, renamed to the fields that module reads. The module is held in
    a tuple, not as a submodule: its parameters, state and checkpoint names stay its own node's."""

    def __init__(self, target: nn.Module, fields: dict[str, dict[str, str]]):
        super().__init__()
        self.target = (target,)
        self.fields = fields
        """Port -> {field read here: the field the target reads}."""

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        renamed = {p: {self.fields[p][k]: v for k, v in bundle.items()} for p, bundle in inputs.items()}
        return self.target[0](renamed)
