"""ADM's noisy-image classifier (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis"): the
down half of the ADM U-Net with attention pooling, trained on noisy images x_t and their timestep; its gradient
log p(y | x_t) steers a diffusion sampler (classifier guidance). Composed from `mmspec.blocks.adm`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmspec.components.common import require
from mmspec.components.encoders.adm_unet import attention_params, check_levels, conv_params, resnet_params
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, PositiveInt, Probability, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

ADM_CLASSIFIER_EXAMPLES = (
    Example({"x_t": {"type": "image", "channels": 3, "height": 8, "width": 8},
             "t": {"type": "scalar", "dtype": "int64", "high": 1000}},
            {"input": "x_t", "timestep": "t", "width": 4, "mult": [1, 2], "depth": 1, "attention": [False, True],
             "head_dim": 4, "groups": 2, "classes": 5}, name="two_levels"),
)


@register("heads", examples=ADM_CLASSIFIER_EXAMPLES)
class ADMClassifierHead(ComponentConfig):
    """Noisy image x_t [batch, C, H, W] and timestep [batch] -> `logits` [batch, classes]. The ADM U-Net's
    timestep embedding, input blocks (`depth` scale-shift residual blocks per level, each followed by an
    attention where `attention` says so, a residual block with 2x2 average pooling between levels) and middle
    block (resnet, attention, resnet); then GroupNorm, SiLU and attention pooling (the query is the mean feature
    plus a learned position per cell, `head_dim`-wide heads) to the logits (guided-diffusion's EncoderUNetModel,
    pool "attention")."""

    type: Literal["adm_classifier"]
    input: Ref
    """The noisy image x_t (an image modality)."""
    timestep: Ref
    """The diffusion timestep, one per example (a scalar modality)."""
    classes: PositiveInt = 1000
    """Number of classes (the logits' width)."""
    width: PositiveInt = 128
    """Base channels (`classifier_width`)."""
    mult: list[PositiveInt] = Field(default=[1, 1, 2, 2, 4, 4], min_length=1)
    """Channel multiplier per level, full resolution first."""
    depth: PositiveInt = 2
    """Residual blocks per level (`classifier_depth`)."""
    attention: list[bool] = [False, False, False, True, True, True]
    """Per level: attention after each residual block; at 32, 16 and 8 pixels of 256."""
    head_dim: PositiveInt = 64
    """Attention head width (`num_head_channels`), also of the attention pooling."""
    groups: PositiveInt = 32
    """Groups of the GroupNorm layers; they divide every level's channels."""
    eps: PositiveFloat = 1e-5
    dropout: Probability = 0.0

    def references(self) -> dict[str, str]:
        return {"input": self.input, "timestep": self.timestep}

    def _grid(self, inputs: dict[str, Bundle]) -> tuple[int, int]:
        """(height, width) of the lowest-resolution map."""
        pixels = require(inputs["input"].get("pixels"), "pixels", 4, "image")
        h, w = pixels.shape[2:]
        factor = 2 ** (len(self.mult) - 1)
        if not (isinstance(h, int) and isinstance(w, int)) or h % factor or w % factor:
            raise CheckError("mult", f"{len(self.mult)} levels halve the image {len(self.mult) - 1} times, so height "
                                     f"and width must divide by {factor}; {self.input!r} is {h}x{w}")
        return h // factor, w // factor

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        batch = require(inputs["input"].get("pixels"), "pixels", 4, "image").shape[0]
        check_levels(self, inputs)
        self._grid(inputs)
        return {"logits": TensorInfo((batch, self.classes))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        widths, temb = [self.width * m for m in self.mult], 4 * self.width
        channels = inputs["input"]["pixels"].shape[1]
        total = (self.width * temb + temb) + (temb * temb + temb) + conv_params(channels, widths[0], 3)
        ch = widths[0]
        for level, c in enumerate(widths):
            for _ in range(self.depth):
                total += resnet_params(ch, c, temb) + (attention_params(c, None) if self.attention[level] else 0)
                ch = c
            total += resnet_params(c, c, temb) if level < len(widths) - 1 else 0
        total += 2 * resnet_params(ch, ch, temb) + attention_params(ch, None) + 2 * ch
        h, w = self._grid(inputs)
        return total + (h * w + 1) * ch + 3 * (ch * ch + ch) + ch * self.classes + self.classes

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.adm_classifier.module import ADMClassifierModule

        h, w = self._grid(inputs)
        return ADMClassifierModule(
            inputs["input"]["pixels"].shape[1], self.classes, h * w, self.width, self.mult, self.depth,
            self.attention, head_dim=self.head_dim, groups=self.groups, eps=self.eps, dropout=self.dropout)
