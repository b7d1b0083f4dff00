"""EfficientNet image encoder (Tan & Le 2019): MBConv stages with squeeze-excitation, scaled by width and depth."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.common import require
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, PositiveInt, Probability, Ref
from mmspec.spec.layout import Rule
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

B0_STAGES = [  # kernel, stride, expand ratio, in, out, repeats (the paper's Table 1)
    [3, 1, 1, 32, 16, 1],
    [3, 2, 6, 16, 24, 2],
    [5, 2, 6, 24, 40, 2],
    [3, 2, 6, 40, 80, 3],
    [5, 1, 6, 80, 112, 3],
    [5, 2, 6, 112, 192, 4],
    [3, 1, 6, 192, 320, 1],
]
Stage = Annotated[list[PositiveInt], Field(min_length=6, max_length=6)]

_HF_EFFICIENTNET_FIXED = (  # transformers EfficientNetModel: stem and top
    Rule("embeddings.convolution.weight", "stem.1.weight"),
    Rule("embeddings.batchnorm.{p}", "stem.2.{p}"),
    Rule("encoder.top_conv.weight", "head.0.weight"),
    Rule("encoder.top_bn.{p}", "head.1.{p}"),
)
_HF_EFFICIENTNET_BLOCK = (  # one block: its names -> ours (blocks.conv.MBConv)
    ("expansion.expand_conv.weight", "expand.0.weight"),
    ("expansion.expand_bn.{p}", "expand.1.{p}"),
    ("depthwise_conv.depthwise_conv.weight", "depthwise.1.weight"),
    ("depthwise_conv.depthwise_norm.{p}", "depthwise.2.{p}"),
    ("squeeze_excite.reduce.{p}", "se.reduce.{p}"),
    ("squeeze_excite.expand.{p}", "se.expand.{p}"),
    ("projection.project_conv.weight", "project.0.weight"),
    ("projection.project_bn.{p}", "project.1.{p}"),
)

_IMAGE = {"type": "image", "channels": 3, "height": 16, "width": 16}
_TINY_STAGES = [[3, 1, 1, 8, 8, 1], [3, 2, 6, 8, 16, 2], [5, 2, 4, 16, 24, 1]]
EFFICIENTNET_EXAMPLES = (
    Example({"image": _IMAGE}, {"input": "image", "stages": _TINY_STAGES, "head": 32}, name="tiny"),
    Example({"image": {**_IMAGE, "height": 15, "width": 17}},
            {"input": "image", "stages": _TINY_STAGES, "head": 40, "width": 1.3, "depth": 1.6, "square_padding": [1]},
            name="scaled"),
    Example({"image": _IMAGE}, {"input": "image", "stages": _TINY_STAGES, "head": None}, name="no_head"),  # ALIGN
)


@register("encoders", examples=EFFICIENTNET_EXAMPLES)
class EfficientNetEncoder(ComponentConfig):
    """EfficientNet: 3x3/2 stem, MBConv stages, 1x1 conv to `head` channels. Emits `features` [batch, C, h, w] and
    `pooled` [batch, C] (global mean, then `dropout`). Channels are scaled by `width` and rounded to multiples of
    `divisor` (never below 90% of the scaled count); repeats by `depth`, rounded up."""

    type: Literal["efficientnet"]
    input: Ref
    width: PositiveFloat = 1.0
    """Channel multiplier of every stage, the stem and the head (B0: 1.0)."""
    depth: PositiveFloat = 1.0
    """Repeat multiplier of every stage (B0: 1.0)."""
    divisor: PositiveInt = 8
    """Channel counts are rounded to multiples of this (never below 90% of the scaled count)."""
    stages: list[Stage] = Field(default=B0_STAGES, min_length=1)
    """Base rows [kernel, stride, expand ratio, in, out, repeats]; stage 1's `in` is the stem's width."""
    se_ratio: Probability = 0.25
    """Squeeze-excite width = max(1, int(block input channels * se_ratio))."""
    head: PositiveInt | None = 1280
    """Channels of the final 1x1 conv (scaled by `width`); null: no final conv, `features` are the last block's
    output (ALIGN's image tower)."""
    drop_connect: Probability = 0.2
    """Stochastic-depth rate of the last block; block n of N drops its residual branch with drop_connect * n / N."""
    dropout: Probability = 0.2
    """Dropout on `pooled` (before the classifier)."""
    eps: PositiveFloat = 1e-3
    square_padding: list[int] = []
    """Block indices whose stride-2 depthwise conv pads k//2 on every side (transformers `depthwise_padding`)."""

    weight_layouts = {"efficientnet": _HF_EFFICIENTNET_FIXED}  # + the blocks (weight_rules)

    def weight_rules(self, layout: str) -> tuple[Rule, ...]:
        """transformers numbers the blocks as one flat list, as we do."""
        if layout != "efficientnet":
            return super().weight_rules(layout)
        return _HF_EFFICIENTNET_FIXED + tuple(
            Rule(f"encoder.blocks.{n}.{theirs}", f"blocks.{n}.{ours}")
            for n in range(len(self.blocks()))
            for theirs, ours in _HF_EFFICIENTNET_BLOCK
        )

    def channels(self, base: int) -> int:
        """`base * width` rounded to the nearest multiple of `divisor`, at least `divisor` and 90% of the product."""
        scaled = base * self.width
        rounded = max(self.divisor, int(scaled + self.divisor / 2) // self.divisor * self.divisor)
        return int(rounded + self.divisor if rounded < 0.9 * scaled else rounded)

    def blocks(self) -> list[tuple[int, int, int, int, int, bool]]:
        """Each block as (in, out, kernel, stride, expand, residual): a stage's first block strides and changes
        the width, the rest repeat it with a residual connection."""
        out = []
        for kernel, stride, expand, cin, cout, repeats in self.stages:
            cin, cout = self.channels(cin), self.channels(cout)
            for j in range(math.ceil(self.depth * repeats)):
                out.append((cout if j else cin, cout, kernel, 1 if j else stride, expand, j > 0))
        return out

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        pixels = require(inputs["input"].get("pixels"), "pixels", 4, "image")
        for i, row in enumerate(self.stages[1:], 1):
            if row[3] != self.stages[i - 1][4]:
                raise CheckError(("stages", i, 3), f"stage {i} takes {row[3]} channels but stage {i - 1} gives "
                                 f"{self.stages[i - 1][4]}")
        for i, row in enumerate(self.stages):
            if row[1] not in (1, 2):
                raise CheckError(("stages", i, 1), f"stride {row[1]} is not supported; use 1 or 2")
            if row[0] % 2 == 0:
                raise CheckError(("stages", i, 0), f"kernel {row[0]} must be odd")
        blocks = self.blocks()
        for i, n in enumerate(self.square_padding):
            if not 0 <= n < len(blocks):
                raise CheckError(("square_padding", i), f"block {n} does not exist; there are {len(blocks)} blocks")
        batch, _, h, w = pixels.shape
        h, w = h // 2, w // 2  # stem: pad 1 after, 3x3 stride 2
        for n, (_, _, _, stride, _, _) in enumerate(blocks):
            if stride == 2:
                extra = n in self.square_padding
                h, w = (h + extra) // 2, (w + extra) // 2
            if h < 1 or w < 1:
                raise CheckError("stages", f"the image of {self.input!r} is too small: block {n} has no pixels left")
        c = self.channels(self.head) if self.head else self.channels(self.stages[-1][4])
        return {"features": TensorInfo((batch, c, h, w)), "pooled": TensorInfo((batch, c))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Parameters `build` will allocate, in closed form per block (budgets before allocation)."""
        from mmspec.components.params import conv_bn

        total = conv_bn(inputs["input"]["pixels"].shape[1], self.channels(self.stages[0][3]), 3)
        for cin, cout, kernel, _, expand, _ in self.blocks():
            mid, se = cin * expand, max(1, int(cin * self.se_ratio))
            total += conv_bn(cin, mid, 1) if expand != 1 else 0
            total += mid * kernel * kernel + 2 * mid + 2 * mid * se + se + mid + conv_bn(mid, cout, 1)
        return total + (conv_bn(self.channels(self.stages[-1][4]), self.channels(self.head), 1) if self.head else 0)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.blocks.conv import MBConv
        from mmspec.components.encoders.efficientnet.module import EfficientNetModule

        blocks = self.blocks()
        body = [
            MBConv(cin, cout, kernel, stride, expand, max(1, int(cin * self.se_ratio)), residual,
                   self.drop_connect * n / len(blocks), self.eps, symmetric=n in self.square_padding)
            for n, (cin, cout, kernel, stride, expand, residual) in enumerate(blocks)
        ]
        channels = inputs["input"]["pixels"].shape[1]
        return EfficientNetModule(channels, self.channels(self.stages[0][3]), body,
                                  self.channels(self.head) if self.head else None, self.eps, self.dropout)
