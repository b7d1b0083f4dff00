"""Transformer layers: the classic self-attention block and ViLBERT's co-attention block."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.layers.attention import Attention
from mmspec.layers.common import FeedForward, Residual


class Block(nn.Module):
    """Self-attention + feed-forward, each wrapped in a post- or pre-norm residual."""

    def __init__(
        self,
        dim: int,
        heads: int,
        ffn: int,
        act: str,
        norm_first: bool,
        eps: float,
        dropout: float,
        attention_dropout: float,
    ):
        super().__init__()
        self.attn = Attention(dim, dim, dim, heads, dim, attention_dropout)
        self.attn_res = Residual(dim, norm_first, eps, dropout)
        self.ffn = FeedForward(dim, ffn, act)
        self.ffn_res = Residual(dim, norm_first, eps, dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        x = self.attn_res(x, self.attn, None, bias)  # B,S,D
        return self.ffn_res(x, self.ffn)  # B,S,D


class CoAttentionBlock(nn.Module):
    """ViLBERT Co-TRM connection: each stream's queries attend to the other stream's keys/values
    (post-norm Add&Norm), then each stream has its own feed-forward. Streams a [B,S,Da], b [B,T,Db]."""

    def __init__(
        self,
        dim_a: int,
        dim_b: int,
        inner: int,
        heads: int,
        ffn_a: int,
        ffn_b: int,
        act: str,
        eps: float,
        dropout: float,
        attention_dropout: float,
    ):
        super().__init__()
        self.a_from_b = Attention(dim_a, dim_b, inner, heads, dim_a, attention_dropout)
        self.b_from_a = Attention(dim_b, dim_a, inner, heads, dim_b, attention_dropout)
        self.a_res = Residual(dim_a, False, eps, dropout)
        self.b_res = Residual(dim_b, False, eps, dropout)
        self.a_ffn = FeedForward(dim_a, ffn_a, act)
        self.a_ffn_res = Residual(dim_a, False, eps, dropout)
        self.b_ffn = FeedForward(dim_b, ffn_b, act)
        self.b_ffn_res = Residual(dim_b, False, eps, dropout)

    def forward(self, a, a_bias, b, b_bias):
        a2 = self.a_res(a, self.a_from_b, b, b_bias)  # B,S,Da
        b2 = self.b_res(b, self.b_from_a, a, a_bias)  # B,T,Db
        return self.a_ffn_res(a2, self.a_ffn), self.b_ffn_res(b2, self.b_ffn)
