"""The modules behind `memory_encoder` and `meshed_decoder`, built from the shared attention, feed-forward and
residual blocks."""

from __future__ import annotations

import math

import torch
from torch import nn

from mmspec.blocks.attention import Attention, KVCache, cached_causal_bias, padding_bias
from mmspec.blocks.mlp import FeedForward
from mmspec.blocks.positions import position_ids, sinusoidal_table
from mmspec.blocks.transformer import Residual


class MemoryAttention(nn.Module):
    """Multi-head self-attention whose keys and values are extended by `memory` learned slots (scaled by sqrt(d)
    and sqrt(memory) as the official ScaledDotProductAttentionMemory)."""

    def __init__(self, dim: int, heads: int, memory: int):
        super().__init__()
        self.attn = Attention(dim, dim, dim, heads, dim)
        self.memory = memory
        if memory:
            d = dim // heads
            self.memory_keys = nn.Parameter(torch.randn(1, memory, dim) / d)
            self.memory_values = nn.Parameter(torch.randn(1, memory, dim) / memory)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        b, s, a = x.shape[0], x.shape[1], self.attn
        q, k, v = a.split_heads(a.q(x), b, s), a.split_heads(a.k(x), b, s), a.split_heads(a.v(x), b, s)  # B,H,S,d
        if self.memory:
            d = q.shape[-1]
            mk = (self.memory_keys * math.sqrt(d)).expand(b, -1, -1)  # B,M,D
            mv = (self.memory_values * math.sqrt(self.memory)).expand(b, -1, -1)  # B,M,D
            k = torch.cat([k, a.split_heads(mk, b, self.memory)], dim=2)  # B,H,S+M,d
            v = torch.cat([v, a.split_heads(mv, b, self.memory)], dim=2)  # B,H,S+M,d
            if bias is not None:
                bias = torch.cat([bias, bias.new_zeros(b, 1, 1, self.memory)], dim=-1)  # B,1,1,S+M
        return a.mix(q, k, v, bias, b, s)  # B,S,D


class MemoryEncoderModule(nn.Module):
    """Input projection (Linear, ReLU, dropout, LayerNorm) and post-norm memory-augmented layers; every layer's
    output is kept."""

    def __init__(self, features: int, dim: int, layers: int, heads: int, ffn: int, memory: int, dropout: float,
                 eps: float):
        super().__init__()
        self.project = nn.Linear(features, dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.attn = nn.ModuleList(MemoryAttention(dim, heads, memory) for _ in range(layers))
        self.attn_res = nn.ModuleList(Residual(dim, False, eps, dropout) for _ in range(layers))
        self.ffn = nn.ModuleList(FeedForward(dim, ffn, "relu", dropout=dropout) for _ in range(layers))
        self.ffn_res = nn.ModuleList(Residual(dim, False, eps, dropout) for _ in range(layers))

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        b = inputs["input"]
        x = self.norm(self.dropout(torch.relu(self.project(b["features"]))))  # B,R,D
        bias = padding_bias(b["mask"], x) if "mask" in b else None  # B,1,1,R
        levels = []
        for attn, attn_res, ffn, ffn_res in zip(self.attn, self.attn_res, self.ffn, self.ffn_res, strict=True):
            x = ffn_res(attn_res(x, attn, bias), ffn)  # B,R,D
            levels.append(x)
        out = {"levels": torch.stack(levels, dim=1)}  # B,L,R,D
        if "mask" in b:
            out["mask"] = b["mask"]
        return out


class MeshedLayer(nn.Module):
    """Causal self-attention (Add & Norm); one cross-attention (Add & Norm) over each encoder level, gated by
    sigmoid(Linear([Y; C_i])) and summed / sqrt(levels) (`gates` = levels), or over level `level` alone, ungated
    (gates = 0); feed-forward (Add & Norm)."""

    def __init__(self, dim: int, heads: int, ffn: int, gates: int, level: int, dropout: float, eps: float):
        super().__init__()
        self.attn = Attention(dim, dim, dim, heads, dim)
        self.attn_res = Residual(dim, False, eps, dropout)
        self.cross_attn = Attention(dim, dim, dim, heads, dim)
        self.cross_res = Residual(dim, False, eps, dropout)
        self.gates = nn.ModuleList(nn.Linear(2 * dim, dim) for _ in range(gates))
        self.ffn = FeedForward(dim, ffn, "relu", dropout=dropout)
        self.ffn_res = Residual(dim, False, eps, dropout)
        self.level = level

    def forward(self, y: torch.Tensor, levels: torch.Tensor, context_bias: torch.Tensor | None) -> torch.Tensor:
        if not self.gates:
            mixed = self.cross_res(y, self.cross_attn, levels[:, self.level], context_bias)  # B,T,D
        else:
            mixed = 0
            for i, gate in enumerate(self.gates):
                c = self.cross_res(y, self.cross_attn, levels[:, i], context_bias)  # B,T,D
                mixed = mixed + torch.sigmoid(gate(torch.cat([y, c], dim=-1))) * c  # B,T,D
            mixed = mixed / math.sqrt(len(self.gates))
        return self.ffn_res(mixed, self.ffn)  # B,T,D


class MeshedDecoderModule(nn.Module):
    """Word table + frozen sinusoids (row p + 1 for position p), meshed layers, bias-free output Linear."""

    def __init__(self, vocab: int, dim: int, layers: int, heads: int, ffn: int, positions: int, gates: int,
                 dropout: float, eps: float):
        super().__init__()
        self.word = nn.Embedding(vocab, dim)
        self.position = nn.Embedding.from_pretrained(sinusoidal_table(positions + 1, dim), freeze=True)
        self.layers = nn.ModuleList(MeshedLayer(dim, heads, ffn, gates, i, dropout, eps) for i in range(layers))
        self.out = nn.Linear(dim, vocab, bias=False)

    def embed(self, ids: torch.Tensor, offset=0) -> torch.Tensor:
        return self.word(ids) + self.position(position_ids(ids, offset) + 1)  # B,T,D

    @staticmethod
    def context_bias(encoder: dict[str, torch.Tensor], like: torch.Tensor) -> torch.Tensor | None:
        return padding_bias(encoder["mask"], like) if "mask" in encoder else None  # B,1,1,R

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        y = self.embed(inputs["input"]["ids"])  # B,T,D
        levels, context_bias = inputs["encoder"]["levels"], self.context_bias(inputs["encoder"], y)  # B,L,R,D
        bias = cached_causal_bias(y, 0)  # T,T
        for layer in self.layers:
            y = layer(layer.attn_res(y, layer.attn, None, bias), levels, context_bias)  # B,T,D
        return {"logits": self.out(y)}  # B,T,V

    def step(self, inputs: dict[str, dict[str, torch.Tensor]], past: list[KVCache], cross=None
             ) -> tuple[dict[str, torch.Tensor], list[KVCache]]:
        """New positions after the cached ones: self-attention extends each layer's past keys/values [B, H, P, d];
        the encoder levels come in whole. Returns (the bundle, present keys/values [B, H, P + T, d] per layer)."""
        offset = past[0].length
        y = self.embed(inputs["input"]["ids"], offset)  # B,T,D
        levels, context_bias = inputs["encoder"]["levels"], self.context_bias(inputs["encoder"], y)  # B,L,R,D
        bias = cached_causal_bias(y, offset)  # T,P+T
        presents = []
        for layer, cache in zip(self.layers, past, strict=True):
            def self_attention(h: torch.Tensor, layer=layer, cache=cache) -> torch.Tensor:
                out, present = layer.attn(h, bias=bias, cache=cache)  # B,T,D; B,H,P+T,d
                presents.append(present)
                return out

            y = layer(layer.attn_res(y, self_attention), levels, context_bias)  # B,T,D
        return {"logits": self.out(y)}, presents  # B,T,V
