"""ResNet image encoder (He et al. 2016; ResNet v1.5 stride placement, as torchvision and transformers)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmspec.components.common import require
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveInt, Ref
from mmspec.spec.layout import Rule
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_HF_RESNET_STEM = (  # transformers ResNetModel
    Rule("embedder.embedder.convolution.weight", "body.stem.0.0.weight"),
    Rule("embedder.embedder.normalization.{p}", "body.stem.0.1.{p}"),
)
_HF_RESNET_BLOCK = (  # one block: its names -> ours (conv_bn: 0 = conv, 1 = BatchNorm)
    ("layer.{k}.convolution.weight", "body.{k}.0.weight"),
    ("layer.{k}.normalization.{p}", "body.{k}.1.{p}"),
    ("shortcut.convolution.weight", "shortcut.0.weight"),
    ("shortcut.normalization.{p}", "shortcut.1.{p}"),
)

_IMAGE = {"type": "image", "channels": 3, "height": 16, "width": 16}
RESNET_EXAMPLES = (
    Example({"image": _IMAGE}, {"input": "image", "depths": [1, 1], "widths": [8, 16], "stem": 4}, name="bottleneck"),
    Example({"image": _IMAGE}, {"input": "image", "block": "basic", "depths": [2, 1], "widths": [4, 8], "stem": 4},
            name="basic"),
    Example({"image": _IMAGE}, {"input": "image", "depths": [1, 1], "widths": [8, 16], "stem": 4, "frozen_norm": True},
            name="frozen_norm"),
)


@register("encoders", examples=RESNET_EXAMPLES)
class ResNetEncoder(ComponentConfig):
    """ResNet: stem + residual stages. Emits `features` [batch, C, h, w] and `pooled` [batch, C] (global mean)."""

    type: Literal["resnet"]
    input: Ref
    block: Literal["bottleneck", "basic"] = "bottleneck"
    """Residual block: `bottleneck` (1x1, 3x3, 1x1 convs; ResNet-50 and deeper) or `basic` (two 3x3 convs)."""
    depths: list[PositiveInt] = Field(default=[3, 4, 6, 3], min_length=1)
    """Blocks per stage; each stage after the first halves the resolution and doubles the channels."""
    widths: list[PositiveInt] = Field(default=[256, 512, 1024, 2048], min_length=1)
    """Output channels of each stage (bottleneck: 4x the inner width)."""
    stem: PositiveInt = 64
    """Channels of the 7x7/2 stem conv (and of the first stage's blocks before expansion)."""
    reduction: PositiveInt = 4
    """Bottleneck inner width = width / reduction."""
    frozen_norm: bool = False
    """Frozen BatchNorm (DETR, UniT): scale, shift and statistics are buffers, so the norms hold no parameters."""

    weight_layouts = {"resnet": _HF_RESNET_STEM}  # + the blocks, numbered by stage (weight_rules)

    def weight_rules(self, layout: str) -> tuple[Rule, ...]:
        """transformers numbers blocks within stages (`stages.1.layers.0`); ours are one flat list."""
        if layout != "resnet":
            return super().weight_rules(layout)
        blocks = [(stage, j) for stage, depth in enumerate(self.depths) for j in range(depth)]
        return _HF_RESNET_STEM + tuple(
            Rule(f"encoder.stages.{stage}.layers.{j}.{theirs}", f"body.stages.{n}.{ours}")
            for n, (stage, j) in enumerate(blocks)
            for theirs, ours in _HF_RESNET_BLOCK
        )

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

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Parameters `build` will allocate, in closed form per stage (budgets before allocation)."""
        from mmspec.components.params import conv_bn

        def conv_norm(cin: int, cout: int, kernel: int) -> int:
            return conv_bn(cin, cout, kernel) - (2 * cout if self.frozen_norm else 0)

        def block(cin: int, cout: int, stride: int) -> int:
            mid = cout // self.reduction
            body = (conv_norm(cin, mid, 1) + conv_norm(mid, mid, 3) + conv_norm(mid, cout, 1)
                    if self.block == "bottleneck" else conv_norm(cin, cout, 3) + conv_norm(cout, cout, 3))
            return body + (conv_norm(cin, cout, 1) if cin != cout or stride != 1 else 0)

        total, cin = conv_norm(inputs["input"]["pixels"].shape[1], self.stem, 7), self.stem
        for i, (width, depth) in enumerate(zip(self.widths, self.depths, strict=True)):
            total += block(cin, width, 2 if i else 1) + (depth - 1) * block(width, width, 1)
            cin = width
        return total

    def internal_shapes(self, inputs: dict[str, Bundle], ctx) -> list[tuple]:
        """The stem's output and the first stage's (the largest feature maps)."""
        batch, _, h, w = inputs["input"]["pixels"].shape
        h2, w2 = (h + 1) // 2, (w + 1) // 2
        return [(batch, self.stem, h2, w2), (batch, self.widths[0], (h2 + 1) // 2, (w2 + 1) // 2)]

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.resnet.module import ResNetModule

        channels = inputs["input"]["pixels"].shape[1]
        return ResNetModule(channels, self.stem, self.widths, self.depths, self.block == "bottleneck", self.reduction,
                            self.frozen_norm)
