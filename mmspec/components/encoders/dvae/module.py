"""Module behind the `dvae_encoder` encoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmspec.blocks.dvae import DVAEEncoder


class DVAEEncoderModule(nn.Module):
    """`blocks` named as in FlavaImageCodebook; logits, argmax codes and (relaxed) one-hot codes."""

    def __init__(self, channels: int, hidden: int, vocab: int, blocks: int, multipliers: list[int],
                 temperature: float):
        super().__init__()
        self.encoder = DVAEEncoder(channels, hidden, vocab, blocks, multipliers)
        self.temperature = temperature

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        logits = self.encoder(inputs["input"]["pixels"])  # B,K,h,w
        codes = logits.argmax(1)  # B,h,w
        if self.training:
            onehot = F.gumbel_softmax(logits, tau=self.temperature, dim=1)  # B,K,h,w relaxed samples
        else:
            onehot = F.one_hot(codes, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)  # B,K,h,w
        return {"logits": logits.flatten(2).transpose(1, 2), "codes": codes.flatten(1), "onehot": onehot}
