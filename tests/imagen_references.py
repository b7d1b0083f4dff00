"""Reference networks of the Imagen spec (T2I-14), built on whatever device is current, for tests/references.py and
tests/coverage/test_imagen.py. Imagen has no official code or weights.

The canonical size: transformers' T5EncoderModel at T5 v1.1-XXL (the frozen text encoder) and NVIDIA NeMo's Imagen
`UNetModel` rebuilt in torch.nn from the structure of NeMo's code (nemo/collections/multimodal/modules/imagen/
diffusionmodules/nets.py, blocks.py, attention.py, embs.py, layers.py at NVIDIA/NeMo 6aed959726~1; NeMo is not
installable next to this project's torch, and the Imagen code has since been removed from it): `NemoUNet` with its
submodules named as NeMo names them (time_embed, attention_pooling, text_to_cond, to_text_non_attn_cond,
input_blocks.i.j, middle_block, output_blocks, out; the ResBlocks' in_layers / emb_layers / out_layers, the fused
attention's norm / norm_self / norm_context / q / kv_self / kv_context / proj_out as 1x1 Conv1d, Downsample.op,
UpsampleLearnable.conv), its c^-1/4 scaling of q and k and its -inf fill of the masked context keys; configured
at base64-2b.yaml (`BASE64_2B`). `to_mmspec` maps its state dict onto the `adm_unet` encoder's names.

The `deepfloyd` variant: T5 v1.1-Large and diffusers' UNet2DConditionModel at the base U-Net's configuration
(cross-attention transformer blocks at the three lower levels and in the middle, the attention-pooled text added
to the timestep embedding: addition_embed_type "text"), as DeepFloyd IF configures it."""

from __future__ import annotations

import math

import torch
import transformers as tf
from diffusers import UNet2DConditionModel
from glide_references import ResBlock, _sinusoid
from torch import nn

T5_LARGE = {"d_model": 1024, "num_layers": 24, "num_heads": 16, "d_ff": 2816}
"""T5 v1.1-Large (the spec's default text encoder)."""
T5_XXL = {"d_model": 4096, "num_layers": 24, "num_heads": 64, "d_ff": 10240}
"""T5 v1.1-XXL (the paper's text encoder)."""


def t5_encoder(size: dict | None = None, vocab: int = 32128) -> tf.T5EncoderModel:
    """A T5 v1.1 encoder: gated-GELU feed-forward, 64-wide heads, untied from any LM head."""
    return tf.T5EncoderModel(tf.T5Config(vocab_size=vocab, d_kv=64, feed_forward_proj="gated-gelu",
                                         **(size or T5_LARGE)))


def base_unet(widths: tuple[int, ...] = (256, 512, 768, 1024), context: int = 1024, size: int = 64, depth: int = 3,
              attention: tuple[bool, ...] = (False, True, True, True), heads: int = 8, groups: int = 32,
              eps: float = 1e-5, pooled_heads: int = 64) -> UNet2DConditionModel:
    """The deepfloyd variant's text-conditioned U-Net: `attention` levels as CrossAttn blocks attending to
    `context`-wide states, the text pooled by `pooled_heads` heads into the time embedding. `attention_head_dim` is
    diffusers' historical name for the number of heads."""
    return UNet2DConditionModel(
        sample_size=size, in_channels=3, out_channels=3, block_out_channels=widths,
        layers_per_block=depth,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        cross_attention_dim=context, attention_head_dim=heads, norm_num_groups=groups, norm_eps=eps,
        addition_embed_type="text", addition_embed_type_num_heads=pooled_heads)


def deepfloyd() -> nn.ModuleList:
    """The deepfloyd variant: T5 v1.1-Large encoder + the 256-channel base UNet2DConditionModel."""
    return nn.ModuleList([t5_encoder(), base_unet()])


BASE64_2B = {"embed_dim": 512, "channel_mult": (1, 2, 3, 4), "num_res_blocks": 3, "attention_ds": (2, 4, 8),
             "per_head_channels": 64, "cond_dim": 2048}
"""NeMo's base64-2b.yaml U-Net: attention_resolutions 8, 16, 32 of image_size 64 are the downsampling rates 8, 4, 2;
scale_shift_norm, fused attention, attention pooling, unlearned time sinusoid, resblock_updown false with
resample_with_conv (a stride-2 conv down, a transposed conv up), 3x3 first and last convs, no dropout."""


class SinusoidEmbedding(nn.Module):
    """NeMo's UnLearnedSinusoidalPosEmb: [cos, sin] of t * 10000^(-i / (dim/2))."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, t):
        return _sinusoid(t, self.dim)


class AttentionPooling(nn.Module):
    """NeMo's SelfAttentionPooling: a softmax over the S positions of a learned score W(x), no mask."""

    def __init__(self, dim):
        super().__init__()
        self.W = nn.Linear(dim, 1)

    def forward(self, x):
        weights = torch.softmax(self.W(x).squeeze(-1), dim=1).unsqueeze(-1)
        return (x * weights).sum(dim=1)


class FusedCrossAttention(nn.Module):
    """NeMo's FusedCrossAttentionBlock: queries from norm(x), the pixels' keys/values from norm_self(x), the
    context's from norm_context(context) over [B, D, S], the context keys appended after the pixels'; c^-1/4 on q
    and k, the masked context keys filled with -inf."""

    def __init__(self, channels, context_dim, head_channels, groups=32):
        super().__init__()
        self.heads = channels // head_channels
        self.norm = nn.GroupNorm(groups, channels)
        self.norm_context = nn.GroupNorm(groups, context_dim)
        self.norm_self = nn.GroupNorm(groups, channels)
        self.q = nn.Conv1d(channels, channels, 1)
        self.kv_context = nn.Conv1d(context_dim, 2 * channels, 1)
        self.kv_self = nn.Conv1d(channels, 2 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x, context, mask):
        b, c, h, w = x.shape
        x = x.reshape(b, c, -1)
        q = self.q(self.norm(x))
        k_self, v_self = self.kv_self(self.norm_self(x)).chunk(2, dim=1)
        k_ctx, v_ctx = self.kv_context(self.norm_context(context.permute(0, 2, 1))).chunk(2, dim=1)
        k, v = torch.cat([k_self, k_ctx], dim=2), torch.cat([v_self, v_ctx], dim=2)
        keep = torch.cat([torch.ones(b, h * w, dtype=torch.bool, device=x.device), mask.bool()], dim=1)
        n, ch = b * self.heads, c // self.heads
        scale = 1 / math.sqrt(math.sqrt(ch))
        weight = torch.einsum("nct,ncs->nts", (q * scale).reshape(n, ch, -1), (k * scale).reshape(n, ch, -1))
        weight = weight.masked_fill(~keep.repeat_interleave(self.heads, dim=0)[:, None, :], float("-inf"))
        weight = torch.softmax(weight, dim=-1).nan_to_num()
        a = torch.einsum("nts,ncs->nct", weight, v.reshape(n, ch, -1)).reshape(b, c, -1)
        return (x + self.proj_out(a)).reshape(b, c, h, w)


class Downsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class UpsampleLearnable(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.ConvTranspose2d(channels, channels, 4, 2, 1)

    def forward(self, x):
        return self.conv(x)


class ConditionalSequential(nn.Sequential):
    def forward(self, x, emb, context, mask):
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, FusedCrossAttention):
                x = layer(x, context, mask)
            else:
                x = layer(x)
        return x


class NemoUNet(nn.Module):
    """NeMo's UNetModel for Imagen's 64x64 base stage (attention_type fused, feature_pooling_type attention,
    learned_sinu_pos_emb_dim 0, use_null_token false, scale_shift_norm true, resblock_updown false,
    resample_with_conv true): x [B, 3, H, W], t [B], text_embed [B, S, text_embed_dim] (padding zeroed by NeMo's
    T5 wrapper), text_mask [B, S] -> the predicted noise [B, 3, H, W]."""

    def __init__(self, *, embed_dim=512, channel_mult=(1, 2, 3, 4), num_res_blocks=3, attention_ds=(2, 4, 8),
                 per_head_channels=64, cond_dim=2048, text_embed_dim=4096, channels=3, groups=32):
        super().__init__()
        emb = 4 * embed_dim
        self.time_embed = nn.Sequential(SinusoidEmbedding(embed_dim), nn.Linear(embed_dim, emb), nn.SiLU(),
                                        nn.Linear(emb, emb))
        self.attention_pooling = nn.Sequential(AttentionPooling(text_embed_dim), nn.LayerNorm(text_embed_dim),
                                               nn.Linear(text_embed_dim, cond_dim))
        self.text_to_cond = nn.Linear(text_embed_dim, cond_dim)
        self.to_text_non_attn_cond = nn.Sequential(nn.LayerNorm(cond_dim), nn.Linear(cond_dim, emb), nn.SiLU(),
                                                   nn.Linear(emb, emb))

        def res(cin, cout):
            return ResBlock(cin, emb, 0.0, cout, groups=groups)

        def attn(c):
            return FusedCrossAttention(c, cond_dim, per_head_channels, groups)

        ch = embed_dim * channel_mult[0]
        self.input_blocks = nn.ModuleList([ConditionalSequential(nn.Conv2d(channels, ch, 3, padding=1))])
        chans, ds = [ch], 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [res(ch, mult * embed_dim)]
                ch = mult * embed_dim
                if ds in attention_ds:
                    layers.append(attn(ch))
                self.input_blocks.append(ConditionalSequential(*layers))
                chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(ConditionalSequential(Downsample(ch)))
                chans.append(ch)
                ds *= 2
        self.middle_block = ConditionalSequential(res(ch, ch), attn(ch), res(ch, ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [res(ch + chans.pop(), embed_dim * mult)]
                ch = embed_dim * mult
                if ds in attention_ds:
                    layers.append(attn(ch))
                if level and i == num_res_blocks:
                    layers.append(UpsampleLearnable(ch))
                    ds //= 2
                self.output_blocks.append(ConditionalSequential(*layers))
        self.out = nn.Sequential(nn.GroupNorm(groups, ch), nn.SiLU(), nn.Conv2d(ch, channels, 3, padding=1))

    def forward(self, x, t, text_embed, text_mask):
        emb = self.time_embed(t)
        context = self.text_to_cond(text_embed)
        emb = emb + self.to_text_non_attn_cond(self.attention_pooling(text_embed))
        hs, h = [], x
        for module in self.input_blocks:
            h = module(h, emb, context, text_mask)
            hs.append(h)
        h = self.middle_block(h, emb, context, text_mask)
        for module in self.output_blocks:
            h = module(torch.cat([h, hs.pop()], dim=1), emb, context, text_mask)
        return self.out(h)


def imagen() -> nn.ModuleList:
    """The spec's canonical size: T5 v1.1-XXL encoder + NeMo's base64-2b U-Net on its 4096-wide states."""
    return nn.ModuleList([t5_encoder(T5_XXL), NemoUNet(**BASE64_2B)])


_RENAMES = (("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("emb_layers.1.", "time_emb_proj."),
            ("out_layers.0.", "norm2."), ("out_layers.3.", "conv2."), ("skip_connection.", "conv_shortcut."),
            ("op.", "conv."), ("q.", "attn.q."), ("kv_context.", "encoder_kv."),
            ("proj_out.", "attn.out."), ("time_embed.1.", "time_embedding.linear_1."),
            ("time_embed.3.", "time_embedding.linear_2."), ("attention_pooling.0.W.", "imagen.pool.score."),
            ("attention_pooling.1.", "imagen.pool_norm."), ("attention_pooling.2.", "imagen.pool_proj."),
            ("text_to_cond.", "imagen.text_to_cond."), ("to_text_non_attn_cond.", "imagen.to_time."),
            ("out.0.", "out_norm."), ("out.2.", "out_conv."))
"""NemoUNet name segments -> the adm_unet encoder's (a segment starts the name or follows a dot)."""


def to_mmspec(reference: NemoUNet) -> dict[str, torch.Tensor]:
    """The rebuild's state dict under the `adm_unet` encoder's names: 1x1 Conv1d weights squeezed to Linear ones,
    kv_self split into the attention's k and v."""
    out = {}
    for name, tensor in reference.state_dict().items():
        tensor = tensor.squeeze(-1) if tensor.dim() == 3 else tensor  # Conv1d [out, in, 1] -> Linear [out, in]
        if ".kv_self." in name:
            k, v = tensor.chunk(2, dim=0)
            out[name.replace(".kv_self.", ".attn.k.")], out[name.replace(".kv_self.", ".attn.v.")] = k, v
            continue
        for theirs, ours in _RENAMES:
            if name.startswith(theirs) or f".{theirs}" in name:
                name = ours + name[len(theirs):] if name.startswith(theirs) else name.replace(f".{theirs}", f".{ours}")
                break
        out[name] = tensor
    return out
