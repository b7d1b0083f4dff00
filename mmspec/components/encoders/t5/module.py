"""The module behind the `t5` stack, composed from the shared attention, RMSNorm, feed-forward and relative
position bias blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmspec.blocks.activations import activation
from mmspec.blocks.attention import Attention, KVCache, cached_causal_bias, causal_bias, padding_bias
from mmspec.blocks.mlp import FeedForward, GatedFeedForward
from mmspec.blocks.norms import RMSNorm
from mmspec.blocks.positions import RelativePositionBias
from mmspec.blocks.transformer import freeze


class T5Layer(nn.Module):
    """Pre-norm residual sublayers x + drop(f(RMSNorm(x))): self-attention, cross-attention (with `cross`, the
    context width), feed-forward. Attention is bias-free with scale 1.0 (T5 folds 1/sqrt(d) into the init)."""

    def __init__(self, cfg, cross: int | None):
        super().__init__()
        w, inner, p = cfg.width, cfg.inner, cfg.dropout
        self.attn_norm = RMSNorm(w, cfg.eps)
        self.attn = Attention(w, w, inner, cfg.heads, w, p, bias=False, scale=1.0)
        self.cross = cross is not None
        if self.cross:
            self.cross_norm = RMSNorm(w, cfg.eps)
            self.cross_attn = Attention(w, cross, inner, cfg.heads, w, p, bias=False, scale=1.0)
        self.ffn_norm = nn.LayerNorm(w, eps=cfg.eps) if cfg.ffn_norm == "layer" else RMSNorm(w, cfg.eps)
        if cfg.feed_forward == "gated-gelu":
            self.ffn = GatedFeedForward(w, cfg.ffn, "gelu_tanh", dropout=p)
        else:
            self.ffn = FeedForward(w, cfg.ffn, cfg.feed_forward, bias=False, dropout=p)
        self.dropout = nn.Dropout(p)

    def forward(self, x, bias, context=None, context_bias=None) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.attn_norm(x), None, bias))  # B,S,D
        if self.cross:
            x = x + self.dropout(self.cross_attn(self.cross_norm(x), context, context_bias))  # B,S,D
        return x + self.dropout(self.ffn(self.ffn_norm(x)))  # B,S,D

    def step(self, x, bias, past: KVCache, cross: KVCache | None, cross_bias) -> tuple[torch.Tensor, KVCache]:
        """`forward` for T new positions after the cached ones: self-attention extends `past` [B, H, P, d]
        (`bias` covers the P + T keys), cross-attention reads precomputed keys/values; returns (x, present)."""
        y, present = self.attn(self.attn_norm(x), bias=bias, cache=past)  # B,T,D; B,H,P+T,d
        x = x + self.dropout(y)  # B,T,D
        if self.cross:
            x = x + self.dropout(self.cross_attn.attend(self.cross_norm(x), cross, cross_bias))  # B,T,D
        return x + self.dropout(self.ffn(self.ffn_norm(x))), present  # B,T,D


class T5Module(nn.Module):
    """embed [-> agg token, projection] -> dropout -> layers (one relative position bias for all) -> RMSNorm ->
    dropout [-> LM head]."""

    def __init__(self, cfg, vocab: int, context: tuple[str, object] | None, shared: nn.Embedding | None = None):
        super().__init__()
        dim = cfg.embed.dim if cfg.embed else cfg.width
        self.embed = shared if shared is not None else nn.Embedding(vocab, dim)
        if cfg.embed and not cfg.embed.trainable:
            freeze(self.embed)
        self.agg = nn.Parameter(torch.randn(dim) * dim**-0.5) if cfg.agg_token else None
        self.project = None
        if cfg.embed:
            self.project = nn.Sequential(nn.Linear(dim, cfg.width, bias=False), activation(cfg.embed.activation))
        self.position = RelativePositionBias(cfg.heads, cfg.buckets, cfg.max_distance, bidirectional=not cfg.decoder)
        self.context_field = context[0] if context else None
        self.layers = nn.ModuleList(T5Layer(cfg, context[1].width if context else None) for _ in range(cfg.layers))
        self.final_norm = RMSNorm(cfg.width, cfg.eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.causal = cfg.decoder
        head = cfg.lm_head
        self.has_head = head is not None
        self.tied = head is not None and head.tied
        self.scale = cfg.width**-0.5 if head is not None and head.scale else None
        if head is not None and not head.tied:
            self.lm_head = nn.Linear(cfg.width, vocab, bias=False)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        b = inputs["input"]
        mask = keys = b.get("mask")
        x = self.embed(b["ids"])  # B,S,E
        if self.agg is not None:
            x = torch.cat([self.agg.expand(x.shape[0], 1, -1), x], dim=1)  # B,1+S,E
            if mask is not None:
                keys = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)  # B,1+S
        if self.project is not None:
            x = self.project(x)  # B,(1+)S,D
        x = self.dropout(x)  # B,(1+)S,D
        s = x.shape[1]
        bias = self.position(s, s)  # 1,H,S,S
        if keys is not None:
            bias = bias + padding_bias(keys, x)  # B,H,S,S
        if self.causal:
            bias = bias + causal_bias(x)  # (B|1),H,S,S
        context = context_bias = None
        if self.context_field is not None:
            context = inputs["cross"][self.context_field]  # B,T,Dc
            if "mask" in inputs["cross"]:
                context_bias = padding_bias(inputs["cross"]["mask"], context)  # B,1,1,T
        for layer in self.layers:
            x = layer(x, bias, context, context_bias)  # B,S,D
        x = self.dropout(self.final_norm(x))  # B,(1+)S,D
        out = {"sequence": x}
        if self.agg is not None:
            out = {"sequence": x[:, 1:], "pooled": x[:, 0]}  # B,S,D; B,D
        if mask is not None:
            out["mask"] = mask
        return {**out, **self.head(x)}

    def head(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """`logits` [B, S, V] of the final sequence x [B, S, D] (scaled by width**-0.5 first with `scale`)."""
        if not self.has_head:
            return {}
        if self.scale is not None:
            x = x * self.scale  # B,S,D
        weight = self.embed.weight if self.tied else self.lm_head.weight  # V,D
        return {"logits": F.linear(x, weight)}  # B,S,V

    def step(
        self, inputs: dict[str, dict[str, torch.Tensor]], past: list[KVCache], cross: list[KVCache] | None = None
    ) -> tuple[dict[str, torch.Tensor], list[KVCache]]:
        """One decoding step (`exports.G.cache`): T new ids after P cached positions (no padding mask); the
        relative position bias takes query positions P..P+T-1 against keys 0..P+T-1. `past` holds each layer's
        keys/values [B, H, P, d], `cross` each layer's precomputed context keys/values (`cross_kv`), whose `mask`
        may come in `inputs["cross"]`. Returns (the bundle, present keys/values per layer [B, H, P + T, d])."""
        offset = past[0].length
        x = self.dropout(self.embed(inputs["input"]["ids"]))  # B,T,D
        t = x.shape[1]
        bias = self.position(t, offset + t, offset) + cached_causal_bias(x, offset)  # 1,H,T,P+T
        context_bias = None
        if "mask" in inputs.get("cross", {}):
            context_bias = padding_bias(inputs["cross"]["mask"], x)  # B,1,1,S
        kv = cross or [None] * len(self.layers)
        presents = []
        for layer, cache, ctx_kv in zip(self.layers, past, kv, strict=True):
            x, present = layer.step(x, bias, cache, ctx_kv, context_bias)  # B,T,D
            presents.append(present)
        x = self.dropout(self.final_norm(x))  # B,T,D
        return {"sequence": x, **self.head(x)}, presents

    def cross_kv(self, context: torch.Tensor) -> list[KVCache]:
        """The keys/values [B, H, S, d] each layer's cross-attention reads from context [B, S, Dc], in layer order:
        computed once per context (an encoder graph) and fed to every `step`."""
        return [layer.cross_attn.project_kv(context) for layer in self.layers]
