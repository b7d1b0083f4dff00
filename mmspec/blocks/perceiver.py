"""Perceiver's attention layer (Jaegle et al. 2021/2022): pre-norm attention with its own query/key and value widths,
a LayerNorm on the keys/values of a cross-attention, an optional query residual, then a pre-norm MLP.

Contract: `PerceiverLayer(...)(x [B, N, q_dim], context [B, M, kv_dim] or None, bias)` -> [B, N, q_dim]; with no
context it is a self-attention layer over x. torch.fx symbolically traceable.
"""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.attention import Attention
from mmspec.blocks.mlp import FeedForward
from mmspec.blocks.transformer import Residual


class PerceiverLayer(nn.Module):
    """y = [x +] Attention(LN(x), LN_kv(context)); out = y + MLP(LN(y)), MLP width = widening * q_dim.

    Queries and keys are projected to `qk` channels, values to `v` channels (both split over `heads`), and the
    attention output back to q_dim. `cross` adds the context's LayerNorm; `query_residual=False` drops the residual
    around the attention (Perceiver IO decoders, whose queries are positions rather than outputs)."""

    def __init__(
        self,
        q_dim: int,
        kv_dim: int,
        qk: int,
        v: int,
        heads: int,
        widening: int,
        act: str,
        eps: float,
        attention_dropout: float,
        cross: bool,
        query_residual: bool = True,
    ):
        super().__init__()
        self.norm = nn.LayerNorm(q_dim, eps=eps)
        self.kv_norm = nn.LayerNorm(kv_dim, eps=eps) if cross else None
        self.attn = Attention(q_dim, kv_dim, qk, heads, q_dim, attention_dropout, v_inner=v)
        self.ffn = FeedForward(q_dim, widening * q_dim, act)
        self.ffn_res = Residual(q_dim, True, eps, 0.0)
        self.query_residual = query_residual

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        kv = self.kv_norm(context) if self.kv_norm is not None else None  # B,M,kv_dim
        y = self.attn(self.norm(x), kv, bias)  # B,N,q_dim
        if self.query_residual:
            y = x + y  # B,N,q_dim
        return self.ffn_res(y, self.ffn)  # B,N,q_dim
