"""ResNet image encoder (He et al. 2016; ResNet v1.5 stride placement, as torchvision and transformers)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmspec.components._common import require
from mmspec.registry import register
from mmspec.spec._base import ComponentConfig, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo


@register("encoders")
class ResNetEncoder(ComponentConfig):
    """ResNet: stem + residual stages. Emits `features` [batch, C, h, w] and `pooled` [batch, C] (global mean)."""

    type: Literal["resnet"]
    input: Ref
    block: Literal["bottleneck", "basic"] = "bottleneck"
    depths: list[PositiveInt] = Field(default=[3, 4, 6, 3], min_length=1)
    widths: list[PositiveInt] = Field(default=[256, 512, 1024, 2048], min_length=1)
    """Output channels of each stage (bottleneck: 4x the inner width)."""
    stem: PositiveInt = 64
    reduction: PositiveInt = 4
    """Bottleneck inner width = width / reduction."""

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        pixels = require(inputs["input"].get("pixels"), "pixels", 4, "image")
        if len(self.depths) != len(self.widths):
            raise CheckError(
                "widths",
                f"widths has {len(self.widths)} stages but depths has {len(self.depths)}; give one width per stage",
            )
        if self.block == "bottleneck":
            for i, w in enumerate(self.widths):
                if w % self.reduction:
                    raise CheckError(("widths", i), f"width {w} is not divisible by reduction {self.reduction}")
        batch, _, h, w = pixels.shape
        for _ in range(2 + len(self.depths) - 1):  # stem conv, stem pool, then one stride-2 per later stage
            h, w = (h + 1) // 2, (w + 1) // 2
        if h < 1 or w < 1:
            raise CheckError("depths", f"the image of {self.input!r} is too small for {len(self.depths)} stages")
        c = self.widths[-1]
        return {"features": TensorInfo((batch, c, h, w)), "pooled": TensorInfo((batch, c))}

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.layers.resnet import ResNetModule

        channels = inputs["input"]["pixels"].shape[1]
        return ResNetModule(channels, self.stem, self.widths, self.depths, self.block == "bottleneck", self.reduction)
