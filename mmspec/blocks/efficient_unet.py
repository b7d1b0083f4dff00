"""Imagen's Efficient U-Net (Saharia et al. 2022, Appendix B.1, Figure A.30) as NVIDIA NeMo's EfficientUNetModel
builds it for the super-resolution stages: each level downsamples first (a 4x4 stride-2 conv) and then runs its
residual blocks and one optional text attention; the mirrored level runs its blocks and attention and then
upsamples (a 4x4 stride-2 transposed conv); the skip connections add (not concatenate) the down path's level
outputs; every residual block has a 1x1 conv shortcut scaled by 1/sqrt(2). Time, the low-resolution image's
augmentation level and the pooled text are embedded and summed; the text states, projected, are the attention
context. The text conditioning and the fused / cross attentions are the base U-Net's (NeMo shares them):
blocks.adm.ImagenConditioning and blocks.adm.TextAttention.

Contract: `EfficientUNet` maps (sample [B, C, H, W] already concatenated with the resized low-resolution image,
timesteps [B], context [B, S, D], its padding mask [B, S] or None, augmentation levels [B] or None) to
[B, C_out, H, W], H and W divisible by 2^(levels - 1). torch.fx traceable.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mmspec.blocks.adm import ImagenConditioning, TextAttention
from mmspec.blocks.conv import ResnetBlock
from mmspec.blocks.diffusion import SpatialSelfAttention
from mmspec.blocks.mlp import GatedFeedForward
from mmspec.blocks.positions import TimestepEmbedding
from mmspec.blocks.sampling import Upsample

ATTENTION_TYPES = ("fused", "cross", "self", "stacked")


class LearnedTimestepEmbedding(nn.Module):
    """timesteps [B] -> [t, sin(2 pi t w), cos(2 pi t w)] with `dim / 2` learned frequencies w -> Linear -> SiLU ->
    Linear -> [B, out] (NeMo's LearnedSinusoidalPosEmb, after v-diffusion)."""

    def __init__(self, dim: int, out: int):
        super().__init__()
        self.weights = nn.Parameter(torch.randn(dim // 2))
        self.linear_1 = nn.Linear(dim + 1, out)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(out, out)

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        t = timesteps[:, None].float()  # B,1
        freqs = t * self.weights[None, :] * (2 * math.pi)  # B,dim/2
        emb = torch.cat([t, freqs.sin(), freqs.cos()], dim=-1)  # B,dim+1
        return self.linear_2(self.act(self.linear_1(emb)))  # B,out


def time_embedding(width: int, learned: int, out: int) -> nn.Module:
    """The fixed sinusoid of `width` channels (cos first, NeMo's UnLearnedSinusoidalPosEmb) or, with `learned` > 0,
    `learned` / 2 learned frequencies; then the two-layer MLP to `out`."""
    return LearnedTimestepEmbedding(learned, out) if learned else TimestepEmbedding(width, out)


class StackedTextAttention(nn.Module):
    """x + proj_out(ff(cross(self(proj_in(GroupNorm(x)))))): pixel self-attention, cross-attention to the context
    and a GroupNorm + GEGLU (4x) feed-forward, each residual, between 1x1 convs (NeMo's
    StackedCrossAttentionBlock)."""

    def __init__(self, channels: int, context_dim: int, heads: int, groups: int, eps: float):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=eps)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.self_attention = SpatialSelfAttention(channels, channels // heads, groups, eps)
        self.cross_attention = cross_attention(channels, context_dim, heads, groups, eps, pixel_kv=False)
        self.norm_ff = nn.GroupNorm(groups, channels, eps=eps)
        self.ff = GatedFeedForward(channels, 4 * channels, "gelu", bias=True)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = self.self_attention(self.proj_in(self.norm(x)))  # B,C,H,W
        h = self.cross_attention(h, context, mask)  # B,C,H,W
        h = h + self.ff(self.norm_ff(h.flatten(2)).transpose(1, 2)).transpose(1, 2).reshape(b, c, hh, ww)  # B,C,H,W
        return x + self.proj_out(h)  # B,C,H,W


def cross_attention(channels: int, context_dim: int, heads: int, groups: int, eps: float, pixel_kv: bool
                    ) -> TextAttention:
    """NeMo's FusedCrossAttentionBlock (`pixel_kv`: the pixels' keys and values, then the context's) or
    CrossAttentionBlock (the context's only): blocks.adm.TextAttention with its own GroupNorms for the pixels' keys
    and values and for the context."""
    return TextAttention(channels, channels // heads, groups, eps, context_dim, separate_norms=True,
                         pixel_kv=pixel_kv)


def text_attention(kind: str, channels: int, context_dim: int, heads: int, groups: int, eps: float) -> nn.Module:
    """One attention of `kind` (ATTENTION_TYPES) over `channels` pixels with `heads` heads."""
    if kind == "self":
        return SpatialSelfAttention(channels, channels // heads, groups, eps)
    if kind == "stacked":
        return StackedTextAttention(channels, context_dim, heads, groups, eps)
    return cross_attention(channels, context_dim, heads, groups, eps, pixel_kv=kind == "fused")


class EfficientLevel(nn.Module):
    """One Efficient U-Net level: an optional 4x4 stride-2 conv down (`down`, on the input channels), `depth`
    residual blocks cin -> cout -> cout with 1x1 conv shortcuts scaled by `shortcut_scale`, an optional attention
    (given the context and its mask; `self` attention ignores them), an optional 4x4 stride-2 transposed conv up
    (`up`, on the output channels). NeMo's DBlock (down) and UBlock (up)."""

    def __init__(self, cin: int, cout: int, depth: int, temb: int, attention: nn.Module | None, down: bool, up: bool,
                 opts: dict):
        super().__init__()
        self.downsample = nn.Conv2d(cin, cin, 4, stride=2, padding=1) if down else None
        self.resnets = nn.ModuleList(
            ResnetBlock(cin if i == 0 else cout, cout, temb, opts["groups"], opts["eps"], time_norm=opts["time_norm"],
                        conv_shortcut=True, shortcut_scale=opts["shortcut_scale"]) for i in range(depth))
        self.attention = attention
        self.self_only = isinstance(attention, SpatialSelfAttention)
        self.upsample = Upsample(cout, mode="transpose") if up else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None
                ) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)  # B,C,H/2,W/2
        for resnet in self.resnets:
            x = resnet(x, emb)  # B,C',H,W
        if self.attention is not None:
            x = self.attention(x) if self.self_only else self.attention(x, context, mask)  # B,C',H,W
        if self.upsample is not None:
            x = self.upsample(x)  # B,C',2H,2W
        return x


class EfficientUNet(nn.Module):
    """Levels of widths[i] = width * mult[i] channels with depth[i] residual blocks, each level with a text
    attention of `attention_type` where attention[i]; `heads` heads, or channels / head_dim with `head_dim`. The
    time embedding is 4 * width wide: the timestep's sinusoid (`learned` > 0: learned frequencies) MLP, plus the
    augmentation level's (`aug`) and the pooled text's; the text conditioning (`text`: padding zeroed, projected
    D -> D as the context, `pooling` "attention" or "mean", optionally a learned `null_token`) is Imagen's
    `ImagenConditioning` at width D. `scale_shift`: the residual blocks apply the time embedding as GroupNorm
    scale and shift; `shortcut_scale`: their shortcut's factor."""

    def __init__(
        self,
        channels: int,
        out_channels: int,
        context_dim: int,
        width: int,
        mult: list[int],
        depth: list[int],
        attention: list[bool],
        *,
        attention_type: str = "fused",
        heads: int = 8,
        head_dim: int | None = 64,
        pooling: str = "attention",
        learned: int = 0,
        aug: bool = True,
        null_token: bool = False,
        conv_in_kernel: int = 3,
        scale_shift: bool = True,
        shortcut_scale: float = 1 / math.sqrt(2),
        groups: int = 32,
        eps: float = 1e-5,
    ):
        super().__init__()
        temb, n = 4 * width, len(mult)
        widths = [width * m for m in mult]
        self.time_embedding = time_embedding(width, learned, temb)
        self.aug_embedding = time_embedding(width, learned, temb) if aug else None
        self.text = ImagenConditioning(context_dim, context_dim, temb, pooling, null_token)
        self.conv_in = nn.Conv2d(channels, widths[0], conv_in_kernel, padding=conv_in_kernel // 2)
        opts = {"groups": groups, "eps": eps, "time_norm": "scale_shift" if scale_shift else "default",
                "shortcut_scale": shortcut_scale}

        def attend(i: int, c: int) -> nn.Module | None:
            h = c // head_dim if head_dim else heads
            return text_attention(attention_type, c, context_dim, h, groups, eps) if attention[i] else None

        self.down_blocks = nn.ModuleList(
            EfficientLevel(widths[max(i - 1, 0)], widths[i], depth[i], temb, attend(i, widths[i]), i < n - 1, False,
                           opts) for i in range(n))
        self.up_blocks = nn.ModuleList(  # indexed by level; run deepest first
            EfficientLevel(widths[i], widths[max(i - 1, 0)], depth[i], temb, attend(i, widths[max(i - 1, 0)]), False,
                           i < n - 1, opts) for i in range(n))
        self.conv_out = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                context_mask: torch.Tensor | None = None, aug_levels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_embedding(timesteps)  # B,4W
        if self.aug_embedding is not None:
            emb = emb + self.aug_embedding(aug_levels)  # B,4W
        states, mask, added = self.text(context, context_mask)  # B,S(+1),D; B,S(+1); B,4W
        emb = emb + added  # B,4W
        x = self.conv_in(sample)  # B,C0,H,W
        skips = []
        for level in self.down_blocks:
            x = level(x, emb, states, mask)  # B,C_i,H/2^(i+1),W/2^(i+1) (the deepest keeps its input's size)
            skips.append(x)
        for i in reversed(range(len(self.up_blocks))):
            if i < len(self.up_blocks) - 1:
                x = x + skips[i]  # B,C_i,h,w
            x = self.up_blocks[i](x, emb, states, mask)  # B,C_{i-1},2h,2w
        return self.conv_out(x)  # B,C_out,H,W
