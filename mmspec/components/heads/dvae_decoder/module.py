"""Module behind the `dvae_decoder` head."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.dvae import DVAEDecoder


class DVAEDecoderModule(nn.Module):
    """The dVAE decoder; its 2C output channels split into the mean and the log-scale."""

    def __init__(self, vocab: int, channels: int, hidden: int, init: int, blocks: int, multipliers: list[int]):
        super().__init__()
        self.decoder = DVAEDecoder(vocab, channels, hidden, init, blocks, multipliers)
        self.channels = channels

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        z = next(iter(inputs["input"].values()))  # B,K,h,w
        out = self.decoder(z)  # B,2C,H,W
        return {"pixels": out[:, : self.channels], "log_scale": out[:, self.channels :]}  # B,C,H,W each
