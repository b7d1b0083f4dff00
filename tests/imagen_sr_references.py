"""Reference of Imagen's super-resolution U-Nets (T2I-14; specs/imagen_sr.yaml): a torch rebuild of NVIDIA NeMo's
EfficientUNetModel (nemo/collections/multimodal/modules/imagen/diffusionmodules/nets.py, blocks.py,
attention.py, embs.py at NeMo commit 6aed959726~1, the last one with Imagen), written from reading that code;
the module and parameter names are NeMo's, so a NeMo checkpoint's state dict loads into it. NeMo's apex
GroupNorm is torch's (32 groups, eps 1e-5) and its attention the plain (non-flash) masked softmax; gradient
checkpointing and the "stable" attention's gradient scaling do not change the forward pass.

`sr256()` / `sr1024()` build the configs examples/multimodal/text_to_image/imagen/conf/sr256-600m.yaml and
sr1024-600m.yaml with noise-conditioning augmentation (the trainer's `noise_cond_aug: True`) and T5 states of
`text_dim` channels. `mmspec_state_dict` renames (and splits) a rebuild's state dict into the efficient_unet
encoder's names."""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

SR256 = {"embed_dim": 128, "image_size": 256, "channels": 3, "channel_mult": [1, 2, 4, 8, 8], "num_attn_heads": 8,
         "per_head_channels": 64, "attention_type": "fused", "atnn_enabled_at": [0, 0, 0, 1, 1],
         "feature_pooling_type": "attention", "stride": 2, "num_resblocks": [2, 4, 8, 8, 8],
         "learned_sinu_pos_emb_dim": 0, "use_null_token": False, "init_conv_kernel_size": 3, "scale_shift_norm": True,
         "skip_connection_scaling": True}
"""NeMo's sr256-600m.yaml `unet` section (stable/flash attention and checkpointing left out: forward-neutral)."""
SR1024 = {**SR256, "image_size": 1024, "attention_type": "cross"}
"""sr1024-600m.yaml: the same but cross-attention (text keys only) and 1024 pixels."""
T5_XXL = 4096
"""The T5-XXL (v1.1) states' width the paper conditions on; NeMo's configs give `conditioning.embed_dim: 1024`."""


def _gn(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, c)


class FixedSinusoid(nn.Module):
    """[cos(t f_i), sin(t f_i)], f_i = 10000^(-i / (dim/2)); a zero column for an odd dim."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        f = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        a = t[:, None].float() * f[None]
        out = torch.cat([a.cos(), a.sin()], dim=-1)
        return F.pad(out, (0, 1)) if self.dim % 2 else out


class LearnedSinusoid(nn.Module):
    """[t, sin(2 pi t w), cos(2 pi t w)] with dim/2 learned w."""

    def __init__(self, dim: int):
        super().__init__()
        self.weights = nn.Parameter(torch.randn(dim // 2))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = t[:, None].float()
        a = t * self.weights[None] * 2 * math.pi
        return torch.cat([t, a.sin(), a.cos()], dim=-1)


def _embedding(embed_dim: int, learned: int, out: int) -> nn.Sequential:
    sinusoid, width = (LearnedSinusoid(learned), learned + 1) if learned else (FixedSinusoid(embed_dim), embed_dim)
    return nn.Sequential(sinusoid, nn.Linear(width, out), nn.SiLU(), nn.Linear(out, out))


def masked_attention(q, k, v, heads: int, mask=None):
    """q [B, C, T], k/v [B, C, S] split into heads of C/heads channels; mask [B, T, S] bool (True = attend):
    softmax(q.k / sqrt(d)) with blocked logits at -inf (rows with nothing to attend give 0) -> [B, C, T]."""
    b, c, t = q.shape
    d = c // heads
    q, k, v = (x.reshape(b * heads, d, -1) for x in (q, k, v))
    w = torch.einsum("nct,ncs->nts", q, k) / math.sqrt(d)
    if mask is not None:
        w = w.masked_fill(~mask.repeat_interleave(heads, dim=0), float("-inf"))
    w = torch.softmax(w, dim=-1).nan_to_num()
    return torch.einsum("nts,ncs->nct", w, v).reshape(b, c, t)


def _heads(c: int, heads: int, per_head: int) -> int:
    return heads if per_head == -1 else c // per_head


class SelfAttentionBlock(nn.Module):
    def __init__(self, c: int, heads: int, per_head: int):
        super().__init__()
        self.heads = _heads(c, heads, per_head)
        self.norm, self.qkv, self.proj_out = _gn(c), nn.Conv1d(c, 3 * c, 1), nn.Conv1d(c, c, 1)

    def forward(self, x):
        b, c, *sp = x.shape
        x = x.reshape(b, c, -1)
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=1)
        return (x + self.proj_out(masked_attention(q, k, v, self.heads))).reshape(b, c, *sp)


class CrossAttentionBlock(nn.Module):
    """Text keys only (`fused=False`) or the pixels' keys (norm_self, kv_self) followed by the text's."""

    def __init__(self, c: int, context_dim: int, heads: int, per_head: int, fused: bool):
        super().__init__()
        self.heads, self.fused = _heads(c, heads, per_head), fused
        self.norm, self.norm_context = _gn(c), _gn(context_dim)
        self.q = nn.Conv1d(c, c, 1)
        if fused:
            self.norm_self = _gn(c)
            self.kv_context = nn.Conv1d(context_dim, 2 * c, 1)
            self.kv_self = nn.Conv1d(c, 2 * c, 1)
        else:
            self.kv = nn.Conv1d(context_dim, 2 * c, 1)
        self.proj_out = nn.Conv1d(c, c, 1)

    def forward(self, x, context, mask):
        b, c, *sp = x.shape
        x = x.reshape(b, c, -1)
        n = x.shape[2]
        q = self.q(self.norm(x))
        ctx = self.norm_context(context.permute(0, 2, 1))
        k, v = (self.kv_context if self.fused else self.kv)(ctx).chunk(2, dim=1)
        keep = mask[:, None, :].repeat(1, n, 1).bool()
        if self.fused:
            ks, vs = self.kv_self(self.norm_self(x)).chunk(2, dim=1)
            k, v = torch.cat([ks, k], dim=2), torch.cat([vs, v], dim=2)
            keep = torch.cat([torch.ones(b, n, n, dtype=torch.bool, device=x.device), keep], dim=2)
        h = masked_attention(q, k, v, self.heads, keep)
        return (x + self.proj_out(h)).reshape(b, c, *sp)


class GEGLU(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.norm = _gn(c)
        self.net = nn.Sequential(GEGLU(c, 4 * c), nn.Dropout(0.0), nn.Linear(4 * c, c))

    def forward(self, x):
        b, c, *sp = x.shape
        x = x.reshape(b, c, -1)
        h = self.net(self.norm(x).permute(0, 2, 1)).permute(0, 2, 1)
        return (x + h).reshape(b, c, *sp)


class StackedCrossAttentionBlock(nn.Module):
    def __init__(self, c: int, context_dim: int, heads: int, per_head: int):
        super().__init__()
        self.proj_in, self.norm = nn.Conv2d(c, c, 1), _gn(c)
        self.self_attention_block = SelfAttentionBlock(c, heads, per_head)
        self.cross_attention_block = CrossAttentionBlock(c, context_dim, heads, per_head, fused=False)
        self.ff = FeedForward(c)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x, context, mask):
        h = self.self_attention_block(self.proj_in(self.norm(x)))
        h = self.ff(self.cross_attention_block(h, context, mask))
        return self.proj_out(h) + x


class EfficientResBlock(nn.Module):
    def __init__(self, cin: int, emb: int, cout: int, scale_shift: bool, skip_scaling: bool):
        super().__init__()
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(_gn(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb, 2 * cout if scale_shift else cout))
        self.out_layers = nn.Sequential(_gn(cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1))
        self.shortcut = nn.Conv2d(cin, cout, 1)
        self.scale = 1 / math.sqrt(2) if skip_scaling else 1.0

    def forward(self, x, emb):
        h = self.in_layers(x)
        e = self.emb_layers(emb)[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + e)
        return h + self.shortcut(x) * self.scale


class Level(nn.Module):
    """DBlock (`down`: conv first) or UBlock (`up`: transposed conv last)."""

    def __init__(self, cin, emb, cout, depth, kind, context_dim, heads, per_head, scale_shift, skip_scaling,
                 down=False, up=False):
        super().__init__()
        self.kind, self.down, self.up = kind, down, up
        self.blocks = nn.ModuleList(EfficientResBlock(cin if j == 0 else cout, emb, cout, scale_shift, skip_scaling)
                                    for j in range(depth))
        if kind == "self":
            self.attention_layer = SelfAttentionBlock(cout, heads, per_head)
        elif kind == "stacked":
            self.attention_layer = StackedCrossAttentionBlock(cout, context_dim, heads, per_head)
        elif kind is not None:
            self.attention_layer = CrossAttentionBlock(cout, context_dim, heads, per_head, fused=kind == "fused")
        if down:
            self.conv = nn.Conv2d(cin, cin, 4, stride=2, padding=1)
        if up:
            self.conv = nn.ConvTranspose2d(cout, cout, 4, 2, 1)

    def forward(self, x, emb, context, mask):
        if self.down:
            x = self.conv(x)
        for block in self.blocks:
            x = block(x, emb)
        if self.kind == "self":
            x = self.attention_layer(x)
        elif self.kind is not None:
            x = self.attention_layer(x, context, mask)
        return self.conv(x) if self.up else x


class EfficientUNetModel(nn.Module):
    """NeMo's EfficientUNetModel(embed_dim, image_size, ..., noise_cond_aug); forward(x, time, text_embed,
    text_mask, x_low_res, time_low_res), text_embed's padding zeroed by NeMo's T5 wrapper."""

    def __init__(self, embed_dim, image_size, channels=3, text_embed_dim=512, channel_mult=(1, 1, 2, 4, 8),
                 num_attn_heads=8, per_head_channels=64, attention_type="fused", atnn_enabled_at=(0, 0, 0, 0, 1),
                 feature_pooling_type="attention", stride=2, num_resblocks=(1, 2, 4, 8, 8),
                 learned_sinu_pos_emb_dim=16, use_null_token=False, init_conv_kernel_size=3,
                 scale_shift_norm=True, skip_connection_scaling=False, noise_cond_aug=False):
        super().__init__()
        assert stride == 2
        emb, d, n = 4 * embed_dim, text_embed_dim, len(channel_mult)
        self.n, self.pooling, self.noise_cond_aug, self.use_null_token = (n, feature_pooling_type, noise_cond_aug,
                                                                            use_null_token)
        self.time_embed = _embedding(embed_dim, learned_sinu_pos_emb_dim, emb)
        if noise_cond_aug:
            self.lowres_time_embed = _embedding(embed_dim, learned_sinu_pos_emb_dim, emb)
        if feature_pooling_type == "attention":
            pool = nn.Module()
            pool.W = nn.Linear(d, 1)
            self.attention_pooling = nn.Sequential(pool, nn.LayerNorm(d), nn.Linear(d, d))
        self.text_to_cond = nn.Linear(d, d)
        self.to_text_non_attn_cond = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, emb), nn.SiLU(), nn.Linear(emb, emb))
        if use_null_token:
            self.null_text_embedding = nn.Parameter(torch.randn(1, 1, d))
        ch = embed_dim * channel_mult[0]
        self.init_conv = nn.Conv2d(2 * channels, ch, init_conv_kernel_size, padding=init_conv_kernel_size // 2)
        self.DBlocks, self.UBlocks = nn.ModuleDict(), nn.ModuleDict()
        for i, m in enumerate(channel_mult):
            kind = attention_type if atnn_enabled_at[i] else None
            last = i == n - 1
            common = (num_resblocks[i], kind, d, num_attn_heads, per_head_channels, scale_shift_norm,
                      skip_connection_scaling)
            self.DBlocks[str(i)] = Level(ch, emb, embed_dim * m, *common, down=not last)
            self.UBlocks[str(i)] = Level(embed_dim * m, emb, ch, *common, up=not last)
            ch = embed_dim * m
        self.out = nn.Conv2d(channel_mult[0] * embed_dim, channels, 1)

    def _pool(self, text_embed):
        scorer, norm, proj = self.attention_pooling
        w = torch.softmax(scorer.W(text_embed).squeeze(-1), dim=1).unsqueeze(-1)
        return proj(norm((text_embed * w).sum(dim=1)))

    def forward(self, x, time, text_embed, text_mask, x_low_res, time_low_res=None):
        t = self.time_embed(time)
        cond = self.text_to_cond(text_embed)
        if x_low_res.shape != x.shape:
            x_low_res = F.interpolate(x_low_res, x.shape[2:], mode="bicubic")
        x = torch.cat([x, x_low_res], dim=1)
        if self.noise_cond_aug:
            t = t + self.lowres_time_embed(time_low_res)
        context, mask = cond, text_mask
        if self.use_null_token:
            b = x.shape[0]
            context = torch.cat([cond, self.null_text_embedding.repeat(b, 1, 1)], dim=1)
            mask = torch.cat([text_mask, torch.ones(b, 1, device=x.device)], dim=1)
        pooled = cond.mean(dim=-2) if self.pooling == "mean" else self._pool(text_embed)
        t = t + self.to_text_non_attn_cond(pooled)
        x = self.init_conv(x)
        feats = {}
        for i in range(self.n):
            x = self.DBlocks[str(i)](x, t, context, mask)
            if i < self.n - 1:
                feats[i] = x
        for i in reversed(range(self.n)):
            if i < self.n - 1:
                x = x + feats[i]
            x = self.UBlocks[str(i)](x, t, context, mask)
        return self.out(x)


def sr256(text_dim: int = T5_XXL) -> EfficientUNetModel:
    """The 64 -> 256 stage (sr256-600m) with noise-conditioning augmentation."""
    return EfficientUNetModel(**SR256, text_embed_dim=text_dim, noise_cond_aug=True)


def sr1024(text_dim: int = T5_XXL) -> EfficientUNetModel:
    """The 256 -> 1024 stage (sr1024-600m) with noise-conditioning augmentation."""
    return EfficientUNetModel(**SR1024, text_embed_dim=text_dim, noise_cond_aug=True)


_RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj", "out_layers.0": "norm2",
           "out_layers.2": "conv2", "shortcut": "conv_shortcut"}
_TOP = {"time_embed.0": "time_embedding", "time_embed.1": "time_embedding.linear_1",
        "time_embed.3": "time_embedding.linear_2", "lowres_time_embed.0": "aug_embedding",
        "lowres_time_embed.1": "aug_embedding.linear_1", "lowres_time_embed.3": "aug_embedding.linear_2",
        "attention_pooling.0.W": "text.pool.score", "attention_pooling.1": "text.pool_norm",
        "attention_pooling.2": "text.pool_proj", "text_to_cond": "text.text_to_cond",
        "to_text_non_attn_cond": "text.to_time", "null_text_embedding": "text.null_token",
        "init_conv": "conv_in", "out": "conv_out"}


def _attention_names(rest: str, kind: str) -> list[str]:
    """A NeMo attention tensor's name(s) inside the efficient_unet attention of `kind` (several: split on dim 0)."""
    if kind == "stacked":
        head, _, tail = rest.partition(".")
        if head == "self_attention_block":
            return [f"self_attention.{n}" for n in _attention_names(tail, "self")]
        if head == "cross_attention_block":
            return [f"cross_attention.{n}" for n in _attention_names(tail, "cross")]
        ff = {"ff.norm": ["norm_ff"], "ff.net.0.proj": ["ff.fc1", "ff.gate"], "ff.net.2": ["ff.fc2"]}
        for src, dst in ff.items():
            if rest.startswith(src + "."):
                return [f"{d}{rest[len(src):]}" for d in dst]
        return [rest]
    name, _, p = rest.rpartition(".")
    table = {"q": ["attn.q"], "kv": ["attn.k", "attn.v"], "kv_self": ["attn.k", "attn.v"], "kv_context": ["encoder_kv"],
             "proj_out": ["attn.out"], "qkv": ["attn.q", "attn.k", "attn.v"],
             "norm": ["group_norm" if kind == "self" else "norm"]}
    return [f"{d}.{p}" for d in table.get(name, [name])]


def mmspec_state_dict(model: EfficientUNetModel, kind: str) -> dict[str, torch.Tensor]:
    """The rebuild's tensors under the efficient_unet encoder's names; fused tensors split on dim 0, Conv1d
    weights [out, in, 1] squeezed to Linear's [out, in]; `kind` is the attention type."""
    out: dict[str, torch.Tensor] = {}
    for name, value in model.state_dict().items():
        m = re.fullmatch(r"(D|U)Blocks\.(\d+)\.(.*)", name)
        if m is None:
            src = next(k for k in sorted(_TOP, key=len, reverse=True) if name == k or name.startswith(k + "."))
            dsts = [_TOP[src] + name[len(src):]]
        else:
            side, level, rest = m.groups()
            prefix = f"{'down' if side == 'D' else 'up'}_blocks.{level}."
            if rest.startswith("blocks."):
                _, j, sub = rest.split(".", 2)
                src = next(k for k in _RESNET if sub.startswith(k + "."))
                dsts = [f"{prefix}resnets.{j}.{_RESNET[src]}{sub[len(src):]}"]
            elif rest.startswith("conv."):
                dsts = [prefix + ("downsample." if side == "D" else "upsample.conv.") + rest[5:]]
            else:
                dsts = [prefix + "attention." + n for n in _attention_names(rest.split(".", 1)[1], kind)]
        if name.endswith(".weight") and value.dim() == 3:  # a Conv1d's [out, in, 1]
            value = value[..., 0]
        for dst, part in zip(dsts, value.chunk(len(dsts), dim=0), strict=True):
            out[dst] = part
    return out
