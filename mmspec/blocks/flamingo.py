"""Flamingo's pieces (Alayrac et al. 2022; IDEFICS, its open reproduction): the Perceiver resampler, the gated
cross-attention dense block, the pre-RMSNorm rotary decoder layer of the frozen LM it interleaves with, and the
image-causal mask.

Contract:
- `PerceiverResampler(...)(x [B*M, S, D])` -> [B*M, latents, D]: learned latents attend to [LN(x); LN(latents)].
- `GatedCrossDense(...)(x [B, T, D], media kv, bias, gate)` -> [B, T, D]: x + tanh(a) * XAttn, then
  x + tanh(b) * FFN, with a and b learned scalars that start at 0 (the block starts as the identity).
- `RMSDecoderLayer(...)(x, bias)` -> [B, T, D]; `.step(x, bias, past)` -> (x, present KVCache [B, H, P + T, d]).
- `image_causal(ids, image_token, items, per_item, before)` -> (bias [B, 1, T, M*N], gate [B, T, 1]).
Everything is torch.fx symbolically traceable.
"""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.attention import MASKED, Attention
from mmspec.blocks.mlp import FeedForward, GatedFeedForward
from mmspec.blocks.norms import RMSNorm
from mmspec.blocks.palm import GroupedAttention


def image_causal(ids: torch.Tensor, image_token: int, items, per_item, before: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Flamingo's image-causal mask: text token t sees only the visual tokens of the last `<image>` token at or
    before it; the k-th `<image>` token stands for media item k of M = `items` items of N = `per_item` tokens
    (the last item for any `<image>` beyond M). `before` [B, 1]: `<image>` tokens before `ids` [B, T] (a decoding
    step's state; none when None). Returns the additive bias [B, 1, T, M*N] and the gate [B, T, 1] that zeroes
    tokens with no `<image>` before them."""
    seen = (ids == image_token).to(torch.float32).cumsum(1)  # B,T
    if before is not None:
        seen = seen + before  # B,T
    index = torch.clamp(seen, max=items)  # B,T: 1-based item each token reads, 0 for none
    owner = torch.arange(items * per_item, device=ids.device) // per_item + 1  # M*N
    allowed = index[:, :, None] == owner[None, None, :].to(torch.float32)  # B,T,M*N
    bias = (~allowed)[:, None].float() * MASKED  # B,1,T,M*N
    gate = (index >= 1)[:, :, None].float()  # B,T,1
    return bias, gate


class ResamplerLayer(nn.Module):
    """latents + Attn(q = LN(latents), kv = [LN(x); LN(latents)]), then latents + FFN(LN(latents)); bias-free
    projections of `heads` x `head_dim`."""

    def __init__(self, dim: int, heads: int, head_dim: int, ffn: int, act: str, eps: float):
        super().__init__()
        self.context_norm = nn.LayerNorm(dim, eps=eps)
        self.latents_norm = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, dim, heads * head_dim, heads, dim, bias=False)
        self.ffn_norm = nn.LayerNorm(dim, eps=eps)
        self.ffn = FeedForward(dim, ffn, act, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        q = self.latents_norm(latents)  # B,N,D
        kv = torch.cat([self.context_norm(x), q], dim=1)  # B,S+N,D
        latents = latents + self.attn(q, kv)  # B,N,D
        return latents + self.ffn(self.ffn_norm(latents))  # B,N,D


class PerceiverResampler(nn.Module):
    """`latents` learned queries through `depth` ResamplerLayers and a final LayerNorm. `frames` > 1: the input
    is `frames` consecutive items per media (a video), each with its learned time embedding, flattened together.
    `source` (the input width, when it differs from `dim`): a bias-free Linear maps the input to `dim` first."""

    def __init__(self, dim: int, depth: int, heads: int, head_dim: int, latents: int, ffn: int, act: str,
                 eps: float, frames: int, time_embedding: bool, source: int | None = None):
        super().__init__()
        self.proj = nn.Linear(source, dim, bias=False) if source and source != dim else None
        self.latents = nn.Parameter(torch.randn(latents, dim))
        self.time = nn.Parameter(torch.zeros(frames, dim)) if time_embedding else None
        self.layers = nn.ModuleList(ResamplerLayer(dim, heads, head_dim, ffn, act, eps) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.frames = frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B*M*F, S, D_in] (F = frames) -> [B*M, latents, D]."""
        if self.proj is not None:
            x = self.proj(x)  # B*M*F,S,D
        if self.time is not None:
            x = x.view(-1, self.frames, x.shape[1], x.shape[2]) + self.time[None, :, None]  # B*M,F,S,D
        x = x.reshape(-1, self.frames * x.shape[-2], x.shape[-1])  # B*M,F*S,D
        latents = self.latents[None].repeat(x.shape[0], 1, 1)  # B*M,N,D
        for layer in self.layers:
            latents = layer(x, latents)  # B*M,N,D
        return self.norm(latents)  # B*M,N,D


def _ffn(dim: int, ffn: int, act: str, gated: bool) -> nn.Module:
    """SwiGLU-style gated MLP (Llama, IDEFICS) or a plain bias-free one (Chinchilla; Flamingo's new layers)."""
    return GatedFeedForward(dim, ffn, act) if gated else FeedForward(dim, ffn, act, bias=False)


class RMSDecoderLayer(nn.Module):
    """Llama's layer: x + Attn(RMS(x)) with rotary positions and bias-free projections, then
    x + SwiGLU(RMS(x)) (`gated`; else a plain MLP)."""

    def __init__(self, dim: int, heads: int, ffn: int, act: str, eps: float, dropout: float, gated: bool = True):
        super().__init__()
        self.attn_norm = RMSNorm(dim, eps)
        self.attn = GroupedAttention(dim, heads, heads, dim // heads, 0.0, False)
        self.ffn_norm = RMSNorm(dim, eps)
        self.ffn = _ffn(dim, ffn, act, gated)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.attn_norm(x), bias))  # B,T,D
        return x + self.dropout(self.ffn(self.ffn_norm(x)))  # B,T,D

    def step(self, x: torch.Tensor, bias: torch.Tensor, past):
        """T new positions after the cached ones -> (x [B, T, D], present [B, H, P + T, d])."""
        y, present = self.attn(self.attn_norm(x), bias, past)  # B,T,D; B,H,P+T,d
        x = x + self.dropout(y)  # B,T,D
        return x + self.dropout(self.ffn(self.ffn_norm(x))), present  # B,T,D


class GatedCrossDense(nn.Module):
    """Flamingo's GATED XATTN-DENSE: x + tanh(alpha) * gate * XAttn(RMS(x), media), then
    x + tanh(beta) * SwiGLU(RMS(x)) (`gated`; else a plain MLP); alpha and beta start at 0. `gate` [B, T, 1]
    zeroes the tokens that have no media before them."""

    def __init__(self, dim: int, media_dim: int, heads: int, ffn: int, act: str, eps: float, dropout: float,
                 gated: bool = True):
        super().__init__()
        self.attn_norm = RMSNorm(dim, eps)
        self.attn = Attention(dim, media_dim, dim, heads, dim, bias=False)
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.ffn_norm = RMSNorm(dim, eps)
        self.ffn = _ffn(dim, ffn, act, gated)
        self.ffn_gate = nn.Parameter(torch.zeros(1))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, media: torch.Tensor, bias: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        y = self.dropout(self.attn(self.attn_norm(x), media, bias)) * gate  # B,T,D
        x = x + torch.tanh(self.attn_gate) * y  # B,T,D
        return x + torch.tanh(self.ffn_gate) * self.dropout(self.ffn(self.ffn_norm(x)))  # B,T,D
