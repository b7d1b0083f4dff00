"""Multi-head attention (self-, cross- and co-attention), its key/value cache, and the additive masks it takes.

Contract:
- `Attention(...)(x, context=None, bias=None)` -> [B, T, out_dim]: softmax(q k^T * scale + bias) v. Its numerics and
  captured graph are frozen (golden graphs depend on them); new options are keyword-only and default to them.
- Incremental self-attention: `attn(x, bias=bias, cache=past)` -> (y, present). `past` and `present` are `KVCache`s
  of [B, H, P, d] and [B, H, P + T, d] tensors, the `past_key_values.{i}.key|value` in / `present.{i}.key|value`
  out layout of Optimum and onnxruntime-genai decoder-with-past graphs. The first step takes a zero-length past
  (`attn.empty_cache(x)`), so one graph serves every step; `bias` then covers all P + T keys
  (`cached_causal_bias`, `padding_bias` of a [B, P + T] mask).
- Cross-attention keys/values are static: `kv = attn.project_kv(context)` once, `attn.attend(x, kv, bias)` per step.
- Biases are additive (MASKED where blocked), broadcastable to [B, H, T, S]; `combine_biases` sums them.
- `aoa=True` replaces the output projection by Attention on Attention (`AttentionOnAttention`, Huang et al. 2019),
  which reads the heads' merged result and the query x.
Everything is torch.fx symbolically traceable: sizes are read from tensors, control flow only tests arguments
for None and fixed module options. Build a `KVCache` inside the traced code from explicit past tensors.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

MASKED = -1e4
"""Additive bias for blocked attention positions (as BERT/ViLBERT): exp underflows to 0 in fp32 and fp16,
and fully masked rows stay finite (uniform), unlike -inf."""


def padding_bias(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B, S] keep-mask (1 = attend) -> additive attention bias [B, 1, 1, S] in the dtype of `like`."""
    return (1.0 - mask[:, None, None, :].type_as(like)) * MASKED  # B,1,1,S


def causal_bias(like: torch.Tensor) -> torch.Tensor:
    """Additive causal bias [S, S] for a sequence `like` [B, S, D]: position i attends to j <= i."""
    idx = torch.arange(like.shape[1], device=like.device)  # S
    return (idx[None, :] > idx[:, None]).type_as(like) * MASKED  # S,S


def cached_causal_bias(like: torch.Tensor, past) -> torch.Tensor:
    """Additive causal bias [T, P + T] for T new positions `like` [B, T, D] after `past` (P, an int or a tensor
    size) cached ones: query i, at absolute position P + i, attends to keys j <= P + i. Equals `causal_bias` at P=0."""
    t = like.shape[1]
    queries = torch.arange(t, device=like.device) + past  # T
    keys = torch.arange(past + t, device=like.device)  # P+T
    return (keys[None, :] > queries[:, None]).type_as(like) * MASKED  # T,P+T


def combine_biases(*biases: torch.Tensor | None) -> torch.Tensor | None:
    """Sum of the additive biases that are not None (broadcast together, e.g. padding [B,1,1,S] + causal [T,S]
    + relative positions [1,H,T,S] -> [B,H,T,S]); None when all are None. A position blocked by k masks gets
    k * MASKED, still finite in fp16 for k <= 6."""
    given = [b for b in biases if b is not None]
    if not given:
        return None
    total = given[0]
    for b in given[1:]:
        total = total + b  # broadcast of both
    return total


class KVCache(NamedTuple):
    """Keys and values of one attention layer, heads first: each [B, H, S, d]."""

    key: torch.Tensor
    value: torch.Tensor

    @property
    def length(self):
        """S, the number of cached positions (a symbolic size under tracing/export)."""
        return self.key.shape[2]


def attention_on_attention(attended: torch.Tensor, query: torch.Tensor, weight: torch.Tensor,
                           bias: torch.Tensor) -> torch.Tensor:
    """AoA of an attention result v [..., Dv] and its query q [..., Dq]: the information i = W_i [v; q] + b_i gated
    by g = sigmoid(W_g [v; q] + b_g), with (W_i; W_g) = `weight` [2 D, Dv + Dq] (a GLU, information first)."""
    info, gate = F.linear(torch.cat([attended, query], -1), weight, bias).chunk(2, -1)  # ...,D each
    return info * torch.sigmoid(gate)  # ...,D


class AttentionOnAttention(nn.Module):
    """Attention on Attention (Huang, Wang, Chen, Wei, ICCV 2019): `attention_on_attention` with one
    Linear(att_dim + q_dim -> 2 out_dim) holding the information and gate maps."""

    def __init__(self, att_dim: int, q_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Linear(att_dim + q_dim, 2 * out_dim)

    def forward(self, attended: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        return attention_on_attention(attended, query, self.proj.weight, self.proj.bias)  # B,T,out_dim


class Attention(nn.Module):
    """softmax(q k^T * scale + bias) v over `heads` heads, with projections
    q: q_dim -> inner, k/v: kv_dim -> inner, out: inner -> out_dim.

    `bias=False` drops the projections' biases and `scale` overrides 1/sqrt(d) (T5: neither, scale 1.0).
    `v_inner` gives the values their own width (v: kv_dim -> v_inner, out: v_inner -> out_dim; Perceiver's
    qk_channels / v_channels); the scale stays that of the query/key head width. `key_bias=False` drops only the
    key projection's bias (BEiT, data2vec vision: q and v keep theirs). `head_scale=True` multiplies each head's
    output by a learned scalar (starting at 1) before the output projection (NormFormer; OFA's `c_attn`).
    `aoa=True`: no output projection; `aoa` (AttentionOnAttention over the merged heads and the query x) gives the
    [B, T, out_dim] result (AoANet)."""

    def __init__(
        self,
        q_dim: int,
        kv_dim: int,
        inner: int,
        heads: int,
        out_dim: int,
        dropout: float = 0.0,
        *,
        bias: bool = True,
        scale: float | None = None,
        v_inner: int | None = None,
        key_bias: bool = True,
        head_scale: bool = False,
        aoa: bool = False,
    ):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(q_dim, inner, bias=bias)
        self.k = nn.Linear(kv_dim, inner, bias=bias and key_bias)
        self.v = nn.Linear(kv_dim, v_inner or inner, bias=bias)
        self.out = nn.Linear(v_inner or inner, out_dim, bias=bias) if not aoa else None
        self.aoa = AttentionOnAttention(v_inner or inner, q_dim, out_dim) if aoa else None
        self.dropout = dropout
        self.head_scale = nn.Parameter(torch.ones(heads)) if head_scale else None
        # Passed to SDPA only when set, so the default graph (and its golden text) is unchanged.
        self.sdpa_options = {} if scale is None else {"scale": scale}

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ):
        """x [B, T, q_dim] attends to context [B, S, kv_dim] (x itself when None); returns [B, T, out_dim].

        With `cache` (self-attention only), the keys/values of x are appended to it and the result is
        (y, present KVCache [B, H, P + T, d]); `bias` must then cover the P + T keys."""
        if cache is not None:
            if context is not None:
                raise ValueError("a KV cache extends self-attention; for cross-attention use project_kv, then attend")
            new = self.project_kv(x)  # B,H,T,d each
            key = torch.cat([cache.key, new.key], dim=2)  # B,H,P+T,d
            value = torch.cat([cache.value, new.value], dim=2)  # B,H,P+T,d
            present = KVCache(key, value)  # B,H,P+T,d each
            return self.attend(x, present, bias), present  # B,T,out_dim; B,H,P+T,d each
        context = x if context is None else context
        b, t, s = x.shape[0], x.shape[1], context.shape[1]
        q = self.split_heads(self.q(x), b, t)  # B,H,T,d
        k = self.split_heads(self.k(context), b, s)  # B,H,S,d
        v = self.split_heads(self.v(context), b, s)  # B,H,S,d
        return self.mix(q, k, v, bias, b, t, x)  # B,T,out_dim

    def project_kv(self, context: torch.Tensor) -> KVCache:
        """Keys and values of context [B, S, kv_dim], each [B, H, S, d]: a static cross-attention cache."""
        b, s = context.shape[0], context.shape[1]
        return KVCache(self.split_heads(self.k(context), b, s), self.split_heads(self.v(context), b, s))  # B,H,S,d

    def attend(self, x: torch.Tensor, kv: KVCache, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, T, q_dim] attends to precomputed keys/values [B, H, S, d]; returns [B, T, out_dim]."""
        b, t = x.shape[0], x.shape[1]
        q = self.split_heads(self.q(x), b, t)  # B,H,T,d
        return self.mix(q, kv.key, kv.value, bias, b, t, x)  # B,T,out_dim

    def empty_cache(self, x: torch.Tensor) -> KVCache:
        """A zero-length past [B, H, 0, d] for the first decoding step of x [B, T, q_dim]."""
        empty = x.new_zeros(x.shape[0], self.heads, 0, self.q.out_features // self.heads)  # B,H,0,d
        return KVCache(empty, empty)  # B,H,0,d each

    def split_heads(self, y: torch.Tensor, b, n) -> torch.Tensor:
        """[B, N, inner] -> [B, H, N, d]."""
        return y.view(b, n, self.heads, -1).transpose(1, 2)  # B,H,N,d

    def mix(self, q, k, v, bias: torch.Tensor | None, b, t, query: torch.Tensor | None = None) -> torch.Tensor:
        """Attention of q [B,H,T,d] over k, v [B,H,S,d], heads merged and projected: [B, T, out_dim]. With `aoa`,
        `query` [B, T, q_dim] (the x the queries were projected from) is the AoA's query."""
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p, **self.sdpa_options)  # B,H,T,d
        if self.head_scale is not None:
            y = y * self.head_scale[:, None, None]  # B,H,T,d
        y = y.transpose(1, 2).reshape(b, t, -1)  # B,T,inner
        if self.aoa is not None:
            return self.aoa(y, query)  # B,T,out_dim
        return self.out(y)  # B,T,out_dim
