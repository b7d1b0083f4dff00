"""Position and timestep encodings: sinusoidal tables, diffusion timestep embeddings, rotary embeddings (RoPE)
and T5's bucketed relative position bias.

Contract: positions are integer tensors (absolute positions, so cached decoding passes past..past+T-1, see
`position_ids`); fixed tables are non-persistent buffers (never in a state dict); every function and module is
torch.fx symbolically traceable and computes in fp32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def position_ids(like: torch.Tensor, past=0) -> torch.Tensor:
    """Absolute positions [T] of the T new positions of `like` [B, T, ...] after `past` cached ones."""
    return torch.arange(like.shape[1], device=like.device) + past  # T


def sinusoidal_table(positions: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """The Transformer's fixed table [positions, dim]: PE[p, 2i] = sin(p / base^(2i/dim)), PE[p, 2i+1] = cos(...)."""
    pos = torch.arange(positions, dtype=torch.float32)[:, None]  # P,1
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(base) / dim))  # ceil(D/2)
    table = torch.zeros(positions, dim)  # P,D
    table[:, 0::2] = torch.sin(pos * freq)  # P,ceil(D/2)
    table[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]  # P,floor(D/2)
    return table


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal position embeddings: positions [...] -> [..., dim] (rows of `sinusoidal_table`)."""

    def __init__(self, positions: int, dim: int, base: float = 10000.0):
        super().__init__()
        self.register_buffer("table", sinusoidal_table(positions, dim, base), persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.table[positions]  # ...,D


def timestep_embedding(
    timesteps: torch.Tensor,
    dim: int,
    flip_sin_to_cos: bool = False,
    downscale_freq_shift: float = 1.0,
    scale: float = 1.0,
    max_period: float = 10000.0,
) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of diffusion timesteps [B] (diffusers `get_timestep_embedding`):
    [sin(t f_i), cos(t f_i)] with f_i = max_period^(-i / (dim/2 - shift)), i < dim/2; cos first with
    `flip_sin_to_cos`; an odd dim gets a zero last column. DDPM: shift 1, sin first; GLIDE/ADM: shift 0, cos first."""
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=timesteps.device) * -math.log(max_period)  # D/2
    freqs = torch.exp(exponent / (half - downscale_freq_shift))  # D/2
    args = scale * (timesteps[:, None].float() * freqs[None, :])  # B,D/2
    parts = [torch.cos(args), torch.sin(args)] if flip_sin_to_cos else [torch.sin(args), torch.cos(args)]
    emb = torch.cat(parts, dim=-1)  # B,2*(D/2)
    if dim % 2:
        emb = F.pad(emb, (0, 1))  # B,D
    return emb


class TimestepEmbedding(nn.Module):
    """timesteps [B] -> sinusoid [B, channels] -> Linear -> SiLU -> Linear -> [B, dim]
    (diffusers `Timesteps` + `TimestepEmbedding`, parameter names linear_1/linear_2; U-Nets default to
    cos first, shift 0)."""

    def __init__(self, channels: int, dim: int, flip_sin_to_cos: bool = True, downscale_freq_shift: float = 0.0):
        super().__init__()
        self.channels = channels
        self.flip_sin_to_cos = flip_sin_to_cos
        self.downscale_freq_shift = downscale_freq_shift
        self.linear_1 = nn.Linear(channels, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        emb = timestep_embedding(timesteps, self.channels, self.flip_sin_to_cos, self.downscale_freq_shift)  # B,C
        return self.linear_2(self.act(self.linear_1(emb)))  # B,D


class RotaryEmbedding(nn.Module):
    """RoPE tables for head width `dim` (Su et al.; the half-split layout of GPT-NeoX and Llama):
    positions [T] or [B, T] -> (cos, sin), each [1, T, dim] or [B, 1, T, dim], broadcastable to [B, H, T, dim]."""

    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))  # d/2
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions[..., None, :, None].float() * self.inv_freq  # (B,)1,T,d/2
        emb = torch.cat([freqs, freqs], dim=-1)  # (B,)1,T,d
        return emb.cos(), emb.sin()  # (B,)1,T,d each


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[x1, x2] -> [-x2, x1] over the halves of the last axis."""
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)  # ...,d


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys x [B, H, T, d] by the tables of `RotaryEmbedding` (apply to q and k, not v)."""
    return x * cos + rotate_half(x) * sin  # B,H,T,d


def relative_position_bucket(
    relative: torch.Tensor, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128
) -> torch.Tensor:
    """T5's bucket [same shape, int64] of relative positions (key - query): exact buckets for small distances,
    logarithmic ones up to `max_distance`, the last bucket beyond. Bidirectional: half the buckets for keys after
    the query; otherwise (causal) keys after the query share bucket 0."""
    buckets = torch.zeros_like(relative)  # ...
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative > 0).to(torch.long) * num_buckets  # ...
        distance = torch.abs(relative)  # ...
    else:
        distance = -torch.min(relative, torch.zeros_like(relative))  # ...
    max_exact = num_buckets // 2
    is_small = distance < max_exact  # ...
    # clamp_min keeps log() finite where the small branch is taken anyway (a cast of -inf is undefined in ONNX)
    large = max_exact + (
        torch.log(distance.float().clamp_min(max_exact) / max_exact)
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).to(torch.long)  # ...
    large = torch.clamp_max(large, num_buckets - 1)  # ...
    return buckets + torch.where(is_small, distance, large)  # ...


class RelativePositionBias(nn.Module):
    """T5 relative position bias: a learned scalar per (bucket, head), parameter `relative_attention_bias`.
    forward(t, s, past=0) -> additive bias [1, H, T, S] for queries at positions past..past+T-1 and keys 0..S-1."""

    def __init__(self, heads: int, num_buckets: int = 32, max_distance: int = 128, bidirectional: bool = True):
        super().__init__()
        self.relative_attention_bias = nn.Embedding(num_buckets, heads)
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional

    def forward(self, t, s, past=0) -> torch.Tensor:
        device = self.relative_attention_bias.weight.device
        queries = torch.arange(t, dtype=torch.long, device=device)[:, None] + past  # T,1
        keys = torch.arange(s, dtype=torch.long, device=device)[None, :]  # 1,S
        relative = keys - queries  # T,S
        buckets = relative_position_bucket(relative, self.bidirectional, self.num_buckets, self.max_distance)  # T,S
        values = self.relative_attention_bias(buckets)  # T,S,H
        return values.permute(2, 0, 1).unsqueeze(0)  # 1,H,T,S


def grid_relative_index(height: int, width: int) -> torch.Tensor:
    """BEiT's relative position index [1 + N, 1 + N] over a class token and an N = height x width patch grid.

    Patch pairs index the (2h-1)(2w-1) 2-D offsets (row offset major); the last three rows of the table are
    class->patch, patch->class and class->class."""
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")  # h,w each
    coords = torch.stack([rows.flatten(), cols.flatten()])  # 2,N
    offset = coords[:, :, None] - coords[:, None, :]  # 2,N,N
    patch = (offset[0] + height - 1) * (2 * width - 1) + offset[1] + width - 1  # N,N
    distances = (2 * height - 1) * (2 * width - 1)
    index = torch.zeros(height * width + 1, height * width + 1, dtype=torch.long)  # 1+N,1+N
    index[1:, 1:] = patch
    index[0, :] = distances
    index[:, 0] = distances + 1
    index[0, 0] = distances + 2
    return index


class GridRelativePositionBias(nn.Module):
    """BEiT / data2vec vision: a learned table [(2h-1)(2w-1) + 3, heads] of per-head biases indexed by the 2-D
    offset between patches (plus the class-token entries); forward() -> additive attention bias [1, H, S, S],
    S = 1 + h*w. `class_token=False` (Swin's windows): no class entries, table [(2h-1)(2w-1), heads], S = h*w.
    The index is a non-persistent buffer."""

    def __init__(self, height: int, width: int, heads: int, *, class_token: bool = True):
        super().__init__()
        extra = 3 if class_token else 0
        self.table = nn.Parameter(torch.zeros((2 * height - 1) * (2 * width - 1) + extra, heads))
        index = grid_relative_index(height, width)  # 1+N,1+N
        self.register_buffer("index", index if class_token else index[1:, 1:].contiguous(), persistent=False)

    def forward(self) -> torch.Tensor:
        s = self.index.shape[0]
        bias = self.table[self.index.view(-1)].view(s, s, -1)  # S,S,H
        return bias.permute(2, 0, 1).unsqueeze(0)  # 1,H,S,S
