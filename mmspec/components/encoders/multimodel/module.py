"""The modules behind `multimodel_encoder` and `multimodel_decoder` (tensor2tensor's MultiModel), built from the
shared separable-convolution, mixture-of-experts, attention and feed-forward blocks."""

from __future__ import annotations

import math

import torch
from torch import nn

from mmspec.blocks.attention import Attention, KVCache, cached_causal_bias, padding_bias
from mmspec.blocks.mlp import FeedForward
from mmspec.blocks.moe import MixtureOfExperts
from mmspec.blocks.separable import SeparableConv1d


def timing_signal(positions: torch.Tensor, dim: int, timescales: int) -> torch.Tensor:
    """tensor2tensor's sinusoids: positions [T] -> [T, dim] = [sin(p / s_i); cos(p / s_i)] for `timescales`
    geometric timescales s_i from 1 to 1e4, zero-padded to `dim`."""
    rate = math.log(1.0e4) / max(timescales - 1, 1)
    inv = torch.exp(torch.arange(timescales, device=positions.device).float() * -rate)  # n
    angle = positions.float()[:, None] * inv[None, :]  # T,n
    signal = torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)  # T,2n
    return nn.functional.pad(signal, (0, dim - 2 * timescales))  # T,D


class ExpertMixture(nn.Module):
    """tensor2tensor's distributed_moe: noisy top-k gating over bias-free ReLU experts whose output is scaled by
    (hidden / dim)^-1/2 (ffn_expert_fn)."""

    def __init__(self, dim: int, hidden: int, experts: int, top_k: int):
        super().__init__()
        self.moe = MixtureOfExperts(dim, hidden, experts, top_k, "relu", noise=True)
        self.scale = (hidden / dim) ** -0.5

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, logits = self.moe(x)  # B,S,D; B,S,E
        return y * self.scale, logits


class ConvBlock(nn.Module):
    """Convolution steps ReLU -> mask -> separable conv (no bias) -> LayerNorm (conv_block_internal)."""

    def __init__(self, steps: list[tuple[int, int, int, int]], eps: float):
        super().__init__()
        self.convs = nn.ModuleList(SeparableConv1d(cin, cout, k, d) for cin, cout, k, d in steps)
        self.norms = nn.ModuleList(nn.LayerNorm(cout, eps=eps) for _, cout, _, _ in steps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = norm(conv(torch.relu(x) * keep))  # B,S,C'
        return x


class EncoderLayer(nn.Module):
    """conv_experts: LN(x + MoE(x) + conv_res_step(x)); conv_res_step = two k-tap steps to `filter` channels, then
    two `large`-tap steps back to `dim` (the second dilated)."""

    def __init__(self, dim: int, filter_: int, kernel: int, large: int, dilation: int, experts: int, top_k: int,
                 dropout: float, eps: float):
        super().__init__()
        self.conv1 = ConvBlock([(dim, filter_, kernel, 1), (filter_, filter_, kernel, 1)], eps)
        self.conv2 = ConvBlock([(filter_, dim, large, 1), (dim, dim, large, dilation)], eps)
        self.moe = ExpertMixture(dim, filter_, experts, top_k)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        conv = self.conv2(self.dropout(self.conv1(x, keep)), keep)  # B,S,D
        moe, logits = self.moe(x)  # B,S,D; B,S,E
        return self.norm(x + self.dropout(moe) + self.dropout(conv)), logits  # B,S,D; B,S,E


class ImageNet(nn.Module):
    """The image modality net: a bias-free 3 x 3 conv to `dim` channels, LayerNorm, pixels flattened row by row
    (project_to_hidden)."""

    def __init__(self, channels: int, dim: int, eps: float):
        super().__init__()
        self.conv = nn.Conv2d(channels, dim, 3, padding=1, bias=False)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(pixels).flatten(2).transpose(1, 2))  # B,H*W,D


class MultiModelEncoderModule(nn.Module):
    """Modality net (token table scaled by sqrt(dim), padding zeroed; or the image net), 16-timescale timing
    signal, conv + MoE layers, and the mean over positions (the class-label modality's pooling)."""

    def __init__(self, vocab: int | None, channels: int | None, dim: int, layers: int, filter_: int, kernel: int,
                 large: int, dilation: int, experts: int, top_k: int, timescales: int, dropout: float, eps: float):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim) if vocab else ImageNet(channels, dim, eps)
        self.layers = nn.ModuleList(EncoderLayer(dim, filter_, kernel, large, dilation, experts, top_k, dropout, eps)
                                    for _ in range(layers))
        self.dim, self.timescales = dim, timescales

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        b = inputs["input"]
        if "ids" in b:
            x = self.embed(b["ids"]) * math.sqrt(self.dim)  # B,S,D
        else:
            x = self.embed(b["pixels"])  # B,H*W,D
        keep = b["mask"][..., None].type_as(x) if "mask" in b else torch.ones_like(x[..., :1])  # B,S,1
        x = x * keep + timing_signal(torch.arange(x.shape[1], device=x.device), self.dim, self.timescales)
        routers = []
        for layer in self.layers:
            x, logits = layer(x, keep)  # B,S,D; B,S,E
            routers.append(logits)
        out = {"sequence": x, "pooled": x.mean(1), "router": torch.cat(routers, dim=1)}  # B,S,D; B,D; B,L*S,E
        if "mask" in b:
            out["mask"] = b["mask"]
        return out


class DecoderLayer(nn.Module):
    """x <- LN(x + SelfAttn(x) + EncDecAttn(SelfAttn(x), encoder)); x <- LN(x + FFN(x)), the FFN a ReLU
    feed-forward or a mixture of experts."""

    def __init__(self, dim: int, heads: int, filter_: int, expert_filter: int, experts: int, top_k: int, moe: bool,
                 dropout: float, attention_dropout: float, eps: float):
        super().__init__()
        self.attn = Attention(dim, dim, dim, heads, dim, attention_dropout, bias=False)
        self.cross_attn = Attention(dim, dim, dim, heads, dim, attention_dropout, bias=False)
        self.attn_norm = nn.LayerNorm(dim, eps=eps)
        self.ffn = ExpertMixture(dim, expert_filter, experts, top_k) if moe else FeedForward(dim, filter_, "relu",
                                                                                              dropout=dropout)
        self.ffn_norm = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, y: torch.Tensor, context: torch.Tensor, context_bias: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: the layer input [B, T, D]; y: its self-attention output [B, T, D]."""
        z = self.cross_attn(y, context, context_bias)  # B,T,D
        x = self.attn_norm(x + self.dropout(y) + self.dropout(z))  # B,T,D
        f = self.ffn(x)
        f, logits = f if isinstance(f, tuple) else (f, None)  # B,T,D; B,T,E
        return self.ffn_norm(x + self.dropout(f)), logits  # B,T,D


class MultiModelDecoderModule(nn.Module):
    """Position 0: the target-space embedding of its id; later positions: the target table scaled by sqrt(dim)
    (id 0, padding, zeroed); plus the full-width timing signal; decoder layers; a bias-free softmax matrix."""

    def __init__(self, vocab: int, spaces: int, dim: int, layers: int, heads: int, filter_: int, expert_filter: int,
                 experts: int, top_k: int, moe_layers: list[int], dropout: float, attention_dropout: float, eps: float):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.space = nn.Embedding(spaces, dim)
        self.layers = nn.ModuleList(
            DecoderLayer(dim, heads, filter_, expert_filter, experts, top_k, i in moe_layers, dropout,
                         attention_dropout, eps)
            for i in range(layers))
        self.out = nn.Linear(dim, vocab, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.dim, self.spaces = dim, spaces

    def embed_ids(self, ids: torch.Tensor, offset=0) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device) + offset  # T
        first = (positions == 0)[None, :, None]  # 1,T,1
        space = self.space(ids.clamp(max=self.spaces - 1))  # B,T,D
        tokens = self.embed(ids) * math.sqrt(self.dim) * (ids != 0)[..., None].type_as(space)  # B,T,D, id 0 zeroed
        x = torch.where(first, space, tokens)  # B,T,D
        return self.dropout(x + timing_signal(positions, self.dim, self.dim // 2))  # B,T,D

    @staticmethod
    def context(inputs: dict[str, dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor | None]:
        seq = inputs["encoder"]["sequence"]  # B,S,D
        mask = inputs["encoder_mask"]["mask"] if "encoder_mask" in inputs else None  # B,S
        return seq, None if mask is None else padding_bias(mask, seq)  # B,S,D; B,1,1,S

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = self.embed_ids(inputs["input"]["ids"])  # B,T,D
        context, context_bias = self.context(inputs)
        bias = cached_causal_bias(x, 0)  # T,T
        routers = []
        for layer in self.layers:
            x, logits = layer(x, layer.attn(x, bias=bias), context, context_bias)  # B,T,D
            if logits is not None:
                routers.append(logits)
        out = {"logits": self.out(x)}  # B,T,V
        if routers:
            out["router"] = torch.cat(routers, dim=1)  # B,n*T,E
        return out

    def step(self, inputs: dict[str, dict[str, torch.Tensor]], past: list[KVCache], cross=None
             ) -> tuple[dict[str, torch.Tensor], list[KVCache]]:
        """New positions after the cached ones: self-attention extends each layer's past keys/values [B, H, P, d];
        the encoder sequence comes in whole. Returns (the bundle, present keys/values [B, H, P + T, d])."""
        offset = past[0].length
        x = self.embed_ids(inputs["input"]["ids"], offset)  # B,T,D
        context, context_bias = self.context(inputs)
        bias = cached_causal_bias(x, offset)  # T,P+T
        presents = []
        for layer, cache in zip(self.layers, past, strict=True):
            y, present = layer.attn(x, bias=bias, cache=cache)  # B,T,D; B,H,P+T,d
            presents.append(present)
            x, _ = layer(x, y, context, context_bias)  # B,T,D
        return {"logits": self.out(x)}, presents  # B,T,V
