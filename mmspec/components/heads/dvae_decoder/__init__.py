"""The dVAE decoder of DALL-E (official openai/DALL-E `Decoder`; not in any installable package): one-hot or
relaxed codes [batch, K, h, w] in, the logit-Laplace mean and log-scale of every pixel out. Composed from
`mmspec.blocks.dvae`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmspec.components.common import require
from mmspec.components.encoders.dvae import conv, groups
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

DVAE_DECODER_EXAMPLES = (
    Example({"z": {"type": "image", "channels": 6, "height": 2, "width": 3}},
            {"input": "z", "hidden": 4, "init": 4, "blocks": 1, "multipliers": [1, 2]}, name="two_groups"),
)


@register("heads", examples=DVAE_DECODER_EXAMPLES)
class DVAEDecoderConfig(ComponentConfig):
    """Codes [batch, K, h, w] -> `pixels` [batch, channels, h*f, w*f] (the mean) and `log_scale` (same shape),
    f = 2^(G-1): a 1x1 conv to `init`, G groups of `blocks` residual blocks (ReLU + 1x1, 3x3, 3x3, 3x3 convs at a
    quarter width, scaled by 1 / (G * blocks)^2) at hidden * multiplier channels, widest first, nearest x2 between
    groups, ReLU + a 1x1 conv to 2 * channels."""

    type: Literal["dvae_decoder"]
    input: Ref
    """The codes: an encoder's `onehot` (or an image-shaped modality of K channels)."""
    hidden: PositiveInt = 256
    """Base channel count; group g runs at hidden * multipliers[g] channels."""
    init: PositiveInt = 128
    """Channels of the first 1x1 conv on the codes."""
    blocks: PositiveInt = 2
    """Residual blocks per group."""
    multipliers: list[PositiveInt] = Field(default=[1, 2, 4, 8], min_length=1)
    """Channel multiplier of each group, as the encoder lists them; the decoder runs them widest first."""
    channels: PositiveInt = 3
    """Image channels of `pixels`."""

    def _codes(self, inputs: dict[str, Bundle]) -> TensorInfo:
        bundle = inputs["input"]
        return require(bundle["pixels"] if "pixels" in bundle else next(iter(bundle.values())), "codes", 4,
                       "code grid [batch, K, h, w]")

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        batch, _, h, w = self._codes(inputs).shape
        if self.hidden % 4:
            raise CheckError("hidden", f"the residual paths are hidden / 4 wide; {self.hidden} does not divide by 4")
        f = 2 ** (len(self.multipliers) - 1)
        out = TensorInfo((batch, self.channels, h * f if isinstance(h, int) else h, w * f if isinstance(w, int) else w))
        return {"pixels": out, "log_scale": out}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        widths = [self.init, *(self.hidden * m for m in reversed(self.multipliers))]
        return (conv(self._codes(inputs).shape[1], self.init, 1) + groups(widths, self.blocks, True)
                + conv(widths[-1], 2 * self.channels, 1))

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.dvae_decoder.module import DVAEDecoderModule

        return DVAEDecoderModule(self._codes(inputs).shape[1], self.channels, self.hidden, self.init, self.blocks,
                                 self.multipliers)
