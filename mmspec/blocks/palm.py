"""PaLM's parallel transformer layer (Chowdhery et al. 2022): x + Attn(LN(x)) + FFN(LN(x)) with one shared
LayerNorm, multi-query attention with rotary positions, a SwiGLU (or plain) feed-forward, optionally no biases.

Contract: `ParallelBlock(...)(x, bias)` -> x [B, S, D] with `bias` additive over [B, H, S, S]; `step(x, bias,
past)` continues from cached keys/values `KVCache` [B, G, P, d] (G = key/value heads) -> (x [B, T, D], present
[B, G, P + T, d]). Rotary positions count from the cached length. torch.fx symbolically traceable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmspec.blocks.attention import KVCache
from mmspec.blocks.mlp import FeedForward, GatedFeedForward
from mmspec.blocks.positions import RotaryEmbedding, apply_rotary


class GroupedAttention(nn.Module):
    """Self-attention with `heads` query heads of width `head_dim` sharing `kv_heads` key/value heads (1: multi-
    query attention), rotary positions on queries and keys, projections with or without biases."""

    def __init__(self, dim: int, heads: int, kv_heads: int, head_dim: int, dropout: float, bias: bool):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.q = nn.Linear(dim, heads * head_dim, bias=bias)
        self.k = nn.Linear(dim, kv_heads * head_dim, bias=bias)
        self.v = nn.Linear(dim, kv_heads * head_dim, bias=bias)
        self.out = nn.Linear(heads * head_dim, dim, bias=bias)
        self.rotary = RotaryEmbedding(head_dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None, past: KVCache | None = None):
        """x [B, T, D] after `past` (None: no cache, returns y) -> y [B, T, D], or (y, present) with `past`."""
        b, t = x.shape[0], x.shape[1]
        offset = 0 if past is None else past.length
        cos, sin = self.rotary(torch.arange(t, device=x.device) + offset)  # 1,T,d each
        q = apply_rotary(self.q(x).view(b, t, self.heads, -1).transpose(1, 2), cos, sin)  # B,H,T,d
        k = apply_rotary(self.k(x).view(b, t, self.kv_heads, -1).transpose(1, 2), cos, sin)  # B,G,T,d
        v = self.v(x).view(b, t, self.kv_heads, -1).transpose(1, 2)  # B,G,T,d
        if past is not None:
            k = torch.cat([past.key, k], dim=2)  # B,G,P+T,d
            v = torch.cat([past.value, v], dim=2)  # B,G,P+T,d
        group = self.heads // self.kv_heads
        keys = k.repeat_interleave(group, dim=1)  # B,H,S,d
        values = v.repeat_interleave(group, dim=1)  # B,H,S,d
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=bias, dropout_p=p)  # B,H,T,d
        y = self.out(y.transpose(1, 2).reshape(b, t, -1))  # B,T,D
        return y if past is None else (y, KVCache(k, v))


class ParallelBlock(nn.Module):
    """x + drop(Attn(LN(x))) + drop(FFN(LN(x))): the attention and feed-forward read the same normalised input
    (one LayerNorm, without a bias when `bias` is false). `gated`: SwiGLU-style fc2(act(gate(x)) * fc1(x))."""

    def __init__(self, dim: int, heads: int, kv_heads: int, head_dim: int, ffn: int, act: str, eps: float,
                 dropout: float, attention_dropout: float, gated: bool, bias: bool):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps, bias=bias)
        self.attn = GroupedAttention(dim, heads, kv_heads, head_dim, attention_dropout, bias)
        self.ffn = GatedFeedForward(dim, ffn, act, bias=bias) if gated else FeedForward(dim, ffn, act, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.cross, self.gated, self.routed = False, False, False

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None, context=None, context_bias=None) -> torch.Tensor:
        h = self.norm(x)  # B,S,D
        return x + self.dropout(self.attn(h, bias)) + self.dropout(self.ffn(h))  # B,S,D

    def step(self, x: torch.Tensor, bias: torch.Tensor | None, past: KVCache, cross=None, cross_bias=None):
        """T new positions x [B, T, D] after the cached ones -> (x [B, T, D], present [B, G, P + T, d])."""
        h = self.norm(x)  # B,T,D
        y, present = self.attn(h, bias, past)  # B,T,D; B,G,P+T,d
        return x + self.dropout(y) + self.dropout(self.ffn(h)), present  # B,T,D

    def self_parts(self) -> list[nn.Module]:
        return [self.norm, self.attn, self.ffn]
