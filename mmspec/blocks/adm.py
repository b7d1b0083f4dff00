"""The ADM U-Net (Dhariwal & Nichol 2021) with GLIDE's text conditioning (Nichol et al. 2022): scale-shift
residual blocks that also down- and upsample, multi-head attention over the pixels whose keys and values are
prefixed by the projected text tokens, and GLIDE's text transformer (learned per-position padding embeddings,
pre-LN blocks, final LayerNorm) whose last token is projected and added to the timestep embedding.

Contract: `ADMUNet` maps (sample [B, C_in, H, W], timesteps [B], optionally tokens and mask [B, S]) to
[B, C_out, H, W], H and W divisible by 2^(levels - 1). torch.fx traceable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmspec.blocks.attention import Attention
from mmspec.blocks.conv import ResnetBlock
from mmspec.blocks.positions import TimestepEmbedding
from mmspec.blocks.transformer import Block


class TextAttention(nn.Module):
    """x + out(attention(GroupNorm(x))) over the H*W positions, `channels // head_dim` heads; with a text context
    [B, S, D], its projections (`encoder_kv`: D -> 2C, keys then values) come before the pixels' own keys and
    values (GLIDE)."""

    def __init__(self, channels: int, head_dim: int, groups: int, eps: float, context_dim: int | None):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=eps)
        self.attn = Attention(channels, channels, channels, channels // head_dim, channels)
        self.encoder_kv = nn.Linear(context_dim, 2 * channels) if context_dim else None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x).flatten(2).transpose(1, 2)  # B,HW,C
        q = self.attn.split_heads(self.attn.q(y), b, h * w)  # B,H,HW,d
        k = self.attn.split_heads(self.attn.k(y), b, h * w)  # B,H,HW,d
        v = self.attn.split_heads(self.attn.v(y), b, h * w)  # B,H,HW,d
        if self.encoder_kv is not None and context is not None:
            s = context.shape[1]
            ek, ev = self.encoder_kv(context).chunk(2, dim=-1)  # B,S,C each
            k = torch.cat([self.attn.split_heads(ek, b, s), k], dim=2)  # B,H,S+HW,d
            v = torch.cat([self.attn.split_heads(ev, b, s), v], dim=2)  # B,H,S+HW,d
        y = self.attn.mix(q, k, v, None, b, h * w)  # B,HW,C
        return x + y.transpose(1, 2).reshape(b, c, h, w)  # B,C,H,W


class Step(nn.ModuleList):
    """One entry of ADM's input/output block lists: convs, residual blocks (given the time embedding) and
    attentions (given the text context), applied in order."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResnetBlock):
                x = layer(x, emb)  # B,C',H',W'
            elif isinstance(layer, TextAttention):
                x = layer(x, context)  # B,C,H,W
            else:
                x = layer(x)  # B,C',H,W
        return x


class GlideText(nn.Module):
    """tokens [B, S] and mask [B, S] (1 = token) -> (states [B, S, D], last-token projection [B, temb]):
    token + position embeddings, padding positions replaced by learned per-position embeddings, pre-LN blocks
    (GELU, 4x feed-forward), a final LayerNorm."""

    def __init__(self, vocab: int, length: int, width: int, layers: int, heads: int, temb: int, padding: bool):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, width)
        self.positional_embedding = nn.Parameter(torch.empty(length, width).normal_(std=0.01))
        self.padding_embedding = nn.Parameter(torch.empty(length, width).normal_(std=0.01)) if padding else None
        self.blocks = nn.ModuleList(Block(width, heads, 4 * width, "gelu", True, 1e-5, 0.0, 0.0)
                                    for _ in range(layers))
        self.final_ln = nn.LayerNorm(width)
        self.transformer_proj = nn.Linear(width, temb)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.token_embedding(tokens) + self.positional_embedding  # B,S,D
        if self.padding_embedding is not None and mask is not None:
            x = torch.where(mask[..., None] > 0, x, self.padding_embedding)  # B,S,D
        for block in self.blocks:
            x = block(x, None)  # B,S,D
        x = self.final_ln(x)  # B,S,D
        return x, self.transformer_proj(x[:, -1])  # B,S,D; B,temb


class ADMUNet(nn.Module):
    """`width` * mult[i] channels at level i, `depth` scale-shift residual blocks per down level (depth + 1 per up
    level), each followed by a `TextAttention` of `head_dim`-wide heads where attention[i]; residual blocks that
    average-pool / nearest-upsample between levels; a middle (resnet, attention, resnet); GroupNorm, SiLU and a
    3x3 conv out. The time embedding is 4 * width wide; `text` = dict(vocab, length, width, layers, heads,
    padding) adds GLIDE's text transformer."""

    def __init__(self, channels: int, out_channels: int, width: int, mult: list[int], depth: int,
                 attention: list[bool], *, head_dim: int = 64, groups: int = 32, eps: float = 1e-5,
                 dropout: float = 0.0, text: dict | None = None):
        super().__init__()
        temb = 4 * width
        self.time_embedding = TimestepEmbedding(width, temb, True, 0.0)
        self.text = GlideText(**text, temb=temb) if text else None
        ctx = text["width"] if text else None

        def res(cin: int, cout: int, resample: str | None = None) -> ResnetBlock:
            return ResnetBlock(cin, cout, temb, groups, eps, dropout, "scale_shift", resample=resample)

        def attn(c: int) -> TextAttention:
            return TextAttention(c, head_dim, groups, eps, ctx)

        ch = width * mult[0]
        self.input_blocks = nn.ModuleList([Step([nn.Conv2d(channels, ch, 3, padding=1)])])
        skips = [ch]
        for level, m in enumerate(mult):
            for _ in range(depth):
                layers: list[nn.Module] = [res(ch, width * m)]
                ch = width * m
                if attention[level]:
                    layers.append(attn(ch))
                self.input_blocks.append(Step(layers))
                skips.append(ch)
            if level < len(mult) - 1:
                self.input_blocks.append(Step([res(ch, ch, "down")]))
                skips.append(ch)
        self.middle_block = Step([res(ch, ch), attn(ch), res(ch, ch)])
        self.output_blocks = nn.ModuleList()
        for level in reversed(range(len(mult))):
            for i in range(depth + 1):
                layers = [res(ch + skips.pop(), width * mult[level])]
                ch = width * mult[level]
                if attention[level]:
                    layers.append(attn(ch))
                if level and i == depth:
                    layers.append(res(ch, ch, "up"))
                self.output_blocks.append(Step(layers))
        self.out_norm = nn.GroupNorm(groups, ch, eps=eps)
        self.out_conv = nn.Conv2d(ch, out_channels, 3, padding=1)

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor, tokens: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_embedding(timesteps)  # B,4W
        context = None
        if self.text is not None and tokens is not None:
            context, pooled = self.text(tokens, mask)  # B,S,D; B,4W
            emb = emb + pooled  # B,4W
        x, skips = sample, []
        for step in self.input_blocks:
            x = step(x, emb, context)  # B,C_i,H_i,W_i
            skips.append(x)
        x = self.middle_block(x, emb, context)  # B,C_L,h,w
        for step in self.output_blocks:
            x = step(torch.cat([x, skips.pop()], dim=1), emb, context)  # B,C_i,H_i,W_i
        return self.out_conv(F.silu(self.out_norm(x)))  # B,C_out,H,W
