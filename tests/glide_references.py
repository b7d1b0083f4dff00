"""GLIDE (Nichol et al. 2022) rebuilt in torch.nn from the structure of openai/glide-text2im (not on PyPI):
`Text2ImUNet` with its submodules named as the official checkpoint names them (time_embed, input_blocks.i.j,
middle_block, output_blocks, out; transformer.resblocks.i.attn.c_qkv, ...), its fused per-head q/k/v layout and
its ch^-1/4 scaling of q and k; the inpainting and super-resolution forms concatenate their extra inputs on the
channels as the official subclasses do. `to_mmspec` maps its state dict onto the `adm_unet` encoder's names."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

VOCAB = 50257  # the GPT-2 BPE vocabulary of glide_text2im's tokenizer


def _sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _heads_attention(q, k, v):
    """q [N, c, T], k/v [N, c, S] per head -> [N, c, T], both scaled by c^-1/4 as in the official code."""
    scale = 1 / math.sqrt(math.sqrt(q.shape[1]))
    weight = torch.softmax(torch.einsum("nct,ncs->nts", q * scale, k * scale), dim=-1)
    return torch.einsum("nts,ncs->nct", weight, v)


class ResBlock(nn.Module):
    def __init__(self, cin, emb, dropout, cout=None, up=False, down=False, groups=32):
        super().__init__()
        cout = cout or cin
        self.in_layers = nn.Sequential(nn.GroupNorm(groups, cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.up, self.down = up, down
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb, 2 * cout))
        self.out_layers = nn.Sequential(nn.GroupNorm(groups, cout), nn.SiLU(), nn.Dropout(dropout),
                                        nn.Conv2d(cout, cout, 3, padding=1))
        self.skip_connection = nn.Identity() if cout == cin else nn.Conv2d(cin, cout, 1)

    def _resize(self, x):
        if self.up:
            return F.interpolate(x, scale_factor=2, mode="nearest")
        return F.avg_pool2d(x, 2) if self.down else x

    def forward(self, x, emb):
        h = self._resize(self.in_layers[:-1](x))
        x = self._resize(x)
        h = self.in_layers[-1](h)
        scale, shift = self.emb_layers(emb)[..., None, None].chunk(2, dim=1)
        h = self.out_layers[0](h) * (1 + scale) + shift
        return self.skip_connection(x) + self.out_layers[1:](h)


class AttentionBlock(nn.Module):
    def __init__(self, channels, head_channels, encoder_channels, groups=32):
        super().__init__()
        self.heads = channels // head_channels
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.encoder_kv = nn.Conv1d(encoder_channels, 2 * channels, 1) if encoder_channels else None
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x, encoder_out=None):
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x).view(b, c, -1))
        ch = c // self.heads
        q, k, v = qkv.reshape(b * self.heads, 3 * ch, -1).split(ch, dim=1)
        if encoder_out is not None:
            ek, ev = self.encoder_kv(encoder_out).reshape(b * self.heads, 2 * ch, -1).split(ch, dim=1)
            k, v = torch.cat([ek, k], dim=-1), torch.cat([ev, v], dim=-1)
        a = _heads_attention(q, k, v).reshape(b, c, -1)
        return x + self.proj_out(a).reshape(b, c, h, w)


class Sequence(nn.Sequential):
    def forward(self, x, emb, encoder_out=None):
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, AttentionBlock):
                x = layer(x, encoder_out)
            else:
                x = layer(x)
        return x


class XfAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.c_qkv = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)

    def forward(self, x):
        b, s, d = x.shape
        qkv = self.c_qkv(x).view(b, s, self.heads, -1)
        q, k, v = (t.permute(0, 2, 3, 1).reshape(b * self.heads, d // self.heads, s)
                   for t in qkv.split(d // self.heads, dim=-1))
        a = _heads_attention(q, k, v).reshape(b, self.heads, -1, s).permute(0, 3, 1, 2).reshape(b, s, d)
        return self.c_proj(a)


class XfBlock(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.attn = XfAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.c_fc = nn.Linear(width, 4 * width)
        self.mlp.gelu = nn.GELU()
        self.mlp.c_proj = nn.Linear(4 * width, width)
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Text2ImUNet(nn.Module):
    """The official model's structure: `in_channels` 3 (7 inpainting, 6 super-resolution), out 6 (eps and the
    learned-variance interpolation), attention at the downsampling rates `attention_ds`."""

    def __init__(self, *, model_channels=192, channel_mult=(1, 2, 3, 4), num_res_blocks=3, attention_ds=(2, 4, 8),
                 head_channels=64, dropout=0.1, text_ctx=128, xf_width=512, xf_layers=16, xf_heads=8,
                 in_channels=3, out_channels=6, vocab=VOCAB, groups=32):
        super().__init__()
        emb = 4 * model_channels
        self.model_channels = model_channels
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        ch = model_channels * channel_mult[0]
        self.input_blocks = nn.ModuleList([Sequence(nn.Conv2d(in_channels, ch, 3, padding=1))])
        chans, ds = [ch], 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, emb, dropout, mult * model_channels, groups=groups)]
                ch = mult * model_channels
                if ds in attention_ds:
                    layers.append(AttentionBlock(ch, head_channels, xf_width, groups))
                self.input_blocks.append(Sequence(*layers))
                chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(Sequence(ResBlock(ch, emb, dropout, ch, down=True, groups=groups)))
                chans.append(ch)
                ds *= 2
        self.middle_block = Sequence(ResBlock(ch, emb, dropout, groups=groups),
                                     AttentionBlock(ch, head_channels, xf_width, groups),
                                     ResBlock(ch, emb, dropout, groups=groups))
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + chans.pop(), emb, dropout, model_channels * mult, groups=groups)]
                ch = model_channels * mult
                if ds in attention_ds:
                    layers.append(AttentionBlock(ch, head_channels, xf_width, groups))
                if level and i == num_res_blocks:
                    layers.append(ResBlock(ch, emb, dropout, ch, up=True, groups=groups))
                    ds //= 2
                self.output_blocks.append(Sequence(*layers))
        self.out = nn.Sequential(nn.GroupNorm(groups, ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1))
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList(XfBlock(xf_width, xf_heads) for _ in range(xf_layers))
        self.final_ln = nn.LayerNorm(xf_width)
        self.token_embedding = nn.Embedding(vocab, xf_width)
        self.positional_embedding = nn.Parameter(torch.randn(text_ctx, xf_width) * 0.01)
        self.transformer_proj = nn.Linear(xf_width, emb)
        self.padding_embedding = nn.Parameter(torch.randn(text_ctx, xf_width) * 0.01)

    def forward(self, x, timesteps, tokens, mask):
        xf = self.token_embedding(tokens) + self.positional_embedding[None]
        xf = torch.where(mask[..., None].bool(), xf, self.padding_embedding[None])
        for block in self.transformer.resblocks:
            xf = block(xf)
        xf = self.final_ln(xf)
        emb = self.time_embed(_sinusoid(timesteps, self.model_channels)) + self.transformer_proj(xf[:, -1])
        xf = xf.permute(0, 2, 1)
        hs, h = [], x
        for module in self.input_blocks:
            h = module(h, emb, xf)
            hs.append(h)
        h = self.middle_block(h, emb, xf)
        for module in self.output_blocks:
            h = module(torch.cat([h, hs.pop()], dim=1), emb, xf)
        return self.out(h)


def glide_base() -> Text2ImUNet:
    """The released base model (glide-text2im base.pt, the filtered 64x64 model): 385M."""
    return Text2ImUNet()


def glide_paper() -> Text2ImUNet:
    """The paper's 64x64 model (Section 4): ADM at 512 base channels and a 24-block, 2048-wide text transformer."""
    return Text2ImUNet(model_channels=512, xf_width=2048, xf_layers=24, xf_heads=32)


def glide_inpaint() -> Text2ImUNet:
    """InpaintText2ImUNet of the released base-inpaint model: x, the masked image and the mask, 7 channels in."""
    return Text2ImUNet(in_channels=7)


def glide_upsampler() -> Text2ImUNet:
    """SuperResText2ImUNet of the released upsample model (64 -> 256): x and the bilinearly upsampled low-res
    image, 6 channels in; multipliers 1, 1, 2, 2, 4, 4, two residual blocks, attention at 32, 16, 8."""
    return Text2ImUNet(channel_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2, attention_ds=(8, 16, 32), in_channels=6)


def _split_heads(w: torch.Tensor, heads: int, parts: int) -> list[torch.Tensor]:
    """A fused projection whose output rows are [head][part][channel] -> `parts` tensors of [part rows]."""
    rows = w.reshape(heads, parts, -1, *w.shape[1:])
    return [rows[:, i].reshape(-1, *w.shape[1:]) for i in range(parts)]


def to_mmspec(model: Text2ImUNet, head_channels: int = 64) -> dict[str, torch.Tensor]:
    """The reference's state dict under the `adm_unet` encoder's parameter names (no node prefix)."""
    out: dict[str, torch.Tensor] = {}
    res = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj", "out_layers.0": "norm2",
           "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
    for name, module in model.named_modules():
        if isinstance(module, AttentionBlock):
            heads = module.heads
            q, k, v = _split_heads(module.qkv.weight.squeeze(-1), heads, 3)
            qb, kb, vb = _split_heads(module.qkv.bias, heads, 3)
            for n, w, b in (("q", q, qb), ("k", k, kb), ("v", v, vb)):
                out[f"{name}.attn.{n}.weight"], out[f"{name}.attn.{n}.bias"] = w, b
            out[f"{name}.attn.out.weight"] = module.proj_out.weight.squeeze(-1)
            out[f"{name}.attn.out.bias"] = module.proj_out.bias
            out[f"{name}.norm.weight"], out[f"{name}.norm.bias"] = module.norm.weight, module.norm.bias
            if module.encoder_kv is not None:
                ek, ev = _split_heads(module.encoder_kv.weight.squeeze(-1), heads, 2)
                ekb, evb = _split_heads(module.encoder_kv.bias, heads, 2)
                out[f"{name}.encoder_kv.weight"] = torch.cat([ek, ev])
                out[f"{name}.encoder_kv.bias"] = torch.cat([ekb, evb])
        elif isinstance(module, ResBlock):
            for p, t in module.named_parameters():
                sub, leaf = p.rsplit(".", 1)
                out[f"{name}.{res[sub]}.{leaf}"] = t
        elif isinstance(module, XfBlock):
            i = name.rsplit(".", 1)[1]
            heads = module.attn.heads
            q, k, v = _split_heads(module.attn.c_qkv.weight, heads, 3)
            qb, kb, vb = _split_heads(module.attn.c_qkv.bias, heads, 3)
            pre = f"text.blocks.{i}"
            for n, w, b in (("q", q, qb), ("k", k, kb), ("v", v, vb)):
                out[f"{pre}.attn.{n}.weight"], out[f"{pre}.attn.{n}.bias"] = w, b
            pairs = (("attn.c_proj", "attn.out"), ("ln_1", "attn_res.norm"), ("mlp.c_fc", "ffn.fc1"),
                     ("mlp.c_proj", "ffn.fc2"), ("ln_2", "ffn_res.norm"))
            for src, dst in pairs:
                sub = module.get_submodule(src)
                out[f"{pre}.{dst}.weight"], out[f"{pre}.{dst}.bias"] = sub.weight, sub.bias
    sd = model.state_dict()
    for src, dst in (("time_embed.0", "time_embedding.linear_1"), ("time_embed.2", "time_embedding.linear_2"),
                     ("out.0", "out_norm"), ("out.2", "out_conv"), ("final_ln", "text.final_ln"),
                     ("transformer_proj", "text.transformer_proj")):
        out[f"{dst}.weight"], out[f"{dst}.bias"] = sd[f"{src}.weight"], sd[f"{src}.bias"]
    out["input_blocks.0.0.weight"], out["input_blocks.0.0.bias"] = sd["input_blocks.0.0.weight"], sd[
        "input_blocks.0.0.bias"]
    for n in ("token_embedding.weight", "positional_embedding", "padding_embedding"):
        out[f"text.{n}"] = sd[n]
    return out
