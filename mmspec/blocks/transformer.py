"""Transformer layers: residual sublayers, the self-attention block and ViLBERT's co-attention block."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.attention import Attention, KVCache, combine_biases
from mmspec.blocks.mlp import FeedForward
from mmspec.blocks.moe import MixtureOfExperts
from mmspec.blocks.palm import ParallelBlock
from mmspec.blocks.positions import GridRelativePositionBias

FROZEN = "mmspec_frozen"
"""Attribute that marks a frozen sub-module (a `trainable: false` stack inside a component)."""


def freeze(module: nn.Module) -> nn.Module:
    """Freeze a part of a component: no gradients (so no optimizer state), and the trainer keeps it in eval mode."""
    module.requires_grad_(False)
    setattr(module, FROZEN, True)
    return module


def is_frozen(module: nn.Module) -> bool:
    return getattr(module, FROZEN, False)


class Residual(nn.Module):
    """Residual wrapper: post-norm `LN(x + drop(f(x)))` (BERT) or pre-norm `x + drop(f(LN(x)))` (CLIP, ViT).

    `gated`: Flamingo's `x + tanh(g) * drop(f(LN(x)))` with a learned scalar g starting at 0, so the sublayer starts
    as the identity (always the pre-norm form: only there does a zero gate leave x unchanged).

    `layer_scale`: BEiT/CaiT's pre-norm `x + drop(gamma * f(LN(x)))` with a learned per-channel gamma [D] that
    starts at this value."""

    def __init__(
        self, dim: int, norm_first: bool, eps: float, dropout: float, gated: bool = False,
        layer_scale: float | None = None,
    ):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first
        self.gate = nn.Parameter(torch.zeros(())) if gated else None
        if layer_scale is not None:
            self.scale = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor, f, *args) -> torch.Tensor:
        if self.gate is not None:
            return x + torch.tanh(self.gate) * self.dropout(f(self.norm(x), *args))  # B,S,D
        if hasattr(self, "scale"):
            return x + self.dropout(self.scale * f(self.norm(x), *args))  # B,S,D
        if self.norm_first:
            return x + self.dropout(f(self.norm(x), *args))
        return self.norm(x + self.dropout(f(x, *args)))


class Block(nn.Module):
    """Self-attention + feed-forward, each wrapped in a post- or pre-norm residual.

    With `cross` (the context's width), a cross-attention sublayer attends to a context sequence: between
    self-attention and feed-forward (Transformer decoder), or, `gated`, tanh-gated before self-attention
    (Flamingo's gated cross-attention in front of a frozen LM layer). Keyword options (BEiT, data2vec vision):
    `layer_scale` (see Residual) on both sublayers, `key_bias=False`, and `relative` = (grid height, width) for
    an own 2-D relative position bias (`GridRelativePositionBias`) added to the attention bias. AoANet's options:
    `aoa` / `cross_aoa` put Attention on Attention in place of the self- / cross-attention's output projection, and
    `feed_forward=False` leaves the feed-forward sublayer out (its refiner)."""

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
        cross: int | None = None,
        gated: bool = False,
        moe=None,
        *,
        layer_scale: float | None = None,
        key_bias: bool = True,
        relative: tuple[int, int] | None = None,
        aoa: bool = False,
        cross_aoa: bool = False,
        feed_forward: bool = True,
    ):
        super().__init__()
        self.attn = Attention(dim, dim, dim, heads, dim, attention_dropout, key_bias=key_bias,
                              **({"aoa": True} if aoa else {}))
        self.attn_res = Residual(dim, norm_first, eps, dropout, layer_scale=layer_scale)
        if relative is not None:
            self.relative = GridRelativePositionBias(*relative, heads)
        if cross is not None:
            self.cross_attn = Attention(dim, cross, dim, heads, dim, attention_dropout,
                                        **({"aoa": True} if cross_aoa else {}))
            self.cross_res = Residual(dim, norm_first, eps, dropout, gated)
        if not feed_forward:
            self.ffn = self.ffn_res = None
        elif moe is None:
            self.ffn = FeedForward(dim, ffn, act)
        else:
            self.ffn = MixtureOfExperts(dim, moe.hidden or ffn, moe.experts, moe.top_k, act,
                                        capacity_factor=moe.capacity_factor, noise=moe.noise, bias=moe.bias,
                                        renormalize=moe.renormalize, priority=moe.priority)
        if feed_forward:
            self.ffn_res = Residual(dim, norm_first, eps, dropout, layer_scale=layer_scale)
        self.cross, self.gated = cross is not None, gated
        self.routed = moe is not None
        """The feed-forward is a mixture of experts: forward returns (x, router logits [B, S, E])."""

    def forward(
        self,
        x: torch.Tensor,
        bias: torch.Tensor | None,
        context: torch.Tensor | None = None,
        context_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.cross and self.gated:
            x = self.cross_res(x, self.cross_attn, context, context_bias)  # B,S,D
        if hasattr(self, "relative"):
            bias = combine_biases(bias, self.relative())  # (B|1),H,S,S
        x = self.attn_res(x, self.attn, None, bias)  # B,S,D
        if self.cross and not self.gated:
            x = self.cross_res(x, self.cross_attn, context, context_bias)  # B,S,D
        if self.routed:
            return self.routed_ffn(x)  # B,S,D; B,S,E
        if self.ffn is None:
            return x
        return self.ffn_res(x, self.ffn)  # B,S,D

    def routed_ffn(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixture-of-experts residual sublayer: (x [B, S, D], router logits [B, S, E])."""
        logits = []

        def experts(h: torch.Tensor) -> torch.Tensor:
            y, router = self.ffn(h)  # B,S,D; B,S,E
            logits.append(router)
            return y

        return self.ffn_res(x, experts), logits[0]  # B,S,D; B,S,E

    def step(
        self,
        x: torch.Tensor,
        bias: torch.Tensor | None,
        past: KVCache,
        cross: KVCache | None = None,
        cross_bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """`forward` for T new positions x [B, T, D] after the cached ones: self-attention extends `past`
        [B, H, P, d] (`bias` covers the P + T keys), cross-attention reads the context's precomputed keys/values;
        returns (x [B, T, D], present [B, H, P + T, d])."""
        present = []

        def self_attention(h: torch.Tensor) -> torch.Tensor:
            y, kv = self.attn(h, bias=bias, cache=past)  # B,T,D; B,H,P+T,d
            present.append(kv)
            return y

        if self.cross and self.gated:
            x = self.cross_res(x, self.cross_attn.attend, cross, cross_bias)  # B,T,D
        x = self.attn_res(x, self_attention)  # B,T,D
        if self.cross and not self.gated:
            x = self.cross_res(x, self.cross_attn.attend, cross, cross_bias)  # B,T,D
        if self.routed:
            return self.routed_ffn(x)[0], present[0]  # B,T,D
        if self.ffn is None:
            return x, present[0]
        return self.ffn_res(x, self.ffn), present[0]  # B,T,D

    def self_parts(self) -> list[nn.Module]:
        """The self-attention and feed-forward sublayers with their norms (what a frozen stack freezes)."""
        return [p for p in (self.attn, self.attn_res, self.ffn, self.ffn_res) if p is not None]


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


def block_options(cfg, relative: tuple[int, int] | None = None) -> dict:
    """The BEiT and AoANet keyword options of `Block` a StackConfig-like cfg asks for (none: the default block);
    `relative`: the patch grid of a per-layer relative position bias."""
    options = {}
    if getattr(cfg, "aoa", False):
        options["aoa"] = True
    if getattr(getattr(cfg, "cross", None), "aoa", False):
        options["cross_aoa"] = True
    if not getattr(cfg, "feed_forward", True):
        options["feed_forward"] = False
    if getattr(cfg, "layer_scale", None) is not None:
        options["layer_scale"] = cfg.layer_scale
    if not getattr(cfg, "key_bias", True):
        options["key_bias"] = False
    if relative is not None:
        options["relative"] = relative
    return options


def make_blocks(
    cfg, count: int, cross: int | None = None, every: int = 1, gated: bool = False, trainable: bool = True,
    relative: tuple[int, int] | None = None,
) -> nn.ModuleList:
    """`count` self-attention blocks with the widths and norms of a StackConfig; with `cross` (the context width),
    layers 0, every, 2*every, ... also get a cross-attention sublayer; with `cfg.moe` (a MoEConfig), its layers get a
    mixture-of-experts feed-forward; with `cfg.parallel`, all are PaLM's parallel layers (`ParallelBlock`).
    `trainable=False` freezes every layer's self-attention and feed-forward sublayers (not the cross-attention
    ones). `cfg.layer_scale` / `cfg.key_bias` and `relative` (a patch grid) give BEiT's options (`block_options`)."""
    if getattr(cfg, "parallel", False):
        blocks = nn.ModuleList(
            ParallelBlock(cfg.width, cfg.heads, cfg.kv_heads or cfg.heads, cfg.head_dim or cfg.width // cfg.heads,
                          cfg.ffn, cfg.activation, cfg.eps, cfg.dropout, cfg.attention_dropout, cfg.gated, cfg.bias)
            for _ in range(count)
        )
    else:
        blocks = nn.ModuleList(
            Block(
                cfg.width,
                cfg.heads,
                cfg.ffn,
                cfg.activation,
                cfg.norm == "pre",
                cfg.eps,
                cfg.dropout,
                cfg.attention_dropout,
                cross if i % every == 0 else None,
                gated,
                moe=cfg.moe if getattr(cfg, "moe", None) and i in cfg.moe.layers_of(count) else None,
                **block_options(cfg, relative),
            )
            for i in range(count)
        )
    for block in blocks if not trainable else ():
        for part in block.self_parts():
            freeze(part)
    return blocks
