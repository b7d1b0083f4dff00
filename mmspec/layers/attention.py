"""Multi-head attention with separate query and key/value widths (self-, cross- and co-attention)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
