"""The decoder of the convolutional KL autoencoder (diffusers AutoencoderKL's post_quant_conv + Decoder): a latent
[batch, L, h, w] in, pixels out. Composed from `mmspec.blocks.diffusion`; `--weights` reads an AutoencoderKL
checkpoint with `layout: diffusers`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmspec.components.common import require
from mmspec.components.encoders.vae import attention_renames, check_levels, conv, mid_block, pixel_attention, resnet
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, PositiveInt, Ref
from mmspec.spec.layout import Rule
from mmspec.spec.tensors import Bundle, TensorInfo

_LATENT = {"z": {"type": "image", "channels": 2, "height": 2, "width": 3}}
VAE_DECODER_EXAMPLES = (
    Example(_LATENT, {"input": "z", "widths": [4, 8], "depth": 1, "groups": 2}, name="two_levels"),
    Example(_LATENT, {"input": "z", "widths": [4], "depth": 1, "groups": 4, "channels": 1,
                      "post_quant_conv": False}, name="one_level"),
    Example(_LATENT, {"input": "z", "widths": [4, 8], "depth": 1, "groups": 2, "attention": [False, True]},
            name="vqgan_attention"),
)


@register("heads", examples=VAE_DECODER_EXAMPLES)
class VAEDecoderConfig(ComponentConfig):
    """Latent [batch, L, h, w] -> `pixels` [batch, channels, h*f, w*f], f = 2^(len(widths)-1): a 1x1 conv
    (`post_quant_conv`), a 3x3 conv to widths[-1], the middle block (resnet, one-head pixel attention, resnet),
    `depth` + 1 GroupNorm + SiLU residual blocks per level from the widest, nearest x2 + 3x3 conv between levels,
    GroupNorm + SiLU + a 3x3 conv to `channels`. `widths` lists the levels as the encoder does, narrowest first."""

    type: Literal["vae_decoder"]
    input: Ref
    """The latent: an image-shaped float tensor [batch, L, h, w] (an encoder's `latent`, or a modality)."""
    widths: list[PositiveInt] = Field(default=[128, 256, 512, 512], min_length=1)
    """Channels per level as the encoder lists them, narrowest first (the decoder runs them widest first)."""
    depth: PositiveInt = 2
    """The encoder's `depth`; each decoder level has depth + 1 residual blocks."""
    channels: PositiveInt = 3
    """Image channels of `pixels`."""
    groups: PositiveInt = 32
    """Groups of the GroupNorm layers; they divide every width."""
    eps: PositiveFloat = 1e-6
    post_quant_conv: bool = True
    """true: a 1x1 conv on the latent first (diffusers' post_quant_conv)."""
    attention: list[bool] | None = None
    """Per level in the encoder's order (narrowest first): a one-head pixel attention after each residual block
    (the VQGAN's lowest level; diffusers AttnUpDecoderBlock2D); none: attention only in the middle block."""

    weight_layouts = {"diffusers": (*attention_renames("decoder"), Rule("decoder.{n*}", "decoder.{n*}"),
                                    Rule("post_quant_conv.{p}", "post_quant_conv.{p}"))}  # AutoencoderKL, prefix ''

    def _latent(self, inputs: dict[str, Bundle]) -> TensorInfo:
        bundle = inputs["input"]
        return require(bundle.get("pixels") if "pixels" in bundle else next(iter(bundle.values())), "latent", 4,
                       "latent [batch, L, h, w]")

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        batch, _, h, w = self._latent(inputs).shape
        check_levels(self.widths, self.groups, self.attention)
        f = 2 ** (len(self.widths) - 1)
        return {"pixels": TensorInfo((batch, self.channels, h * f if isinstance(h, int) else h,
                                      w * f if isinstance(w, int) else w))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        latent = self._latent(inputs).shape[1]
        rev, flags = self.widths[::-1], (self.attention or [False] * len(self.widths))[::-1]
        total = (conv(latent, latent, 1) if self.post_quant_conv else 0) + conv(latent, rev[0], 3) + mid_block(rev[0])
        for i, c in enumerate(rev):
            total += sum(resnet(rev[max(i - 1, 0)] if j == 0 else c, c) for j in range(self.depth + 1))
            total += (self.depth + 1) * pixel_attention(c) if flags[i] else 0
            total += conv(c, c, 3) if i < len(rev) - 1 else 0
        return total + 2 * self.widths[0] + conv(self.widths[0], self.channels, 3)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.vae_decoder.module import VAEDecoderModule

        return VAEDecoderModule(self._latent(inputs).shape[1], self.channels, self.widths, self.depth, self.groups,
                                self.eps, self.post_quant_conv, self.attention)
