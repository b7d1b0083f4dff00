"""The ADM U-Net (Dhariwal & Nichol 2021) with GLIDE's text conditioning (Nichol et al. 2022): scale-shift
residual blocks that also down- and upsample, multi-head attention over the pixels whose keys and values are
prefixed by the projected text tokens, and GLIDE's text transformer (learned per-position padding embeddings,
pre-LN blocks, final LayerNorm) whose last token is projected and added to the timestep embedding.

unCLIP's decoder (Ramesh et al. 2022; Karlo, diffusers UNet2DConditionModel + UnCLIPTextProjModel) is the same
U-Net with `UnclipConditioning` in place of the text transformer: the CLIP image embedding (and the caption's CLIP
embedding) added to the timestep embedding, and 4 context tokens from the image embedding before the caption's
projected CLIP token states, whose padding the attention masks. Its upsamplers (diffusers UNet2DModel) are the
U-Net without attention and with additive time embeddings.

Imagen's base U-Net as NVIDIA NeMo's UNetModel builds it (Saharia et al. 2022; no official code exists) is the same
U-Net with `ImagenConditioning` (a frozen text encoder's states projected into the attention context, their
attention-pooled summary added to the timestep embedding), attentions whose queries, pixel keys/values and context
read GroupNorms of their own (NeMo's FusedCrossAttentionBlock), and convolutions between the levels (a stride-2 3x3
conv down, a 4x4 stride-2 transposed conv up) in place of resampling residual blocks. NeMo's super-resolution
U-Net (blocks/efficient_unet.py) shares `ImagenConditioning` and `TextAttention` (fused, and context-only
"cross") with it.

Contract: `ADMUNet` maps (sample [B, C_in, H, W], timesteps [B], optionally tokens and mask [B, S], class labels
[B], unCLIP's conditioning, Imagen's text states [B, S, D]) to [B, C_out, H, W], H and W divisible by
2^(levels - 1); `ADMClassifier` (the noisy-image classifier of classifier guidance) maps (sample, timesteps) to
logits [B, classes]. torch.fx traceable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmspec.blocks.attention import Attention, padding_bias
from mmspec.blocks.conv import ResnetBlock
from mmspec.blocks.pooling import AttentionPool, ScorePooling
from mmspec.blocks.positions import TimestepEmbedding
from mmspec.blocks.sampling import Downsample, Upsample
from mmspec.blocks.transformer import Block


class TextAttention(nn.Module):
    """x + out(attention(GroupNorm(x))) over the H*W positions, `channels // head_dim` heads; with a text context
    [B, S, D], its projections (`encoder_kv`: D -> 2C, keys then values; with `split_kv` two, `add_k_proj` and
    `add_v_proj`, as diffusers' SimpleCrossAttn names them) come before the pixels' own keys and values (GLIDE).
    `separate_norms` (NeMo's FusedCrossAttentionBlock, Imagen): the pixels' keys and values read a GroupNorm of
    their own (`norm_self`), and the context is group-normed over its D channels and S positions (`norm_context`)
    before its projection. `pixel_kv=False` (NeMo's CrossAttentionBlock): the keys and values are the context's
    only, projected by the attention's own k and v (D -> C); the context is then required."""

    def __init__(self, channels: int, head_dim: int, groups: int, eps: float, context_dim: int | None,
                 split_kv: bool = False, separate_norms: bool = False, pixel_kv: bool = True):
        super().__init__()
        self.pixel_kv = pixel_kv
        self.norm = nn.GroupNorm(groups, channels, eps=eps)
        self.norm_self = nn.GroupNorm(groups, channels, eps=eps) if separate_norms and pixel_kv else None
        self.norm_context = nn.GroupNorm(groups, context_dim, eps=eps) if separate_norms and context_dim else None
        kv_dim = channels if pixel_kv else context_dim
        self.attn = Attention(channels, kv_dim, channels, channels // head_dim, channels)
        fused = context_dim and not split_kv and pixel_kv
        self.encoder_kv = nn.Linear(context_dim, 2 * channels) if fused else None
        self.add_k_proj = nn.Linear(context_dim, channels) if context_dim and split_kv else None
        self.add_v_proj = nn.Linear(context_dim, channels) if context_dim and split_kv else None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`context_mask` [B, S] (1 = attend): the context keys it zeroes are hidden (padding)."""
        b, c, h, w = x.shape
        y = self.norm(x).flatten(2).transpose(1, 2)  # B,HW,C
        if not self.pixel_kv:
            return x + self.cross(y, context, context_mask).transpose(1, 2).reshape(b, c, h, w)  # B,C,H,W
        kv = y if self.norm_self is None else self.norm_self(x).flatten(2).transpose(1, 2)  # B,HW,C
        q = self.attn.split_heads(self.attn.q(y), b, h * w)  # B,H,HW,d
        k = self.attn.split_heads(self.attn.k(kv), b, h * w)  # B,H,HW,d
        v = self.attn.split_heads(self.attn.v(kv), b, h * w)  # B,H,HW,d
        if (self.encoder_kv is not None or self.add_k_proj is not None) and context is not None:
            s = context.shape[1]
            context = self.normed(context)  # B,S,D
            if self.encoder_kv is not None:
                ek, ev = self.encoder_kv(context).chunk(2, dim=-1)  # B,S,C each
            else:
                ek, ev = self.add_k_proj(context), self.add_v_proj(context)  # B,S,C each
            k = torch.cat([self.attn.split_heads(ek, b, s), k], dim=2)  # B,H,S+HW,d
            v = torch.cat([self.attn.split_heads(ev, b, s), v], dim=2)  # B,H,S+HW,d
        bias = None
        if context_mask is not None and context is not None:
            keep = torch.cat([context_mask, context_mask.new_ones(b, h * w)], dim=1)  # B,S+HW
            bias = padding_bias(keep, y)  # B,1,1,S+HW
        y = self.attn.mix(q, k, v, bias, b, h * w)  # B,HW,C
        return x + y.transpose(1, 2).reshape(b, c, h, w)  # B,C,H,W

    def cross(self, y: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None) -> torch.Tensor:
        """The normed pixels y [B, HW, C] attending to the (group-normed) context alone -> [B, HW, C]."""
        bias = None if context_mask is None else padding_bias(context_mask, y)  # B,1,1,S
        return self.attn(y, self.normed(context), bias)  # B,HW,C

    def normed(self, context: torch.Tensor) -> torch.Tensor:
        """The context [B, S, D], group-normed over its D channels and S positions with `separate_norms`."""
        if self.norm_context is None:
            return context
        return self.norm_context(context.transpose(1, 2)).transpose(1, 2)  # B,S,D


class Step(nn.ModuleList):
    """One entry of ADM's input/output block lists: convs, residual blocks (given the time embedding) and
    attentions (given the text context and its key mask), applied in order."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResnetBlock):
                x = layer(x, emb)  # B,C',H',W'
            elif isinstance(layer, TextAttention):
                x = layer(x, context, context_mask)  # B,C,H,W
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


class UnclipConditioning(nn.Module):
    """unCLIP's decoder conditioning (diffusers UnCLIPTextProjModel; parameter names follow it): CLIP image
    embedding [B, E], the caption's CLIP embedding [B, E], its token states [B, S, E] and mask [B, S] ->
    (context [B, tokens + S, D], its key mask [B, tokens + S], the addition to the timestep embedding [B, temb]).
    The context is `tokens` tokens projected from the image embedding (one Linear to tokens * D, read as D rows of
    `tokens`), then the token states projected to D and layer-normed; the addition is both embeddings projected to
    temb. An all-zero image embedding row (the null condition of classifier-free guidance) is replaced by the
    learned `learned_classifier_free_guidance_embeddings`."""

    def __init__(self, clip_dim: int, width: int, tokens: int, temb: int):
        super().__init__()
        self.tokens = tokens
        self.learned_classifier_free_guidance_embeddings = nn.Parameter(torch.zeros(clip_dim))
        self.embedding_proj = nn.Linear(clip_dim, temb)
        self.clip_image_embeddings_project_to_time_embeddings = nn.Linear(clip_dim, temb)
        self.clip_extra_context_tokens_proj = nn.Linear(clip_dim, tokens * width)
        self.encoder_hidden_states_proj = nn.Linear(clip_dim, width)
        self.text_encoder_hidden_states_norm = nn.LayerNorm(width)

    def forward(self, image: torch.Tensor, text: torch.Tensor, states: torch.Tensor, mask: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        b = image.shape[0]
        null = (image == 0).all(dim=-1, keepdim=True)  # B,1
        image = torch.where(null, self.learned_classifier_free_guidance_embeddings, image)  # B,E
        add = self.clip_image_embeddings_project_to_time_embeddings(image) + self.embedding_proj(text)  # B,temb
        extra = self.clip_extra_context_tokens_proj(image).reshape(b, -1, self.tokens).transpose(1, 2)  # B,K,D
        states = self.text_encoder_hidden_states_norm(self.encoder_hidden_states_proj(states))  # B,S,D
        keep = None if mask is None else torch.cat([mask.new_ones(b, self.tokens), mask], dim=1)  # B,K+S
        return torch.cat([extra, states], dim=1), keep, add  # B,K+S,D; B,K+S; B,temb


class ImagenConditioning(nn.Module):
    """Imagen's text conditioning as NeMo's UNetModel and EfficientUNetModel both build it: a frozen encoder's token
    states [B, S, D] and their mask [B, S] -> (the attention context [B, S, width], or [B, S + 1, width] with
    `null_token`; its key mask; the addition to the timestep embedding [B, temb]). The padding states are zeroed
    (NeMo's T5 wrapper does it before either U-Net sees them); the context is their projection (`text_to_cond`)
    and, with `null_token`, one learned always-visible token after it. The pooled summary, with
    `pooling` "attention", is the states' softmax-score pooling over all S positions (`pool`) layer-normed and
    projected to width, with "mean" the mean of the projected states over all S positions; then LayerNorm, Linear,
    SiLU, Linear (`to_time`) to temb. The base U-Net projects to NeMo's cond_dim, the super-resolution U-Nets keep
    width = D."""

    def __init__(self, dim: int, width: int, temb: int, pooling: str = "attention", null_token: bool = False):
        super().__init__()
        self.text_to_cond = nn.Linear(dim, width)
        attention = pooling == "attention"
        self.pool = ScorePooling(dim) if attention else None
        self.pool_norm = nn.LayerNorm(dim) if attention else None
        self.pool_proj = nn.Linear(dim, width) if attention else None
        self.to_time = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.null_token = nn.Parameter(torch.randn(1, 1, width)) if null_token else None

    def forward(self, states: torch.Tensor, mask: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        if mask is not None:
            states = states * mask[..., None].type_as(states)  # B,S,D
        context = self.text_to_cond(states)  # B,S,width
        if self.pool is not None:
            pooled = self.pool_proj(self.pool_norm(self.pool(states)))  # B,width
        else:
            pooled = context.mean(dim=1)  # B,width
        if self.null_token is not None:
            b = states.shape[0]
            context = torch.cat([context, self.null_token.expand(b, -1, -1)], dim=1)  # B,S+1,width
            mask = None if mask is None else torch.cat([mask, mask.new_ones(b, 1)], dim=1)  # B,S+1
        return context, mask, self.to_time(pooled)  # B,S(+1),width; B,S(+1); B,temb


class ADMDownPath(nn.Module):
    """The timestep embedding (4 * width wide; plus, with `classes`, a learned class embedding, and with `text`,
    GLIDE's pooled text), the input blocks (`depth` scale-shift residual blocks per level, each followed by a
    `TextAttention` of `head_dim`-wide heads where attention[i]; a residual block that average-pools between
    levels) and the middle (resnet, attention, resnet): what ADM's U-Net and its noisy-image classifier share.
    `self.skips` lists the channels of the states the input blocks leave for an up path. `unclip` =
    dict(clip_dim, width, tokens) adds `UnclipConditioning` (context width `width`), `imagen` = dict(dim, width)
    `ImagenConditioning`; `scale_shift=False` gives the residual blocks additive time embeddings,
    `middle_attention=False` a middle of two residual blocks, `resample="conv"` a stride-2 3x3 conv between the
    levels (and a 4x4 stride-2 transposed conv in the up path) in place of the resampling residual blocks, and
    `separate_norms` the attentions' own GroupNorms for the pixels' keys/values and the context (NeMo)."""

    def __init__(self, channels: int, width: int, mult: list[int], depth: int, attention: list[bool], *,
                 head_dim: int = 64, groups: int = 32, eps: float = 1e-5, dropout: float = 0.0,
                 text: dict | None = None, classes: int | None = None, unclip: dict | None = None,
                 imagen: dict | None = None, scale_shift: bool = True, middle_attention: bool = True,
                 resample: str = "resblock", separate_norms: bool = False):
        super().__init__()
        temb = 4 * width
        self.time_embedding = TimestepEmbedding(width, temb, True, 0.0)
        self.text = GlideText(**text, temb=temb) if text else None
        self.unclip = UnclipConditioning(**unclip, temb=temb) if unclip else None
        self.imagen = ImagenConditioning(**imagen, temb=temb) if imagen else None
        self.label_emb = nn.Embedding(classes, temb) if classes else None
        context = text["width"] if text else unclip["width"] if unclip else imagen["width"] if imagen else None
        self.opts = {"temb": temb, "groups": groups, "eps": eps, "dropout": dropout, "head_dim": head_dim,
                     "context": context, "time_norm": "scale_shift" if scale_shift else "default",
                     "resample": resample, "separate_norms": separate_norms}
        ch = width * mult[0]
        self.input_blocks = nn.ModuleList([Step([nn.Conv2d(channels, ch, 3, padding=1)])])
        self.skips = [ch]
        for level, m in enumerate(mult):
            for _ in range(depth):
                layers: list[nn.Module] = [self.res(ch, width * m)]
                ch = width * m
                if attention[level]:
                    layers.append(self.attn(ch))
                self.input_blocks.append(Step(layers))
                self.skips.append(ch)
            if level < len(mult) - 1:
                self.input_blocks.append(Step([self.downsample(ch)]))
                self.skips.append(ch)
        self.middle_block = Step([self.res(ch, ch), *([self.attn(ch)] if middle_attention else []),
                                  self.res(ch, ch)])
        self.channels = ch

    def res(self, cin: int, cout: int, resample: str | None = None) -> ResnetBlock:
        o = self.opts
        return ResnetBlock(cin, cout, o["temb"], o["groups"], o["eps"], o["dropout"], o["time_norm"], resample=resample)

    def downsample(self, channels: int) -> nn.Module:
        return Downsample(channels) if self.opts["resample"] == "conv" else self.res(channels, channels, "down")

    def upsample(self, channels: int) -> nn.Module:
        if self.opts["resample"] == "conv":
            return Upsample(channels, mode="transpose")
        return self.res(channels, channels, "up")

    def attn(self, channels: int) -> TextAttention:
        o = self.opts
        return TextAttention(channels, o["head_dim"], o["groups"], o["eps"], o["context"], self.unclip is not None,
                             o["separate_norms"])

    def down(self, sample: torch.Tensor, timesteps: torch.Tensor, tokens: torch.Tensor | None = None,
             mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
             clip: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
             states: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor, tuple]:
        """(middle output, the input blocks' states, the embedding, (the text context, its key mask)). `clip`:
        unCLIP's (image embedding, caption embedding, caption token states), `states` Imagen's text encoder states,
        `mask` the caption's."""
        emb = self.time_embedding(timesteps)  # B,4W
        if self.label_emb is not None and labels is not None:
            emb = emb + self.label_emb(labels)  # B,4W
        context, keep = None, None
        if self.text is not None and tokens is not None:
            context, pooled = self.text(tokens, mask)  # B,S,D; B,4W
            emb = emb + pooled  # B,4W
        if self.unclip is not None and clip is not None:
            context, keep, added = self.unclip(*clip, mask)  # B,K+S,D; B,K+S; B,4W
            emb = emb + added  # B,4W
        if self.imagen is not None and states is not None:
            context, keep, added = self.imagen(states, mask)  # B,S,K; B,S; B,4W
            emb = emb + added  # B,4W
        x, skips = sample, []
        for step in self.input_blocks:
            x = step(x, emb, context, keep)  # B,C_i,H_i,W_i
            skips.append(x)
        return self.middle_block(x, emb, context, keep), skips, emb, (context, keep)  # B,C_L,h,w


class ADMUNet(ADMDownPath):
    """`ADMDownPath`, then the mirrored up path (depth + 1 residual blocks per level on the concatenated skip
    states, each followed by an attention where attention[i]; a residual block that nearest-upsamples between
    levels) and GroupNorm, SiLU and a 3x3 conv out to `out_channels`. `text` = dict(vocab, length, width, layers,
    heads, padding) adds GLIDE's text transformer, `classes` ADM's class embedding, `unclip` unCLIP's
    conditioning, `imagen` Imagen's."""

    def __init__(self, channels: int, out_channels: int, width: int, mult: list[int], depth: int,
                 attention: list[bool], **kwargs):
        super().__init__(channels, width, mult, depth, attention, **kwargs)
        ch, skips = self.channels, list(self.skips)
        self.output_blocks = nn.ModuleList()
        for level in reversed(range(len(mult))):
            for i in range(depth + 1):
                layers = [self.res(ch + skips.pop(), width * mult[level])]
                ch = width * mult[level]
                if attention[level]:
                    layers.append(self.attn(ch))
                if level and i == depth:
                    layers.append(self.upsample(ch))
                self.output_blocks.append(Step(layers))
        self.out_norm = nn.GroupNorm(self.opts["groups"], ch, eps=self.opts["eps"])
        self.out_conv = nn.Conv2d(ch, out_channels, 3, padding=1)

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor, tokens: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                clip: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                states: torch.Tensor | None = None) -> torch.Tensor:
        x, skips, emb, (context, keep) = self.down(sample, timesteps, tokens, mask, labels, clip, states)  # B,C_L,h,w
        for step in self.output_blocks:
            x = step(torch.cat([x, skips.pop()], dim=1), emb, context, keep)  # B,C_i,H_i,W_i
        return self.out_conv(F.silu(self.out_norm(x)))  # B,C_out,H,W


class ADMClassifier(ADMDownPath):
    """ADM's noisy-image classifier (EncoderUNetModel with attention pooling): `ADMDownPath` on (x_t, t), then
    GroupNorm, SiLU and attention pooling of the lowest-resolution map (`positions` = its h * w) to `classes`
    logits: [B, C, H, W], [B] -> [B, classes]."""

    def __init__(self, channels: int, classes: int, positions: int, width: int, mult: list[int], depth: int,
                 attention: list[bool], *, head_dim: int = 64, groups: int = 32, eps: float = 1e-5,
                 dropout: float = 0.0):
        super().__init__(channels, width, mult, depth, attention, head_dim=head_dim, groups=groups, eps=eps,
                         dropout=dropout)
        self.out_norm = nn.GroupNorm(groups, self.channels, eps=eps)
        self.pool = AttentionPool(positions, self.channels, self.channels // head_dim, classes)

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        x, _, _, _ = self.down(sample, timesteps)  # B,C_L,h,w
        return self.pool(F.silu(self.out_norm(x)))  # B,classes
