"""Transformer layers: residual sublayers, the self-attention block and ViLBERT's co-attention block."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.attention import Attention
from mmspec.blocks.mlp import FeedForward


class Residual(nn.Module):
    """Residual wrapper: post-norm `LN(x + drop(f(x)))` (BERT) or pre-norm `x + drop(f(LN(x)))` (CLIP, ViT)."""

    def __init__(self, dim: int, norm_first: bool, eps: float, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: torch.Tensor, f, *args) -> torch.Tensor:
        if self.norm_first:
            return x + self.dropout(f(self.norm(x), *args))
        return self.norm(x + self.dropout(f(x, *args)))


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


def make_blocks(cfg, count: int) -> nn.ModuleList:
    """`count` self-attention blocks with the widths and norms of a StackConfig."""
    return nn.ModuleList(
        Block(
            cfg.width,
            cfg.heads,
            cfg.ffn,
            cfg.activation,
            cfg.norm == "pre",
            cfg.eps,
            cfg.dropout,
            cfg.attention_dropout,
        )
        for _ in range(count)
    )
