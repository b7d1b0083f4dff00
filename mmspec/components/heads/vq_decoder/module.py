"""The module behind the `vq_decoder` head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmspec.blocks.conv import ResnetStage


class VQDecoderModule(nn.Module):
    """ids [B, h*w] -> codebook vectors on the grid [B, D, h, w] -> conv in -> ResNet stages (2x upsample between
    them) -> GroupNorm, SiLU, conv out -> `pixels` [B, C, h*2^(S-1), w*2^(S-1)]."""

    def __init__(self, field: str, codebook: int, dim: int, grid: tuple[int, int], widths: list[int], blocks: int,
                 channels: int, groups: int, eps: float):
        super().__init__()
        self.field, self.grid = field, grid
        self.codebook = nn.Embedding(codebook, dim)
        self.conv_in = nn.Conv2d(dim, widths[0], 3, padding=1)
        last = len(widths) - 1
        self.stages = nn.ModuleList(
            ResnetStage(widths[max(i - 1, 0)], width, blocks, resample="up_conv" if i < last else None,
                        groups=groups, eps=eps)
            for i, width in enumerate(widths)
        )
        self.norm_out = nn.GroupNorm(groups, widths[-1], eps=eps)
        self.conv_out = nn.Conv2d(widths[-1], channels, 3, padding=1)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        ids = inputs["input"][self.field]  # B,h*w
        z = self.codebook(ids).transpose(1, 2).unflatten(2, self.grid)  # B,D,h,w
        x = self.conv_in(z)  # B,W0,h,w
        for stage in self.stages:
            x = stage(x)  # B,Wi,H,W  (H, W doubled after every stage but the last)
        return {"pixels": self.conv_out(F.silu(self.norm_out(x)))}  # B,C,H,W
