"""U-Net segmentation encoder-decoder (Sirko et al. 2021 building detection; the U-Net of Ronneberger et al. 2015):
per-pixel logits at the input resolution, composed from `mmspec.blocks.unet`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmspec.components.common import require
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

UNET_EXAMPLES = (
    Example({"image": {"type": "image", "channels": 3, "height": 16, "width": 16}},
            {"input": "image", "widths": [4, 8, 8], "classes": 1}, name="binary"),
    Example({"image": {"type": "image", "channels": 2, "height": 8, "width": 12}},
            {"input": "image", "widths": [3, 5], "classes": 3, "norm": False}, name="plain"),
)


@register("encoders", examples=UNET_EXAMPLES)
class UNetEncoder(ComponentConfig):
    """Image [batch, C, H, W] -> `logits` [batch, classes, H, W] (per-pixel scores) and `bottleneck`
    [batch, widths[-1], H / 2^(L-1), W / 2^(L-1)], L = len(widths): per level a double 3x3 conv (BatchNorm + ReLU
    with `norm`), 2x2 max-pool between levels, 2x2 transposed convs back up, each concatenated with the skip of its
    level and merged by a double conv, then a 1x1 conv to `classes`."""

    type: Literal["unet"]
    input: Ref
    widths: list[PositiveInt] = Field(default=[64, 128, 256, 512, 1024], min_length=2)
    """Channels per level, full resolution first (Ronneberger et al.: 64 ... 1024 over five levels)."""
    classes: PositiveInt = 1
    """Output channels: 1 for a binary mask (sigmoid), K for K classes (softmax)."""
    norm: bool = True
    """BatchNorm after every 3x3 conv (whose bias is then left out)."""

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        pixels = require(inputs["input"].get("pixels"), "pixels", 4, "image")
        batch, _, h, w = pixels.shape
        factor = 2 ** (len(self.widths) - 1)
        if not (isinstance(h, int) and isinstance(w, int)) or h % factor or w % factor:
            raise CheckError("widths", f"{len(self.widths)} levels halve the image {len(self.widths) - 1} times, so "
                                       f"height and width must divide by {factor}; {self.input!r} is {h}x{w}")
        return {"logits": TensorInfo((batch, self.classes, h, w)),
                "bottleneck": TensorInfo((batch, self.widths[-1], h // factor, w // factor))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        channels = inputs["input"]["pixels"].shape[1]
        per_conv = (lambda a, b: 9 * a * b + 2 * b) if self.norm else (lambda a, b: 9 * a * b + b)
        total, previous = 0, channels
        for width in self.widths:
            total += per_conv(previous, width) + per_conv(width, width)
            previous = width
        for big, small in zip(self.widths[:0:-1], self.widths[-2::-1], strict=True):
            total += 4 * big * small + small + per_conv(2 * small, small) + per_conv(small, small)
        return total + self.widths[0] * self.classes + self.classes

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.unet.module import UNetModule

        return UNetModule(inputs["input"]["pixels"].shape[1], self.widths, self.classes, self.norm)
