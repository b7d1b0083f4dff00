"""The module behind the `concat_classifier` head (iACE)."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.activations import activation


class ConcatClassifierModule(nn.Module):
    """tanh(fc(drop(dense(drop(relu(fusion([relu(a); relu(b)]))))))), averaged with the [b; a] order when
    `symmetric`."""

    def __init__(self, width: int, hidden: int, classes: int, dropout: float, symmetric: bool):
        super().__init__()
        self.fusion, self.dense = nn.Linear(width, hidden), nn.Linear(hidden, hidden)
        self.fc = nn.Linear(hidden, classes)
        self.relu, self.drop = activation("relu"), nn.Dropout(dropout)
        self.symmetric = symmetric

    def classify(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fused = self.drop(self.relu(self.fusion(torch.cat([self.relu(a), self.relu(b)], dim=-1))))  # B,H
        return torch.tanh(self.fc(self.drop(self.dense(fused))))  # B,C

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        (image,), (text,) = inputs["image"].values(), inputs["text"].values()  # B,Di / B,Dt
        logits = self.classify(image, text)  # B,C
        if self.symmetric:
            logits = (logits + self.classify(text, image)) / 2  # B,C
        return {"logits": logits}
