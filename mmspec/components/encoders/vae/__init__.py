"""The encoder of the convolutional KL autoencoder (VAE; the first stage of latent diffusion, Rombach et al. 2022;
diffusers AutoencoderKL): image in, the diagonal Gaussian posterior's mean and log-variance out, and a latent
drawn from it by the reparameterisation trick while training (the mean otherwise). Composed from
`mmspec.blocks.diffusion`; `--weights` reads an AutoencoderKL checkpoint with `layout: diffusers`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmspec.components.common import require
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, PositiveInt, Ref
from mmspec.spec.layout import Rule
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

VAE_ENCODER_EXAMPLES = (
    Example({"image": {"type": "image", "channels": 3, "height": 8, "width": 8}},
            {"input": "image", "widths": [4, 8], "depth": 1, "latent": 2, "groups": 2}, name="two_levels"),
    Example({"image": {"type": "image", "channels": 1, "height": 4, "width": 6}},
            {"input": "image", "widths": [4], "depth": 2, "latent": 3, "groups": 4, "quant_conv": False},
            name="one_level"),
)


def attention_renames(module: str) -> tuple[Rule, ...]:
    """diffusers' attention names (to_q, to_k, to_v, to_out.0) under `module` -> blocks.diffusion's (attn.q ...)."""
    pairs = (("to_q", "attn.q"), ("to_k", "attn.k"), ("to_v", "attn.v"), ("to_out.0", "attn.out"))
    return tuple(Rule(f"{module}.{{a*}}.attentions.{{i}}.{src}.{{p}}", f"{module}.{{a*}}.attentions.{{i}}.{dst}.{{p}}")
                 for src, dst in pairs)


def conv(cin: int, cout: int, kernel: int) -> int:
    return cin * cout * kernel * kernel + cout


def resnet(cin: int, cout: int) -> int:
    """blocks.conv.ResnetBlock without a time embedding."""
    return 2 * cin + conv(cin, cout, 3) + 2 * cout + conv(cout, cout, 3) + (conv(cin, cout, 1) if cin != cout else 0)


def mid_block(c: int) -> int:
    """Two resnets around a one-head pixel attention (GroupNorm + four c x c projections)."""
    return 2 * resnet(c, c) + 2 * c + 4 * (c * c + c)


def pixel_attention(c: int) -> int:
    """A one-head pixel attention: GroupNorm + four c x c projections."""
    return 2 * c + 4 * (c * c + c)


def check_levels(widths: list[int], groups: int, attention: list[bool] | None = None) -> None:
    bad = [c for c in widths if c % groups]
    if bad:
        raise CheckError("groups", f"{groups} GroupNorm groups do not divide the widths {bad}")
    if attention is not None and len(attention) != len(widths):
        raise CheckError("attention", f"has {len(attention)} entries for {len(widths)} levels (widths); give one "
                                      f"true/false per level")


@register("encoders", examples=VAE_ENCODER_EXAMPLES)
class VAEEncoderConfig(ComponentConfig):
    """Image [batch, C, H, W] -> `mean`, `log_var` and `latent`, each [batch, latent, H/f, W/f], f = 2^(L-1),
    L = len(widths): a 3x3 conv in, `depth` GroupNorm + SiLU residual blocks per level with a stride-2 conv
    (padded right and bottom) between levels, a middle block (resnet, one-head pixel attention, resnet),
    GroupNorm + SiLU + a 3x3 conv to 2 * latent channels, a 1x1 conv (`quant_conv`) and the split into mean and
    log-variance (clamped to [-30, 20]). `latent` = mean + exp(log_var / 2) * N(0, I) while training, the mean
    in eval mode and in exported graphs."""

    type: Literal["vae_encoder"]
    input: Ref
    widths: list[PositiveInt] = Field(default=[128, 256, 512, 512], min_length=1)
    """Channels per level (diffusers `block_out_channels`; Stable Diffusion's f8 autoencoder)."""
    depth: PositiveInt = 2
    """Residual blocks per level (`layers_per_block`)."""
    latent: PositiveInt = 4
    """Latent channels."""
    groups: PositiveInt = 32
    """Groups of the GroupNorm layers; they divide every width."""
    eps: PositiveFloat = 1e-6
    quant_conv: bool = True
    """The 1x1 conv on the moments (diffusers `use_quant_conv`)."""

    weight_layouts = {"diffusers": (*attention_renames("encoder"), Rule("encoder.{n*}", "encoder.{n*}"),
                                    Rule("quant_conv.{p}", "quant_conv.{p}"))}  # AutoencoderKL, prefix ''

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        pixels = require(inputs["input"].get("pixels"), "pixels", 4, "image")
        batch, _, h, w = pixels.shape
        check_levels(self.widths, self.groups)
        factor = 2 ** (len(self.widths) - 1)
        if not (isinstance(h, int) and isinstance(w, int)) or h % factor or w % factor:
            raise CheckError("widths", f"{len(self.widths)} levels halve the image {len(self.widths) - 1} times, so "
                                       f"height and width must divide by {factor}; {self.input!r} is {h}x{w}")
        latent = TensorInfo((batch, self.latent, h // factor, w // factor))
        return {"mean": latent, "log_var": latent, "latent": latent}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        channels = inputs["input"]["pixels"].shape[1]
        widths, n = self.widths, len(self.widths)
        total = conv(channels, widths[0], 3)
        for i, c in enumerate(widths):
            total += sum(resnet(widths[max(i - 1, 0)] if j == 0 else c, c) for j in range(self.depth))
            total += conv(c, c, 3) if i < n - 1 else 0
        total += mid_block(widths[-1]) + 2 * widths[-1] + conv(widths[-1], 2 * self.latent, 3)
        return total + (conv(2 * self.latent, 2 * self.latent, 1) if self.quant_conv else 0)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.vae.module import VAEEncoderModule

        return VAEEncoderModule(inputs["input"]["pixels"].shape[1], self.widths, self.depth, self.latent,
                                self.groups, self.eps, self.quant_conv)


VQ_ENCODER_EXAMPLES = (
    Example({"image": {"type": "image", "channels": 3, "height": 8, "width": 8}},
            {"input": "image", "widths": [4, 8], "depth": 1, "latent": 3, "codebook": 16, "groups": 2},
            name="learned_codebook"),
    Example({"image": {"type": "image", "channels": 1, "height": 4, "width": 4}},
            {"input": "image", "widths": [4], "depth": 1, "latent": 2, "codebook": 8, "groups": 4,
             "ema_decay": 0.9}, name="ema_codebook"),
    Example({"image": {"type": "image", "channels": 3, "height": 4, "width": 4}},
            {"input": "image", "widths": [4, 8], "depth": 1, "latent": 2, "codebook": 8, "groups": 2,
             "attention": [False, True]}, name="vqgan_attention"),
)


@register("encoders", examples=VQ_ENCODER_EXAMPLES)
class VQEncoderConfig(ComponentConfig):
    """VQ-VAE encoder + quantiser (van den Oord et al. 2017; diffusers VQModel's encoder, quant_conv and
    quantize): image [batch, C, H, W] -> `latent` z_e, `codebook_vectors` z_q (the nearest of `codebook` codes per
    position), `quantized` (the straight-through z_e + sg(z_q - z_e), what the decoder reads), each
    [batch, latent, H/f, W/f], and `codes` int64 [batch, (H/f)*(W/f)] row-major. The convolutional encoder is
    the KL autoencoder's (`vae_encoder`) with `latent` output channels and a 1x1 `quant_conv`. The codebook is a
    parameter trained by the `vq_losses` codebook term, or, with `ema_decay`, a buffer moved by exponential
    moving averages in training-mode forwards (then it is no parameter, and the codebook term has nothing to
    train)."""

    type: Literal["vq_encoder"]
    input: Ref
    widths: list[PositiveInt] = Field(default=[128, 256, 512], min_length=1)
    """Channels per level, narrowest first; each level after the first halves the resolution."""
    depth: PositiveInt = 2
    """Residual blocks per level."""
    latent: PositiveInt = 3
    """Latent channels = codebook vector width D."""
    codebook: PositiveInt = 8192
    """K, the number of codes."""
    groups: PositiveInt = 32
    """Groups of the GroupNorm layers; they divide every width."""
    eps: PositiveFloat = 1e-6
    ema_decay: PositiveFloat | None = Field(default=None, lt=1.0)
    """none: a learned codebook; a decay g (0.99 in the paper's EMA variant): codebook updates by EMA."""
    attention: list[bool] | None = None
    """Per level, narrowest first: a one-head pixel attention after each residual block (the VQGAN's lowest
    level; diffusers AttnDownEncoderBlock2D); none: no attention outside the middle block."""

    weight_layouts = {"diffusers": (*attention_renames("encoder"), Rule("encoder.{n*}", "encoder.{n*}"),
                                    Rule("quant_conv.{p}", "quant_conv.{p}"),
                                    Rule("quantize.embedding.weight", "quantize.embedding.weight"))}  # VQModel

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        pixels = require(inputs["input"].get("pixels"), "pixels", 4, "image")
        batch, _, h, w = pixels.shape
        check_levels(self.widths, self.groups, self.attention)
        factor = 2 ** (len(self.widths) - 1)
        if not (isinstance(h, int) and isinstance(w, int)) or h % factor or w % factor:
            raise CheckError("widths", f"{len(self.widths)} levels halve the image {len(self.widths) - 1} times, so "
                                       f"height and width must divide by {factor}; {self.input!r} is {h}x{w}")
        z = TensorInfo((batch, self.latent, h // factor, w // factor))
        return {"latent": z, "codebook_vectors": z, "quantized": z,
                "codes": TensorInfo((batch, (h // factor) * (w // factor)), "int64")}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        channels = inputs["input"]["pixels"].shape[1]
        widths, n = self.widths, len(self.widths)
        total = conv(channels, widths[0], 3)
        for i, c in enumerate(widths):
            total += sum(resnet(widths[max(i - 1, 0)] if j == 0 else c, c) for j in range(self.depth))
            total += self.depth * pixel_attention(c) if self.attention and self.attention[i] else 0
            total += conv(c, c, 3) if i < n - 1 else 0
        total += mid_block(widths[-1]) + 2 * widths[-1] + conv(widths[-1], self.latent, 3)
        return total + conv(self.latent, self.latent, 1) + (self.codebook * self.latent if self.ema_decay is None
                                                           else 0)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.vae.module import VQEncoderModule

        return VQEncoderModule(inputs["input"]["pixels"].shape[1], self.widths, self.depth, self.latent,
                               self.codebook, self.groups, self.eps, self.ema_decay, self.attention)
