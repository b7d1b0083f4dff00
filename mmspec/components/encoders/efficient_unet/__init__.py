"""Imagen's Efficient U-Net (Saharia et al. 2022), the super-resolution denoiser as NVIDIA NeMo's
EfficientUNetModel builds it: noisy image, timestep, text states with their mask, the low-resolution image and
its augmentation level in, the predicted noise out; composed from `mmspec.blocks.efficient_unet`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.common import mask_of, require, sequence_of
from mmspec.components.encoders.adm_unet import attention_params, imagen_params
from mmspec.components.examples import TEXT, text_encoder
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_IMAGES = {"x_t": {"type": "image", "channels": 3, "height": 8, "width": 8},
           "t": {"type": "scalar", "dtype": "int64", "high": 1000},
           "low": {"type": "image", "channels": 3, "height": 4, "width": 4},
           "aug": {"type": "scalar", "dtype": "int64", "high": 1000}}
_BASE = {"input": "x_t", "timestep": "t", "low_res": "low", "width": 4, "mult": [1, 2], "depth": [1, 2],
         "attention": [False, True], "heads": 2, "head_dim": None, "groups": 2}
EFFICIENT_UNET_EXAMPLES = (
    Example({**_IMAGES, "text": TEXT},
            {**_BASE, "context": "words.sequence", "context_mask": "text", "aug_level": "aug"},
            nodes={"encoders": {"words": text_encoder(pool=None)}}, name="fused"),
    Example({**_IMAGES, "states": {"type": "sequence", "dim": 6, "length": 3}},
            {**_BASE, "context": "states", "attention_type": "cross", "head_dim": 4, "pooling": "mean",
             "learned_sinusoid": 4, "null_token": True, "scale_shift": False, "scale_skip": False,
             "conv_in_kernel": 7},
            name="cross_mean_learned"),
    Example({**_IMAGES, "states": {"type": "sequence", "dim": 4, "length": 3}},
            {**_BASE, "context": "states", "attention_type": "stacked", "aug_level": "aug", "mult": [1, 1, 2],
             "depth": 1, "attention": [True, False, True]},
            name="stacked"),
    Example({**_IMAGES, "states": {"type": "sequence", "dim": 4, "length": 3}},
            {**_BASE, "context": "states", "attention_type": "self", "depth": 1}, name="self"),
)


def _conv(cin: int, cout: int, kernel: int) -> int:
    return cin * cout * kernel * kernel + cout


def _resnet(cin: int, cout: int, temb: int, scale_shift: bool) -> int:
    """blocks.conv.ResnetBlock with a time embedding (doubled for scale-shift) and a 1x1 conv shortcut."""
    t = 2 * cout if scale_shift else cout
    return 2 * cin + _conv(cin, cout, 3) + temb * t + t + 2 * cout + _conv(cout, cout, 3) + _conv(cin, cout, 1)


def _attention(kind: str, c: int, d: int) -> int:
    """blocks.efficient_unet attentions: self (q/k/v/out); fused and cross, blocks.adm.TextAttention with separate
    norms, with and without the pixels' keys and values; stacked: 1x1 convs around self, cross and a GroupNorm +
    GEGLU feed-forward."""
    self_attn = 2 * c + 4 * (c * c + c)
    cross = attention_params(c, d, separate_norms=True, pixel_kv=False)
    if kind == "self":
        return self_attn
    if kind != "stacked":
        return attention_params(c, d, separate_norms=True, pixel_kv=kind == "fused")
    ff = 2 * c + 2 * (c * 4 * c + 4 * c) + 4 * c * c + c
    return 2 * c + 2 * (c * c + c) + self_attn + cross + ff


def _time(width: int, learned: int, temb: int) -> int:
    sinusoid = (learned // 2 + (learned + 1) * temb + temb) if learned else width * temb + temb
    return sinusoid + temb * temb + temb


@register("encoders", examples=EFFICIENT_UNET_EXAMPLES)
class EfficientUNetEncoder(ComponentConfig):
    """Noisy image x_t [batch, C, H, W], timestep [batch], text states [batch, S, D] (with their padding mask), the
    low-resolution image [batch, C, h, w] (bicubically resized to H x W and concatenated: 2C channels in) and its
    augmentation level [batch] -> `eps` [batch, C, H, W]. Time embedding (4 * width): the timestep's and the
    augmentation level's sinusoid MLPs plus the pooled text's MLP. A 3x3 conv in; per level (width * mult[i]
    channels) a 4x4 stride-2 conv down (all levels but the deepest, before the blocks), depth[i] residual blocks
    (1x1 conv shortcuts scaled by 1/sqrt(2)) and, where `attention`, one text attention; the mirrored up path adds
    each level's down output, runs depth[i] blocks to the level above's width and its attention, then a 4x4
    stride-2 transposed conv up; a 1x1 conv out. Stride 2 only (NeMo's `stride`: no other stride restores the
    sizes). NeMo's `stable_attention`, `flash_attention` and `gradient_checkpointing` change how, not what, is
    computed."""

    type: Literal["efficient_unet"]
    input: Ref
    """The noisy image x_t (an image modality)."""
    timestep: Ref
    """The diffusion timestep, one per example (a scalar modality)."""
    context: Ref
    """The text states [batch, S, D] (T5): the attention context, pooled into the time embedding."""
    context_mask: Ref | None = None
    """The states' padding, [batch, S] with 1 = token (a bundle's `mask`, e.g. a tokens modality with
    `mask: true`): the padded states are zeroed (as NeMo's T5 wrapper does) and the attentions leave padded keys
    out; none: every token is attended."""
    low_res: Ref
    """The low-resolution image, channels as `input`'s: resized bicubically (NeMo's F.interpolate) and
    concatenated to the input on the channels."""
    aug_level: Ref | None = None
    """The augmentation level of `low_res`, one per example (a scalar modality), embedded like the timestep and
    added (NeMo's noise_cond_aug). While training the module noises `low_res` itself,
    sqrt(abar_a) * low_res + sqrt(1 - abar_a) * noise with the cosine schedule over `aug_steps` levels; exported
    (eval) graphs take the already noised image."""
    aug_steps: PositiveInt = 1000
    """Levels of the augmentation's cosine (squaredcos_cap_v2) schedule."""
    width: PositiveInt = 128
    """Base channels (NeMo `embed_dim`): the sinusoid's width; the time embedding is 4 * width."""
    mult: list[PositiveInt] = Field(default=[1, 2, 4, 8, 8], min_length=1)
    """Channels per level as multiples of `width`, full resolution first (NeMo `channel_mult`)."""
    depth: PositiveInt | list[PositiveInt] = Field(default=[2, 4, 8, 8, 8])
    """Residual blocks per level, in each direction (NeMo `num_resblocks`), or one count for all."""
    attention: list[bool] = [False, False, False, True, True]
    """Per level: one attention after the level's blocks, down and up (NeMo `atnn_enabled_at`)."""
    attention_type: Literal["fused", "cross", "self", "stacked"] = "fused"
    """fused: one attention whose keys/values are the pixels' and the text's; cross: the text's only; self: the
    pixels' only; stacked: self-, cross-attention and a GEGLU feed-forward (NeMo's `attention_type`)."""
    heads: PositiveInt = 8
    """Attention heads when `head_dim` is none (NeMo `num_attn_heads`)."""
    head_dim: PositiveInt | None = 64
    """Channels per head (heads = channels / head_dim; NeMo `per_head_channels`, none for its -1)."""
    pooling: Literal["attention", "mean"] = "attention"
    """The text added to the time embedding: a softmax-scored sum of the raw states + LayerNorm + Linear, or the
    mean of the projected states (NeMo `feature_pooling_type`)."""
    learned_sinusoid: Annotated[int, Field(ge=0)] = 0
    """Learned sinusoid frequencies x 2 for the timestep and level embeddings; 0: the fixed sinusoid of `width`
    channels (NeMo `learned_sinu_pos_emb_dim`)."""
    null_token: bool = False
    """Append a learned token to the attention context (NeMo `use_null_token`)."""
    conv_in_kernel: PositiveInt = 3
    """Kernel of the first conv (NeMo `init_conv_kernel_size`; odd)."""
    scale_shift: bool = True
    """Residual blocks apply the time embedding as GroupNorm scale and shift (NeMo `scale_shift_norm`)."""
    scale_skip: bool = True
    """Residual shortcuts scaled by 1/sqrt(2) (NeMo `skip_connection_scaling`)."""
    groups: PositiveInt = 32
    """GroupNorm groups; must divide every width and, with text attention, the context width."""
    eps: PositiveFloat = 1e-5

    def references(self) -> dict[str, str]:
        refs = {"input": self.input, "timestep": self.timestep, "context": self.context, "low_res": self.low_res}
        for port in ("context_mask", "aug_level"):
            if getattr(self, port) is not None:
                refs[port] = getattr(self, port)
        return refs

    def _depths(self) -> list[int]:
        return [self.depth] * len(self.mult) if isinstance(self.depth, int) else list(self.depth)

    def _widths(self) -> list[int]:
        return [self.width * m for m in self.mult]

    def _attention_widths(self) -> list[int]:
        """The channels of every attention: a down level's own width, an up level's the level above's."""
        w = self._widths()
        return [c for i, a in enumerate(self.attention) if a for c in (w[i], w[max(i - 1, 0)])]

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        pixels = require(inputs["input"].get("pixels"), "pixels", 4, "image")
        batch, channels, h, w = pixels.shape
        for port in ("timestep", "aug_level"):
            if port in inputs:
                b = inputs[port]
                if len(b) != 1 or next(iter(b.values())).rank != 1:
                    raise CheckError(port, f"{getattr(self, port)!r} must be one value per example [batch] (a "
                                           f"scalar modality)")
        low = require(inputs["low_res"].get("pixels"), "low_res", 4, "image")
        if low.shape[1] != channels:
            raise CheckError("low_res", f"{self.low_res!r} has {low.shape[1]} channels, {self.input!r} {channels}; "
                                        f"the U-Net takes both concatenated (2 x {channels} in)")
        _, context = sequence_of(inputs["context"], self.context, "context")
        n = len(self.mult)
        if len(self.attention) != n or len(self._depths()) != n:
            raise CheckError("attention" if len(self.attention) != n else "depth",
                             f"attention and depth need one entry per level ({n}, mult)")
        uses_text = any(self.attention) and self.attention_type != "self"
        norms = self._widths() + ([context.width] if uses_text else [])
        bad = [c for c in norms if c % self.groups]
        if bad:
            raise CheckError("groups", f"{self.groups} GroupNorm groups do not divide the widths {bad} (levels and, "
                                       f"for text attention, the context)")
        per = self.head_dim or None
        for c in self._attention_widths():
            if (per and c % per) or (not per and c % self.heads):
                raise CheckError("head_dim" if per else "heads",
                                 f"{per or self.heads} {'channels per head' if per else 'heads'} must divide the "
                                 f"attention widths {sorted(set(self._attention_widths()))}")
        if self.learned_sinusoid % 2:
            raise CheckError("learned_sinusoid", f"{self.learned_sinusoid} is odd; the learned sinusoid has "
                                                 f"learned_sinusoid / 2 frequencies")
        if self.conv_in_kernel % 2 == 0:
            raise CheckError("conv_in_kernel", f"{self.conv_in_kernel} is even; the first conv keeps the size only "
                                               f"with an odd kernel")
        if self.context_mask is not None:
            mask_of(inputs["context_mask"], self.context_mask, context.shape[1])
        factor = 2 ** (n - 1)
        if not (isinstance(h, int) and isinstance(w, int)) or h % factor or w % factor:
            raise CheckError("mult", f"{n} levels halve the image {n - 1} times, so height and width must divide by "
                                     f"{factor}; {self.input!r} is {h}x{w}")
        return {"eps": TensorInfo((batch, channels, h, w))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        channels = inputs["input"]["pixels"].shape[1]
        d = sequence_of(inputs["context"], self.context, "context")[1].width
        widths, depths, n = self._widths(), self._depths(), len(self.mult)
        temb, ss = 4 * self.width, self.scale_shift
        total = _time(self.width, self.learned_sinusoid, temb) * (2 if self.aug_level is not None else 1)
        total += imagen_params(d, d, temb, self.pooling, self.null_token)
        total += _conv(2 * channels, widths[0], self.conv_in_kernel) + _conv(widths[0], channels, 1)
        for i, c in enumerate(widths):
            above = widths[max(i - 1, 0)]
            down = _resnet(above, c, temb, ss) + (depths[i] - 1) * _resnet(c, c, temb, ss)
            up = _resnet(c, above, temb, ss) + (depths[i] - 1) * _resnet(above, above, temb, ss)
            total += down + up + (2 * _conv(above, above, 4) if i < n - 1 else 0)
            if self.attention[i]:
                total += _attention(self.attention_type, c, d) + _attention(self.attention_type, above, d)
        return total

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.efficient_unet.module import EfficientUNetModule

        channels = inputs["input"]["pixels"].shape[1]
        field, info = sequence_of(inputs["context"], self.context, "context")
        mask_field = mask_of(inputs["context_mask"], self.context_mask, info.shape[1]) if self.context_mask else None
        return EfficientUNetModule(
            field, mask_field, self.aug_steps if self.aug_level is not None else None, 2 * channels, channels,
            info.width, self.width, self.mult, self._depths(), self.attention, attention_type=self.attention_type,
            heads=self.heads, head_dim=self.head_dim, pooling=self.pooling, learned=self.learned_sinusoid,
            null_token=self.null_token, conv_in_kernel=self.conv_in_kernel, scale_shift=self.scale_shift,
            shortcut_scale=2**-0.5 if self.scale_skip else 1.0, groups=self.groups, eps=self.eps)
