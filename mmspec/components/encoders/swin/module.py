"""The module behind the `swin` encoder: shared pre-norm Blocks run on (shifted) windows of the token grid."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.attention import MASKED, combine_biases
from mmspec.blocks.positions import GridRelativePositionBias
from mmspec.blocks.transformer import Block


def shift_mask(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """Additive mask [windows, 1, w*w, w*w] that keeps shifted-window attention inside the regions the cyclic
    shift glued together (MASKED between tokens of different regions)."""
    labels = torch.zeros(height, width)  # H,W
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for i, rows in enumerate(cuts):
        for j, cols in enumerate(cuts):
            labels[rows, cols] = 3 * i + j
    windows = labels.view(height // window, window, width // window, window).transpose(1, 2).reshape(-1, window**2)
    return (windows[:, None, :] != windows[:, :, None]).float()[:, None] * MASKED  # nW,1,T,T


class SwinLayer(nn.Module):
    """One block on windows: roll by -shift, cut into windows, pre-norm attention + MLP (per-token parts commute
    with the windowing), paste back, roll by +shift."""

    def __init__(self, dim: int, heads: int, ffn: int, act: str, eps: float, grid: tuple[int, int], window: int,
                 shift: int):
        super().__init__()
        self.block = Block(dim, heads, ffn, act, True, eps, 0.0, 0.0)
        self.relative = GridRelativePositionBias(window, window, heads, class_token=False)
        self.grid, self.window, self.shift = grid, window, shift
        if shift:
            self.register_buffer("mask", shift_mask(*grid, window, shift), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, (h, w), c, k = x.shape[0], self.grid, x.shape[2], self.window
        x = x.view(b, h, w, c)  # B,H,W,C
        if self.shift:
            x = torch.roll(x, (-self.shift, -self.shift), (1, 2))  # B,H,W,C
        windows = x.view(b, h // k, k, w // k, k, c).transpose(2, 3).reshape(-1, k * k, c)  # B*nW,k*k,C
        bias = self.relative()  # 1,heads,k*k,k*k
        if self.shift:
            bias = combine_biases(bias, self.mask.repeat(b, 1, 1, 1))  # B*nW,heads,k*k,k*k
        windows = self.block(windows, bias)  # B*nW,k*k,C
        x = windows.view(b, h // k, w // k, k, k, c).transpose(2, 3).reshape(b, h, w, c)  # B,H,W,C
        if self.shift:
            x = torch.roll(x, (self.shift, self.shift), (1, 2))  # B,H,W,C
        return x.reshape(b, h * w, c)  # B,HW,C


class PatchMerging(nn.Module):
    """2x2 neighbours concatenated (row-major pairs as Swin: (0,0), (1,0), (0,1), (1,1)), LayerNorm, Linear 4C->2C."""

    def __init__(self, dim: int, grid: tuple[int, int], eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[0], x.shape[2]
        x = x.view(b, *self.grid, c)  # B,H,W,C
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)  # B,H/2,W/2,4C
        return self.reduction(self.norm(x.reshape(b, -1, 4 * c)))  # B,HW/4,2C


class ConvEmbedding(nn.Module):
    """CvT's convolutional embedding (CoSwin): a strided conv over the token grid, flattened, LayerNorm."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int, eps: float,
                 grid: tuple[int, int] | None = None):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding)
        self.norm = nn.LayerNorm(cout, eps=eps)
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grid is not None:
            x = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *self.grid)  # B,C,H,W
        return self.norm(self.conv(x).flatten(2).transpose(1, 2))  # B,H'W',C'


class SwinModule(nn.Module):
    """Embedding, stages of SwinLayers with merges between them, final LayerNorm and mean pooling."""

    def __init__(self, channels: int, stages: list[tuple[int, int, int, int]], depths: list[int], window: int,
                 patch: int, conv_embed: bool, mlp_ratio: float, act: str, eps: float):
        super().__init__()
        first = stages[0][0]
        if conv_embed:
            self.embed = ConvEmbedding(channels, first, 7, 4, 2, eps)
        else:
            self.embed = ConvEmbedding(channels, first, patch, patch, 0, eps)
        self.stages = nn.ModuleList()
        previous = None
        for (c, heads, h, w), depth in zip(stages, depths, strict=True):
            layers = []
            if previous is not None:
                pc, ph, pw = previous
                layers.append(ConvEmbedding(pc, c, 3, 2, 1, eps, (ph, pw)) if conv_embed
                              else PatchMerging(pc, (ph, pw), eps))
            shift = window // 2 if min(h, w) > window else 0
            layers += [SwinLayer(c, heads, int(c * mlp_ratio), act, eps, (h, w), window, shift if i % 2 else 0)
                       for i in range(depth)]
            self.stages.append(nn.Sequential(*layers))
            previous = (c, h, w)
        self.norm = nn.LayerNorm(stages[-1][0], eps=eps)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = self.embed(inputs["input"]["pixels"])  # B,HW,C
        for stage in self.stages:
            x = stage(x)  # B,H'W',C'
        x = self.norm(x)  # B,N,C_last
        return {"sequence": x, "pooled": x.mean(1)}  # B,C_last
