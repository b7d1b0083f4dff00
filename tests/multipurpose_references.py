"""Reference networks of the multipurpose-model specs (MP-07 PathNet, MP-09 muNet): torch.nn rebuilds of the
papers' descriptions where no implementation can be installed, transformers classes elsewhere, so that
tests/references.py can compare the specs' parameter counts and tests/coverage/test_multipurpose.py their outputs."""

from __future__ import annotations

import torch
import transformers as tf
from torch import nn


class PathNetReference(nn.Module):
    """PathNet as Section 2.1 describes it: L layers of M modules (Linear + ReLU), only a path's modules evaluated,
    their outputs summed per layer, then the task's own linear layer."""

    def __init__(self, dim: int = 784, layers: int = 3, modules: int = 10, width: int = 20, classes: int = 2):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(nn.Linear(dim if i == 0 else width, width) for _ in range(modules)) for i in range(layers))
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor, path: list[list[int]]) -> torch.Tensor:
        for layer, active in zip(self.layers, path, strict=True):
            x = sum(torch.relu(layer[m](x)) for m in sorted(set(active)))  # B,W
        return self.head(x)  # B,classes


def pathnet() -> nn.Module:
    """The binary MNIST PathNet: 3 x 10 modules of 20 units over 784 pixels, a 2-way task layer."""
    return PathNetReference()


def munet(image_size: int = 224) -> nn.Module:
    """muNet's root model for one task: ViT-L/16 with a 1000-class head."""
    return tf.ViTForImageClassification(tf.ViTConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                                     intermediate_size=4096, num_labels=1000,
                                                     image_size=image_size))
