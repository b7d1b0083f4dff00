"""Reference towers of specs/vatt.yaml (FM-04), rebuilt with plain torch.nn from the official VATT configurations
(google-research vatt: ViTx3D video and WaT waveform Transformers; TF 2, not installable), so that
tests/references.py can compare the spec's parameter count and tests/coverage/test_vatt.py its outputs."""

from __future__ import annotations

import torch
from torch import nn


class Layer(nn.Module):
    """The official pre-norm encoder layer: LN -> MHA (q, k, v, o with biases) -> residual; LN -> GELU MLP."""

    def __init__(self, d: int, heads: int, ff: int, eps: float = 1e-6):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.wi, self.wo = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        q, k, v = (f(h).unflatten(-1, (self.heads, -1)).transpose(1, 2) for f in (self.q, self.k, self.v))
        a = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1) @ v
        x = x + self.o(a.transpose(1, 2).flatten(2))
        return x + self.wo(nn.functional.gelu(self.wi(self.norm2(x))))


class Tower(nn.Module):
    """ViTx3D (patch [t, h, w] over [B, C, T, H, W]) or WaT (patch [l] over [B, C, L]): voxel/segment projection,
    per-axis position buckets summed and layer-normed, the aggregation token, layers, final LayerNorm."""

    def __init__(self, channels: int, patch: list[int], buckets: list[int], d: int, layers: int, heads: int,
                 ff: int, eps: float = 1e-6):
        super().__init__()
        conv = nn.Conv3d if len(patch) == 3 else nn.Conv1d
        self.voxel_to_patch = conv(channels, d, tuple(patch), stride=tuple(patch))
        self.buckets = nn.ModuleList(nn.Embedding(n, d) for n in buckets)
        self.pos_norm = nn.LayerNorm(d, eps=eps)
        self.agg = nn.Parameter(torch.zeros(d))
        self.layers = nn.ModuleList(Layer(d, heads, ff, eps) for _ in range(layers))
        self.final_norm = nn.LayerNorm(d, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Eval mode (no DropToken); returns all hidden states [B, 1 + N, d] after the final LayerNorm."""
        x = self.voxel_to_patch(x).flatten(2).transpose(1, 2)
        tables = [e.weight for e in self.buckets]
        if len(tables) == 3:
            pos = tables[0][:, None, None] + tables[1][None, :, None] + tables[2][None, None, :]
        else:
            pos = tables[0]
        x = x + self.pos_norm(pos.reshape(-1, x.shape[-1]))
        x = torch.cat([self.agg.expand(x.shape[0], 1, -1), x], dim=1)
        for layer in self.layers:
            x = layer(x)
        return self.final_norm(x)


_SIZES = {"base": (768, 12, 12, 3072), "medium": (1024, 12, 16, 4096), "large": (1024, 24, 16, 4096)}


def video_tower(size: str = "base") -> Tower:
    """ViTx3D at 32 x 224 x 224: 4 x 16 x 16 tubes, 8 / 14 / 14 position buckets."""
    return Tower(3, [4, 16, 16], [8, 14, 14], *_SIZES[size])


def audio_tower(size: str = "base") -> Tower:
    """WaT at 3.2 s x 48 kHz: 128-sample segments, 1,200 position buckets."""
    return Tower(1, [128], [1200], *_SIZES[size])


def vatt_va(video: str = "base", space: int = 512) -> nn.Module:
    """Both towers, a linear projection of each aggregation token into the video-audio space, the NCE scale."""
    return nn.ModuleList([video_tower(video), audio_tower(), nn.Linear(_SIZES[video][0], space),
                          nn.Linear(768, space), nn.ParameterList([nn.Parameter(torch.zeros(()))])])
