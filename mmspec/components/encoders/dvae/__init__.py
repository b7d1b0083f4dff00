"""The dVAE encoder of DALL-E (Ramesh et al. 2021; transformers FlavaImageCodebook): image in, logits over K image
tokens per position out, Gumbel-softmax samples of them while training and one-hot argmax codes otherwise.
Composed from `mmspec.blocks.dvae`; `--weights` reads a FlavaImageCodebook checkpoint with `layout: flava`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmspec.components.common import require
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, PositiveInt, Ref
from mmspec.spec.layout import Rule
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

DVAE_ENCODER_EXAMPLES = (
    Example({"image": {"type": "image", "channels": 3, "height": 8, "width": 8}},
            {"input": "image", "hidden": 4, "vocab": 6, "blocks": 1, "multipliers": [1, 2]}, name="two_groups"),
)


def conv(cin: int, cout: int, kernel: int) -> int:
    return cin * cout * kernel * kernel + cout


def block(cin: int, cout: int, decoder: bool) -> int:
    """blocks.dvae.DVAEBlock: a 1x1 id conv where the width changes; residual convs at width out / 4."""
    hid = cout // 4
    kernels = (1, 3, 3, 3) if decoder else (3, 3, 3, 1)
    widths = [cin, hid, hid, hid, cout]
    return (conv(cin, cout, 1) if cin != cout else 0) + sum(conv(widths[i], widths[i + 1], k)
                                                            for i, k in enumerate(kernels))


def groups(widths: list[int], blocks: int, decoder: bool) -> int:
    return sum(block(widths[i] if j == 0 else widths[i + 1], widths[i + 1], decoder)
               for i in range(len(widths) - 1) for j in range(blocks))


@register("encoders", examples=DVAE_ENCODER_EXAMPLES)
class DVAEEncoderConfig(ComponentConfig):
    """Image [batch, C, H, W] -> `logits` [batch, h*w, vocab] (row-major positions, h = H / 2^(G-1), G =
    len(multipliers)), `codes` int64 [batch, h*w] (their argmax) and `onehot` [batch, vocab, h, w]: Gumbel-softmax
    samples at `temperature` while training (the relaxation the decoder trains on), the one-hot argmax otherwise
    (exported graphs). A 7x7 conv to `hidden`, G groups of `blocks` residual blocks (ReLU + 3x3, 3x3, 3x3, 1x1
    convs at a quarter width, scaled by 1 / (G * blocks)^2) at hidden * multiplier channels with 2x2 max-pooling
    between groups, ReLU + a 1x1 conv to `vocab`."""

    type: Literal["dvae_encoder"]
    input: Ref
    hidden: PositiveInt = 256
    """Base channel count; group g runs at hidden * multipliers[g] channels."""
    vocab: PositiveInt = 8192
    """K, the number of image tokens."""
    blocks: PositiveInt = 2
    """Residual blocks per group."""
    multipliers: list[PositiveInt] = Field(default=[1, 2, 4, 8], min_length=1)
    """Channel multiplier of each group, in order; the image is max-pooled 2x2 between groups."""
    temperature: PositiveFloat = 1.0
    """Gumbel-softmax temperature in training (DALL-E anneals it from 1 to 1/16; set per run with --set)."""

    weight_layouts = {"flava": (Rule("blocks.{n*}", "encoder.blocks.{n*}"),)}  # FlavaImageCodebook, prefix ''

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        pixels = require(inputs["input"].get("pixels"), "pixels", 4, "image")
        batch, _, h, w = pixels.shape
        factor = 2 ** (len(self.multipliers) - 1)
        if not (isinstance(h, int) and isinstance(w, int)) or h % factor or w % factor:
            raise CheckError("multipliers", f"{len(self.multipliers)} groups halve the image "
                                            f"{len(self.multipliers) - 1} times, so height and width must divide "
                                            f"by {factor}; {self.input!r} is {h}x{w}")
        if self.hidden % 4:
            raise CheckError("hidden", f"the residual paths are hidden / 4 wide; {self.hidden} does not divide by 4")
        h, w = h // factor, w // factor
        return {"logits": TensorInfo((batch, h * w, self.vocab)), "codes": TensorInfo((batch, h * w), "int64"),
                "onehot": TensorInfo((batch, self.vocab, h, w))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        channels = inputs["input"]["pixels"].shape[1]
        widths = [self.hidden, *(self.hidden * m for m in self.multipliers)]
        return conv(channels, self.hidden, 7) + groups(widths, self.blocks, False) + conv(widths[-1], self.vocab, 1)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.dvae.module import DVAEEncoderModule

        return DVAEEncoderModule(inputs["input"]["pixels"].shape[1], self.hidden, self.vocab, self.blocks,
                                 self.multipliers, self.temperature)
