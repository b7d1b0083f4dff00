"""The discrete VAE of DALL-E (Ramesh et al. 2021): convolutional encoder to logits over K image tokens per
position, and a decoder from (relaxed) one-hot codes to pixels. Residual blocks whose residual path is scaled by
1 / n_layers^2 (n_layers = all blocks of the network), max-pooling (encoder) or nearest x2 upsampling (decoder)
between groups.

Contract: `DVAEEncoder` maps [B, C, H, W] -> logits [B, K, H/8, W/8] (four groups); `DVAEDecoder` maps codes
[B, K, h, w] (one-hot, or Gumbel-softmax samples in training) -> [B, 2C, 8h, 8w] (the logit-Laplace mean and log
scale). Parameter names follow transformers' FlavaImageCodebook (the released encoder): blocks.input,
blocks.group_i.group.block_j.{id_path, res_path.path.conv_k}, blocks.output.conv. torch.fx traceable.
"""

from __future__ import annotations

import torch
from torch import nn


class ResPath(nn.Module):
    """ReLU -> conv for each (kernel, in, out) in `convs`, as `path.conv_1..n`."""

    def __init__(self, convs: list[tuple[int, int, int]]):
        super().__init__()
        self.path = nn.Sequential()
        for i, (k, cin, cout) in enumerate(convs, 1):
            self.path.add_module(f"relu_{i}", nn.ReLU())
            self.path.add_module(f"conv_{i}", nn.Conv2d(cin, cout, k, padding=(k - 1) // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.path(x)  # B,C',H,W


class DVAEBlock(nn.Module):
    """id_path(x) + res_path(x) / n_layers^2, id_path a 1x1 conv where the width changes; the residual path has a
    hidden width of out / 4: 3x3, 3x3, 3x3, 1x1 convs (encoder) or 1x1, 3x3, 3x3, 3x3 (decoder)."""

    def __init__(self, cin: int, cout: int, n_layers: int, decoder: bool = False):
        super().__init__()
        hid = cout // 4
        kernels = (1, 3, 3, 3) if decoder else (3, 3, 3, 1)
        widths = [cin, hid, hid, hid, cout]
        self.id_path = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.res_path = ResPath([(k, widths[i], widths[i + 1]) for i, k in enumerate(kernels)])
        self.post_gain = 1.0 / n_layers**2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.id_path(x) + self.post_gain * self.res_path(x)  # B,C',H,W


class DVAEGroup(nn.Module):
    """`count` blocks (as `group.block_1..count`), then max-pool (encoder) or nearest x2 (decoder) unless last."""

    def __init__(self, cin: int, cout: int, count: int, n_layers: int, resample: str | None, decoder: bool):
        super().__init__()
        self.group = nn.Sequential()
        for j in range(count):
            self.group.add_module(f"block_{j + 1}", DVAEBlock(cin if j == 0 else cout, cout, n_layers, decoder))
        if resample == "pool":
            self.group.add_module("pool", nn.MaxPool2d(2))
        elif resample == "upsample":
            self.group.add_module("upsample", nn.Upsample(scale_factor=2.0, mode="nearest"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.group(x)  # B,C',H',W'


class OutputConv(nn.Module):
    """ReLU -> 1x1 conv, as `conv`."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.relu(x))  # B,C',H,W


class DVAEEncoder(nn.Module):
    """7x7 conv to `hidden`, len(multipliers) groups of `blocks` blocks at hidden * multiplier channels with 2x2
    max-pooling between groups, ReLU + 1x1 conv to `vocab` logits."""

    def __init__(self, channels: int, hidden: int, vocab: int, blocks: int, multipliers: list[int]):
        super().__init__()
        n_layers, g = blocks * len(multipliers), len(multipliers)
        widths = [hidden, *(hidden * m for m in multipliers)]
        self.blocks = nn.Sequential()
        self.blocks.add_module("input", nn.Conv2d(channels, hidden, 7, padding=3))
        for i in range(g):
            self.blocks.add_module(f"group_{i + 1}", DVAEGroup(widths[i], widths[i + 1], blocks, n_layers,
                                                               "pool" if i < g - 1 else None, decoder=False))
        self.blocks.add_module("output", OutputConv(widths[-1], vocab))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)  # B,K,h,w


class DVAEDecoder(nn.Module):
    """1x1 conv from `vocab` codes to `init` channels, groups of `blocks` blocks at hidden * multiplier channels
    (widest first) with nearest x2 upsampling between groups, ReLU + 1x1 conv to 2 * channels."""

    def __init__(self, vocab: int, channels: int, hidden: int, init: int, blocks: int, multipliers: list[int]):
        super().__init__()
        n_layers, g = blocks * len(multipliers), len(multipliers)
        widths = [init, *(hidden * m for m in reversed(multipliers))]
        self.blocks = nn.Sequential()
        self.blocks.add_module("input", nn.Conv2d(vocab, init, 1))
        for i in range(g):
            self.blocks.add_module(f"group_{i + 1}", DVAEGroup(widths[i], widths[i + 1], blocks, n_layers,
                                                               "upsample" if i < g - 1 else None, decoder=True))
        self.blocks.add_module("output", OutputConv(widths[-1], 2 * channels))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.blocks(z)  # B,2C,H,W
