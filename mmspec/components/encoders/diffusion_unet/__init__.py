"""Diffusion U-Net denoiser (DDPM, Ho et al. 2020; diffusers UNet2DModel; with a context, latent diffusion's
text-conditioned UNet2DConditionModel; with a pooled context, a padding mask, a low-resolution image and an
augmentation level, Imagen's base and super-resolution U-Nets as DeepFloyd IF writes them): noisy image (or
latent) and timestep in, the predicted noise out, composed from `mmspec.blocks.diffusion`. `--weights` reads a
diffusers checkpoint with `layout: diffusers`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmspec.components.common import mask_of, require, sequence_of
from mmspec.components.examples import TEXT, text_encoder
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, PositiveInt, Probability, Ref
from mmspec.spec.layout import Rule
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_X_T = {"x_t": {"type": "image", "channels": 3, "height": 8, "width": 8},
        "t": {"type": "scalar", "dtype": "int64", "high": 1000}}
DIFFUSION_UNET_EXAMPLES = (
    Example(_X_T, {"input": "x_t", "timestep": "t", "widths": [4, 8], "depth": 1, "attention": [False, True],
                   "groups": 2, "downsample_padding": 0}, name="ddpm"),
    Example({**_X_T, "x_t": {"type": "image", "channels": 2, "height": 4, "width": 4}},
            {"input": "x_t", "timestep": "t", "widths": [4], "depth": 2, "attention": [True], "head_dim": 2,
             "groups": 2, "out_channels": 1, "flip_sin_to_cos": True, "freq_shift": 0}, name="one_level"),
    Example({**_X_T, "text": {"type": "sequence", "dim": 6, "length": 3}},
            {"input": "x_t", "timestep": "t", "context": "text", "widths": [4, 8], "depth": 1,
             "attention": [True, False], "heads": 2, "groups": 2, "flip_sin_to_cos": True, "freq_shift": 0},
            name="cross_attention"),
    Example({**_X_T, "low": {"type": "image", "channels": 3, "height": 4, "width": 4},
             "aug": {"type": "scalar", "dtype": "int64", "high": 1000}, "text": TEXT},
            {"input": "x_t", "timestep": "t", "context": "words.sequence", "context_mask": "text", "pooled_heads": 2,
             "low_res": "low", "aug_level": "aug", "widths": [4, 8], "depth": [1, 2], "attention": [False, True],
             "heads": 2, "groups": 2, "flip_sin_to_cos": True, "freq_shift": 0},
            nodes={"encoders": {"words": text_encoder(pool=None)}}, name="super_resolution"),
)

_ATTENTION_RENAMES = (("to_q", "attn.q"), ("to_k", "attn.k"), ("to_v", "attn.v"), ("to_out.0", "attn.out"))
DIFFUSERS_UNET = (
    *(Rule(f"{{a*}}.attentions.{{i}}.{src}.{{p}}", f"{{a*}}.attentions.{{i}}.{dst}.{{p}}")
      for src, dst in _ATTENTION_RENAMES),  # pixel self-attention
    *(Rule(f"{{a*}}.{src}.{{p}}", f"{{a*}}.{dst.removeprefix('attn.')}.{{p}}")
      for src, dst in _ATTENTION_RENAMES),  # attn1 / attn2 of the cross-attention transformer blocks
    Rule("{a*}.ff.net.0.proj.{p}", ("{a*}.ff.fc1.{p}", "{a*}.ff.gate.{p}")),  # GEGLU: value half, then gate half
    Rule("{a*}.ff.net.2.{p}", "{a*}.ff.fc2.{p}"),
    Rule("{name*}", "{name*}"),
)


def _conv(cin: int, cout: int, kernel: int) -> int:
    return cin * cout * kernel * kernel + cout


def _resnet(cin: int, cout: int, temb: int) -> int:
    """blocks.conv.ResnetBlock with a time embedding: two GroupNorms, two 3x3 convs, the time projection and a 1x1
    shortcut when the width changes."""
    shortcut = _conv(cin, cout, 1) if cin != cout else 0
    return 2 * cin + _conv(cin, cout, 3) + temb * cout + cout + 2 * cout + _conv(cout, cout, 3) + shortcut


def _attention(c: int, context: int | None) -> int:
    """blocks.diffusion.SpatialSelfAttention (GroupNorm and four c x c projections with biases) or, with a context
    width, SpatialTransformer: GroupNorm, 1x1 convs in and out, three LayerNorms, self- and cross-attention (bias on
    the output projection only) and a 4x GEGLU feed-forward."""
    if context is None:
        return 2 * c + 4 * (c * c + c)
    attn1, attn2 = 4 * c * c + c, 2 * c * c + 2 * context * c + c
    return 2 * c + 2 * (c * c + c) + 3 * 2 * c + attn1 + attn2 + (c * 8 * c + 8 * c) + (4 * c * c + c)


def _text_time(context: int, temb: int) -> int:
    """blocks.diffusion.TextTimeEmbedding: two LayerNorms, the pooling's position and q/k/v, the projection."""
    return 2 * context + context + 3 * (context * context + context) + context * temb + temb + 2 * temb


@register("encoders", examples=DIFFUSION_UNET_EXAMPLES)
class DiffusionUNetEncoder(ComponentConfig):
    """Noisy image x_t [batch, C, H, W] and timestep [batch] -> `eps` [batch, out_channels, H, W] (the predicted
    noise). Sinusoidal timestep embedding (widths[0] channels) -> Linear -> SiLU -> Linear (4 * widths[0]);
    a 3x3 conv in; per level `depth` GroupNorm + SiLU residual blocks that add the time embedding, each followed
    by self-attention over the pixels where `attention` says so, and a stride-2 3x3 conv between levels; a middle
    block (resnet, attention, resnet); the mirrored up path with depth + 1 blocks per level, each on its input
    concatenated with the matching down-path state, nearest x2 + 3x3 conv between levels; GroupNorm, SiLU and a
    3x3 conv out."""

    type: Literal["diffusion_unet"]
    input: Ref
    """The noisy image x_t (an image modality)."""
    timestep: Ref
    """The diffusion timestep, one per example (a scalar modality)."""
    context: Ref | None = None
    """A sequence [batch, S, D] (a text encoder's states): the attention levels become cross-attention transformer
    blocks (self-attention, cross-attention to the context, GEGLU feed-forward; latent diffusion)."""
    context_mask: Ref | None = None
    """The context's padding, [batch, S] with 1 = token (a bundle's `mask`, e.g. a tokens modality with
    `mask: true`): the cross-attention leaves padded keys out (diffusers `encoder_attention_mask`)."""
    pooled_heads: PositiveInt | None = None
    """Add the context, attention-pooled with this many heads (LayerNorm, pooling, Linear, LayerNorm), to the time
    embedding: Imagen's pooled text embedding (diffusers addition_embed_type "text", DeepFloyd IF)."""
    low_res: Ref | None = None
    """A low-resolution image (super-resolution): bilinearly resized to the input's size and concatenated to it on
    the channels."""
    aug_level: Ref | None = None
    """The augmentation level of `low_res`, one integer per example (a scalar modality), embedded like the
    timestep and added to the time embedding (noise-conditioning augmentation; diffusers class_embed_type
    "timestep"). While training the module noises `low_res` itself: sqrt(abar_a) * low_res + sqrt(1 - abar_a) * noise
    with the cosine schedule over `aug_steps` levels; exported (eval) graphs take the already noised image."""
    aug_steps: PositiveInt = 1000
    """Levels of the augmentation's cosine (squaredcos_cap_v2) schedule."""
    heads: PositiveInt = 8
    """Heads of the cross-attention transformer blocks (with `context`; Stable Diffusion v1: 8)."""
    widths: list[PositiveInt] = Field(default=[128, 256, 256, 256], min_length=1)
    """Channels per level, full resolution first (diffusers `block_out_channels`)."""
    depth: PositiveInt | list[PositiveInt] = 2
    """Residual blocks per down level, or one count per level (diffusers `layers_per_block`); up levels have one
    more."""
    attention: list[bool] = [False, True, False, False]
    """Per level: self-attention after each residual block (the up path mirrors it); DDPM CIFAR-10 at 16x16."""
    head_dim: PositiveInt | None = None
    """Attention head width (heads = channels / head_dim); none: one head of all channels (DDPM)."""
    out_channels: PositiveInt | None = None
    """Predicted channels; none: the image's."""
    groups: PositiveInt = 32
    """GroupNorm groups; must divide every width."""
    eps: PositiveFloat = 1e-6
    dropout: Probability = 0.0
    flip_sin_to_cos: bool = False
    """Timestep sinusoid cos first (diffusers' default) instead of sin first (DDPM)."""
    freq_shift: float = 1.0
    """Sinusoid frequencies 10000^(-i / (widths[0]/2 - freq_shift)); DDPM 1, diffusers' default 0."""
    downsample_padding: Literal[0, 1] = 1
    """1: the stride-2 convs pad 1 on every side; 0: one row and column on the right and bottom only (DDPM)."""

    weight_layouts = {"diffusers": DIFFUSERS_UNET}  # diffusers UNet2DModel, prefix ''

    def references(self) -> dict[str, str]:
        refs = {"input": self.input, "timestep": self.timestep}
        for port in ("context", "context_mask", "low_res", "aug_level"):
            if getattr(self, port) is not None:
                refs[port] = getattr(self, port)
        return refs

    def _depths(self) -> list[int]:
        return [self.depth] * len(self.widths) if isinstance(self.depth, int) else list(self.depth)

    def _in_channels(self, inputs: dict[str, Bundle]) -> int:
        low = inputs["low_res"]["pixels"].shape[1] if self.low_res is not None else 0
        return inputs["input"]["pixels"].shape[1] + low

    def _context_width(self, inputs: dict[str, Bundle]) -> int | None:
        if self.context is None:
            return None
        _, info = sequence_of(inputs["context"], self.context, "context")
        return info.width

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        pixels = require(inputs["input"].get("pixels"), "pixels", 4, "image")
        batch, channels, h, w = pixels.shape
        timestep = inputs["timestep"]
        t = next(iter(timestep.values())) if len(timestep) == 1 else None
        if t is None or t.rank != 1:
            raise CheckError("timestep", f"{self.timestep!r} must be one timestep per example [batch] (a scalar "
                                         f"modality)")
        if len(self.attention) != len(self.widths):
            raise CheckError("attention", f"has {len(self.attention)} entries for {len(self.widths)} levels "
                                          f"(widths); give one true/false per level")
        bad = [c for c in self.widths if c % self.groups]
        if bad:
            raise CheckError("groups", f"{self.groups} GroupNorm groups do not divide the widths {bad}")
        if isinstance(self.depth, list) and len(self.depth) != len(self.widths):
            raise CheckError("depth", f"has {len(self.depth)} entries for {len(self.widths)} levels (widths)")
        context = self._context_width(inputs)
        self._check_conditioning(inputs, batch, context)
        if context is not None and any(c % self.heads for c, a in zip(self.widths, self.attention, strict=True) if a):
            raise CheckError("heads", f"{self.heads} heads must divide the widths of the attention levels")
        if self.head_dim and any(c % self.head_dim for c, a in zip(self.widths, self.attention, strict=True) if a):
            raise CheckError("head_dim", f"head_dim {self.head_dim} must divide the widths of the attention levels")
        if self.widths[0] // 2 <= self.freq_shift:
            raise CheckError("freq_shift", f"the sinusoid of widths[0] = {self.widths[0]} has {self.widths[0] // 2} "
                                           f"frequencies, not more than freq_shift {self.freq_shift}")
        factor = 2 ** (len(self.widths) - 1)
        if not (isinstance(h, int) and isinstance(w, int)) or h % factor or w % factor:
            raise CheckError("widths", f"{len(self.widths)} levels halve the image {len(self.widths) - 1} times, so "
                                       f"height and width must divide by {factor}; {self.input!r} is {h}x{w}")
        return {"eps": TensorInfo((batch, self.out_channels or channels, h, w))}

    def _check_conditioning(self, inputs: dict[str, Bundle], batch, context: int | None) -> None:
        """The mask, the pooling, the low-resolution image and the augmentation level against their inputs."""
        if self.context_mask is not None:
            if context is None:
                raise CheckError("context_mask", "masks the context's keys; give `context` too")
            length = sequence_of(inputs["context"], self.context, "context")[1].shape[1]
            mask_of(inputs["context_mask"], self.context_mask, length)
        if self.pooled_heads is not None:
            if context is None:
                raise CheckError("pooled_heads", "pools the context; give `context` too")
            if context % self.pooled_heads:
                raise CheckError("pooled_heads", f"{self.pooled_heads} heads do not divide the context width "
                                                 f"{context}")
        if self.low_res is not None:
            require(inputs["low_res"].get("pixels"), "low_res", 4, "image")
        if self.aug_level is not None:
            level = inputs["aug_level"]
            if len(level) != 1 or next(iter(level.values())).rank != 1:
                raise CheckError("aug_level", f"{self.aug_level!r} must be one level per example [batch] (a scalar "
                                              f"modality)")

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        channels = inputs["input"]["pixels"].shape[1]
        widths, n, depths = self.widths, len(self.widths), self._depths()
        temb, context = 4 * widths[0], self._context_width(inputs)
        total = _conv(self._in_channels(inputs), widths[0], 3) + (widths[0] * temb + temb) + (temb * temb + temb)
        total += (widths[0] * temb + temb) + (temb * temb + temb) if self.aug_level is not None else 0
        total += _text_time(context, temb) if self.pooled_heads else 0
        skip = [widths[0]]
        for i, c in enumerate(widths):
            cin = widths[max(i - 1, 0)]
            total += sum(_resnet(cin if j == 0 else c, c, temb) for j in range(depths[i]))
            total += depths[i] * _attention(c, context) if self.attention[i] else 0
            total += _conv(c, c, 3) if i < n - 1 else 0
            skip += [c] * (depths[i] + (i < n - 1))
        total += 2 * _resnet(widths[-1], widths[-1], temb) + _attention(widths[-1], context)
        for i in reversed(range(n)):
            c, below = widths[i], widths[min(i + 1, n - 1)]
            total += sum(_resnet((below if j == 0 else c) + skip.pop(), c, temb) for j in range(depths[i] + 1))
            total += (depths[i] + 1) * _attention(c, context) if self.attention[i] else 0
            total += _conv(c, c, 3) if i > 0 else 0
        return total + 2 * widths[0] + _conv(widths[0], self.out_channels or channels, 3)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.diffusion_unet.module import DiffusionUNetModule

        channels = inputs["input"]["pixels"].shape[1]
        field, info = sequence_of(inputs["context"], self.context, "context") if self.context else (None, None)
        mask_field = mask_of(inputs["context_mask"], self.context_mask, info.shape[1]) if self.context_mask else None
        aug_steps = self.aug_steps if self.aug_level is not None else None
        return DiffusionUNetModule(
            field, mask_field, aug_steps, self._in_channels(inputs), self.out_channels or channels, self.widths,
            self.depth, self.attention, head_dim=self.head_dim, groups=self.groups, eps=self.eps,
            dropout=self.dropout, flip_sin_to_cos=self.flip_sin_to_cos, freq_shift=self.freq_shift,
            downsample_padding=self.downsample_padding, context_dim=self._context_width(inputs), heads=self.heads,
            pooled_heads=self.pooled_heads, class_timestep=self.aug_level is not None)
