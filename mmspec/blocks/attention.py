"""Multi-head attention (self-, cross- and co-attention) and the additive masks it takes."""

from __future__ import annotations

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


class Attention(nn.Module):
    """softmax(q k^T / sqrt(d) + bias) v over `heads` heads, with projections
    q: q_dim -> inner, k/v: kv_dim -> inner, out: inner -> out_dim."""

    def __init__(self, q_dim: int, kv_dim: int, inner: int, heads: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(q_dim, inner)
        self.k = nn.Linear(kv_dim, inner)
        self.v = nn.Linear(kv_dim, inner)
        self.out = nn.Linear(inner, out_dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, bias: torch.Tensor | None = None):
        context = x if context is None else context
        b, t, s = x.shape[0], x.shape[1], context.shape[1]
        q = self.q(x).view(b, t, self.heads, -1).transpose(1, 2)  # B,H,T,d
        k = self.k(context).view(b, s, self.heads, -1).transpose(1, 2)  # B,H,S,d
        v = self.v(context).view(b, s, self.heads, -1).transpose(1, 2)  # B,H,S,d
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)  # B,H,T,d
        y = y.transpose(1, 2).reshape(b, t, -1)  # B,T,inner
        return self.out(y)  # B,T,out_dim
