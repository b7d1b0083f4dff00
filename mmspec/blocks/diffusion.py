"""The denoising U-Net of DDPM (Ho et al. 2020) in diffusers' UNet2DModel layout: a timestep embedding, levels of
GroupNorm + SiLU residual blocks (`conv.ResnetBlock`) with optional self-attention over the pixels, stride-2
downsampling, a middle block (resnet, attention, resnet), and an upsampling path whose every block takes the
matching down-path state concatenated on the channels.

Contract: `DiffusionUNet` maps (sample [B, C, H, W], timesteps [B]) -> [B, C_out, H, W], H and W divisible by
2^(levels - 1). Parameter names equal diffusers' (conv_in, time_embedding.linear_1, down_blocks.i.resnets.j,
down_blocks.i.attentions.j, down_blocks.i.downsamplers.0.conv, mid_block, up_blocks, conv_norm_out, conv_out)
except inside the attentions (group_norm, attn.q/k/v/out for to_q/to_k/to_v/to_out.0). torch.fx traceable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmspec.blocks.attention import Attention, padding_bias
from mmspec.blocks.conv import ResnetBlock
from mmspec.blocks.mlp import GatedFeedForward
from mmspec.blocks.positions import TimestepEmbedding
from mmspec.blocks.sampling import Downsample, Upsample


class SpatialSelfAttention(nn.Module):
    """x + attention(GroupNorm(x)) over the H*W positions, `channels // head_dim` heads (one head without
    head_dim): diffusers' Attention with a group norm and a residual connection, as in AttnDownBlock2D."""

    def __init__(self, channels: int, head_dim: int | None, groups: int, eps: float):
        super().__init__()
        heads = channels // head_dim if head_dim else 1
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps)
        self.attn = Attention(channels, channels, channels, heads, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, bias: torch.Tensor | None = None
                ) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.group_norm(x).flatten(2).transpose(1, 2)  # B,HW,C
        y = self.attn(y).transpose(1, 2).reshape(b, c, h, w)  # B,C,H,W
        return x + y  # B,C,H,W


def _attention(q_dim: int, kv_dim: int, heads: int) -> Attention:
    """Projections without biases but for the output's (diffusers' Attention in transformer blocks)."""
    attn = Attention(q_dim, kv_dim, q_dim, heads, q_dim, bias=False)
    attn.out = nn.Linear(q_dim, q_dim)
    return attn


class CrossAttentionBlock(nn.Module):
    """Pre-LN transformer block over the pixels (diffusers BasicTransformerBlock): self-attention, cross-attention
    to the context [B, S, context_dim] (`bias` [B, 1, 1, S]: its padding), GEGLU feed-forward (4x), each with a
    residual."""

    def __init__(self, channels: int, heads: int, context_dim: int):
        super().__init__()
        self.norm1, self.attn1 = nn.LayerNorm(channels), _attention(channels, channels, heads)
        self.norm2, self.attn2 = nn.LayerNorm(channels), _attention(channels, context_dim, heads)
        self.norm3, self.ff = nn.LayerNorm(channels), GatedFeedForward(channels, 4 * channels, "gelu", bias=True)

    def forward(self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))  # B,HW,C
        x = x + self.attn2(self.norm2(x), context, bias)  # B,HW,C
        return x + self.ff(self.norm3(x))  # B,HW,C


class SpatialTransformer(nn.Module):
    """x + proj_out(transformer block(proj_in(GroupNorm(x)) over the H*W positions, context)): latent diffusion's
    text conditioning (diffusers Transformer2DModel with 1x1 conv projections, one block)."""

    def __init__(self, channels: int, heads: int, context_dim: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList([CrossAttentionBlock(channels, heads, context_dim)])
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)  # B,HW,C
        for block in self.transformer_blocks:
            y = block(y, context, bias)  # B,HW,C
        return x + self.proj_out(y.transpose(1, 2).reshape(b, c, h, w))  # B,C,H,W


def _make_attention(opts: dict, channels: int) -> nn.Module:
    """Cross-attention transformer (with `context_dim`, `heads` heads) or pixel self-attention."""
    if opts.get("context_dim"):
        return SpatialTransformer(channels, opts["heads"], opts["context_dim"], opts["groups"])
    return SpatialSelfAttention(channels, opts["head_dim"], opts["groups"], opts["eps"])


class DownLevel(nn.Module):
    """`depth` resnets (each followed by an attention when `attention`), then a stride-2 downsample unless last;
    returns the output and every intermediate state the up path concatenates."""

    def __init__(self, cin: int, cout: int, depth: int, temb: int | None, attention: bool, last: bool, opts: dict):
        super().__init__()
        g, eps = opts["groups"], opts["eps"]
        self.resnets = nn.ModuleList(ResnetBlock(cin if i == 0 else cout, cout, temb, g, eps, opts["dropout"])
                                     for i in range(depth))
        self.attentions = nn.ModuleList(_make_attention(opts, cout) for _ in range(depth if attention else 0))
        self.downsamplers = nn.ModuleList(
            [] if last else [Downsample(cout, mode="conv", padding=opts["downsample_padding"])])

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None, context: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        states = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, emb)  # B,C',H,W
            if len(self.attentions):
                x = self.attentions[i](x, context, bias)  # B,C',H,W
            states.append(x)
        for down in self.downsamplers:
            x = down(x)  # B,C',H/2,W/2
            states.append(x)
        return x, states


class UpLevel(nn.Module):
    """`depth` + 1 resnets, each on [x; the next skip state] (channels concatenated), each followed by an
    attention when `attention`; then a nearest x2 upsample + 3x3 conv unless last."""

    def __init__(self, cin: int, cout: int, skip_widths: list[int], temb: int, attention: bool, last: bool,
                 opts: dict):
        super().__init__()
        g, eps = opts["groups"], opts["eps"]
        self.resnets = nn.ModuleList(ResnetBlock((cin if i == 0 else cout) + s, cout, temb, g, eps, opts["dropout"])
                                     for i, s in enumerate(skip_widths))
        self.attentions = nn.ModuleList(_make_attention(opts, cout)
                                        for _ in range(len(skip_widths) if attention else 0))
        self.upsamplers = nn.ModuleList([] if last else [Upsample(cout, mode="conv")])

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor], emb: torch.Tensor,
                context: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips.pop()], dim=1), emb)  # B,C',H,W
            if len(self.attentions):
                x = self.attentions[i](x, context, bias)  # B,C',H,W
        for up in self.upsamplers:
            x = up(x)  # B,C',2H,2W
        return x


class MidBlock(nn.Module):
    """resnet -> self-attention -> resnet at the lowest resolution (diffusers UNetMidBlock2D)."""

    def __init__(self, channels: int, temb: int | None, opts: dict):
        super().__init__()
        g, eps = opts["groups"], opts["eps"]
        self.resnets = nn.ModuleList(ResnetBlock(channels, channels, temb, g, eps, opts["dropout"]) for _ in range(2))
        self.attentions = nn.ModuleList([_make_attention(opts, channels)])

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None, context: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        x = self.resnets[0](x, emb)  # B,C,H,W
        return self.resnets[1](self.attentions[0](x, context, bias), emb)  # B,C,H,W


class AttentionPooling(nn.Module):
    """One query, the mean of x [B, S, D] plus a learned position, attends over [query; x] with `heads` heads
    (q/k/v projections with biases, no output projection) -> [B, D] (DeepFloyd IF's pooling; diffusers
    AttentionPooling)."""

    def __init__(self, heads: int, dim: int):
        super().__init__()
        self.heads = heads
        self.positional_embedding = nn.Parameter(torch.randn(1, dim) / dim**0.5)
        self.k_proj, self.q_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        query = x.mean(dim=1, keepdim=True) + self.positional_embedding  # B,1,D
        x = torch.cat([query, x], dim=1)  # B,1+S,D
        q = self.q_proj(query).view(b, 1, self.heads, -1).transpose(1, 2)  # B,H,1,d
        k = self.k_proj(x).view(b, s + 1, self.heads, -1).transpose(1, 2)  # B,H,1+S,d
        v = self.v_proj(x).view(b, s + 1, self.heads, -1).transpose(1, 2)  # B,H,1+S,d
        return F.scaled_dot_product_attention(q, k, v).reshape(b, d)  # B,D


class TextTimeEmbedding(nn.Module):
    """Text states [B, S, D] -> LayerNorm -> attention pooling -> Linear -> LayerNorm -> [B, dim]: the pooled
    text embedding Imagen adds to the timestep embedding (diffusers TextTimeEmbedding, addition_embed_type
    "text")."""

    def __init__(self, context_dim: int, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(context_dim)
        self.pool = AttentionPooling(heads, context_dim)
        self.proj = nn.Linear(context_dim, dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.proj(self.pool(self.norm1(context))))  # B,dim


class DiffusionUNet(nn.Module):
    """widths[i] channels at level i (resolution / 2^i), `depth` resnets per down level (depth + 1 per up level;
    one depth per level when a list), self-attention at the levels where attention[i] - or, with `context_dim`, a
    cross-attention transformer of `heads` heads over the context [B, S, context_dim] (diffusers
    UNet2DConditionModel), whose padding `context_mask` [B, S] (1 = token) masks the cross-attention keys; the
    time embedding is 4 * widths[0] wide. `pooled_heads`: the attention-pooled context (`TextTimeEmbedding`) is
    added to the time embedding; `class_timestep`: a second timestep per example (an augmentation level) is
    embedded like the timestep and added (diffusers class_embed_type "timestep")."""

    def __init__(
        self,
        channels: int,
        out_channels: int,
        widths: list[int],
        depth: int | list[int],
        attention: list[bool],
        *,
        head_dim: int | None = None,
        groups: int = 32,
        eps: float = 1e-6,
        dropout: float = 0.0,
        flip_sin_to_cos: bool = False,
        freq_shift: float = 1.0,
        downsample_padding: int = 1,
        context_dim: int | None = None,
        heads: int = 8,
        pooled_heads: int | None = None,
        class_timestep: bool = False,
    ):
        super().__init__()
        opts = {"groups": groups, "eps": eps, "dropout": dropout, "head_dim": head_dim,
                "downsample_padding": downsample_padding, "context_dim": context_dim, "heads": heads}
        temb = 4 * widths[0]
        n = len(widths)
        depths = [depth] * n if isinstance(depth, int) else list(depth)
        self.conv_in = nn.Conv2d(channels, widths[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(widths[0], temb, flip_sin_to_cos, freq_shift)
        self.class_embedding = (TimestepEmbedding(widths[0], temb, flip_sin_to_cos, freq_shift) if class_timestep
                                else None)
        self.add_embedding = TextTimeEmbedding(context_dim, temb, pooled_heads) if pooled_heads else None
        self.down_blocks = nn.ModuleList(
            DownLevel(widths[max(i - 1, 0)], widths[i], depths[i], temb, attention[i], i == n - 1, opts)
            for i in range(n))
        self.mid_block = MidBlock(widths[-1], temb, opts)
        skip = [widths[0]]  # the widths of the down path's states, in the order they are stored
        for i in range(n):
            skip += [widths[i]] * (depths[i] + (i < n - 1))
        ups = []
        for i in reversed(range(n)):
            taken = [skip.pop() for _ in range(depths[i] + 1)]
            ups.append(UpLevel(widths[min(i + 1, n - 1)], widths[i], taken, temb, attention[i], i == 0, opts))
        self.up_blocks = nn.ModuleList(ups)
        self.conv_norm_out = nn.GroupNorm(groups, widths[0], eps=eps)
        self.conv_out = nn.Conv2d(widths[0], out_channels, 3, padding=1)

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None, class_timesteps: torch.Tensor | None = None
                ) -> torch.Tensor:
        emb = self.time_embedding(timesteps)  # B,4*C0
        if self.class_embedding is not None:
            emb = emb + self.class_embedding(class_timesteps)  # B,4*C0
        if self.add_embedding is not None:
            emb = emb + self.add_embedding(context)  # B,4*C0
        bias = None if context_mask is None else padding_bias(context_mask, sample)  # B,1,1,S
        x = self.conv_in(sample)  # B,C0,H,W
        skips = [x]
        for level in self.down_blocks:
            x, states = level(x, emb, context, bias)  # B,C_i,H/2^i,W/2^i
            skips += states
        x = self.mid_block(x, emb, context, bias)  # B,C_L,h,w
        for level in self.up_blocks:
            x = level(x, skips, emb, context, bias)  # B,C_i,H/2^i,W/2^i
        return self.conv_out(F.silu(self.conv_norm_out(x)))  # B,C_out,H,W


class UpDecoderLevel(nn.Module):
    """`depth` resnets without a time embedding or skips (each followed by a one-head pixel attention when
    `attention`), then a nearest x2 upsample + 3x3 conv unless last (diffusers UpDecoderBlock2D /
    AttnUpDecoderBlock2D)."""

    def __init__(self, cin: int, cout: int, depth: int, last: bool, groups: int, eps: float, attention: bool = False):
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock(cin if i == 0 else cout, cout, None, groups, eps)
                                     for i in range(depth))
        self.attentions = nn.ModuleList(SpatialSelfAttention(cout, None, groups, eps)
                                        for _ in range(depth if attention else 0))
        self.upsamplers = nn.ModuleList([] if last else [Upsample(cout, mode="conv")])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            x = resnet(x)  # B,C',H,W
            if len(self.attentions):
                x = self.attentions[i](x)  # B,C',H,W
        for up in self.upsamplers:
            x = up(x)  # B,C',2H,2W
        return x


def _vae_opts(groups: int, eps: float) -> dict:
    return {"groups": groups, "eps": eps, "dropout": 0.0, "head_dim": None, "downsample_padding": 0}


class VAEEncoder(nn.Module):
    """The convolutional encoder of the KL autoencoder (Rombach et al. 2022; diffusers' Encoder): a 3x3 conv in,
    `depth` resnets per level with a right/bottom-padded stride-2 conv between levels, the middle block
    (one-head attention), GroupNorm + SiLU + a 3x3 conv to `out` channels: [B, C, H, W] -> [B, out, H/f, W/f],
    f = 2^(levels - 1). `attention` (one flag per level) adds a one-head pixel attention after each resnet of the
    flagged levels (diffusers AttnDownEncoderBlock2D, as in the VQGAN)."""

    def __init__(self, channels: int, out: int, widths: list[int], depth: int, groups: int = 32, eps: float = 1e-6,
                 attention: list[bool] | None = None):
        super().__init__()
        opts = _vae_opts(groups, eps)
        n = len(widths)
        flags = attention or [False] * n
        self.conv_in = nn.Conv2d(channels, widths[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(
            DownLevel(widths[max(i - 1, 0)], widths[i], depth, None, flags[i], i == n - 1, opts) for i in range(n))
        self.mid_block = MidBlock(widths[-1], None, opts)
        self.conv_norm_out = nn.GroupNorm(groups, widths[-1], eps=eps)
        self.conv_out = nn.Conv2d(widths[-1], out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)  # B,C0,H,W
        for level in self.down_blocks:
            x, _ = level(x, None)  # B,C_i,H/2^i,W/2^i
        x = self.mid_block(x, None)  # B,C_L,h,w
        return self.conv_out(F.silu(self.conv_norm_out(x)))  # B,out,h,w


class VAEDecoder(nn.Module):
    """The mirror of `VAEEncoder` (diffusers' Decoder): a 3x3 conv from `latent` to widths[-1] channels, the middle
    block, `depth` + 1 resnets per level from the widest, nearest x2 + 3x3 conv between levels, GroupNorm + SiLU +
    a 3x3 conv to `channels`: [B, latent, h, w] -> [B, channels, h*f, w*f]. `attention` flags the levels in the
    encoder's order (narrowest first) whose resnets are each followed by a one-head pixel attention."""

    def __init__(self, latent: int, channels: int, widths: list[int], depth: int, groups: int = 32,
                 eps: float = 1e-6, attention: list[bool] | None = None):
        super().__init__()
        rev, flags = widths[::-1], (attention or [False] * len(widths))[::-1]
        self.conv_in = nn.Conv2d(latent, rev[0], 3, padding=1)
        self.mid_block = MidBlock(rev[0], None, _vae_opts(groups, eps))
        self.up_blocks = nn.ModuleList(UpDecoderLevel(rev[max(i - 1, 0)], rev[i], depth + 1, i == len(rev) - 1,
                                                      groups, eps, flags[i]) for i in range(len(rev)))
        self.conv_norm_out = nn.GroupNorm(groups, widths[0], eps=eps)
        self.conv_out = nn.Conv2d(widths[0], channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z), None)  # B,C_L,h,w
        for level in self.up_blocks:
            x = level(x)  # B,C_i,2h,2w
        return self.conv_out(F.silu(self.conv_norm_out(x)))  # B,channels,H,W
