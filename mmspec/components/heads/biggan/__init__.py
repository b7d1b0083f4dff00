"""BigGAN-deep's class-conditional generator (Brock, Donahue, Simonyan 2019): a shared class embedding
concatenated with the noise conditions every batch norm; bottleneck residual blocks, self-attention at one
resolution. The Big Sleep (GA-04) optimises this generator's inputs against CLIP."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmspec.components.common import require_float
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_INPUTS = {"noise": {"type": "vector", "dim": 4}, "label": {"type": "vector", "dim": 5}}
BIGGAN_EXAMPLES = (
    Example(_INPUTS, {"input": "noise", "condition": "label", "embed_dim": 3, "width": 4, "channels": [4, 2, 1],
                      "attention": 8, "rgb_conv": 4}),
    Example(_INPUTS, {"input": "noise", "condition": "label", "embed_dim": 3, "width": 8, "channels": [2, 1],
                      "attention": None}, name="no_attention"),
)


def _vector(bundle: Bundle, ref: str, field: str) -> TensorInfo:
    x = require_float(next(iter(bundle.values())), ref, field)
    if x.rank != 2 or not isinstance(x.width, int):
        raise CheckError(field, f"{ref!r} has shape {list(x.shape)}; a vector [batch, D] is needed")
    return x


@register("heads", examples=BIGGAN_EXAMPLES)
class BigGANGeneratorConfig(ComponentConfig):
    """BigGAN-deep generator: noise z [batch, nz] and a class vector [batch, K] (one-hot or soft) -> `image`
    [batch, out_channels, S, S] in [-1, 1], S = 4 * 2^(len(channels) - 1). The condition c = [z, E y] (E: the
    shared class embedding, Linear(K, embed_dim) without bias) feeds a Linear to width * channels[0] x 4 x 4
    and every conditional batch norm (gain 1 + Linear(c), bias Linear(c)). Per channel multiplier after the
    first, two bottleneck residual blocks (BN, ReLU, 1x1 conv to width / reduction; BN, ReLU, [nearest x2],
    3x3 conv; BN, ReLU, 3x3 conv; BN, ReLU, 1x1 conv; the skip keeps the first output channels, [nearest x2]):
    one at the same width and resolution, one that moves to the next multiplier and doubles the resolution.
    SAGAN self-attention sits before the first block at `attention` pixels. Then BN, ReLU, a 3x3 conv to
    `rgb_conv` channels of which the first `out_channels` are kept, tanh. BigGAN-deep 128 is the default."""

    type: Literal["biggan_generator"]
    input: Ref
    """The noise vector z [batch, nz]."""
    condition: Ref
    """The class vector [batch, K]: one-hot for a class, any real vector for a mixture (the Big Sleep optimises
    it)."""
    embed_dim: PositiveInt = 128
    """Width of the shared class embedding."""
    width: PositiveInt = 128
    """Base channel width; stage widths are width * channels[i]."""
    channels: list[PositiveInt] = Field(default=[16, 16, 8, 4, 2, 1], min_length=2)
    """Channel multipliers: of the 4x4 map, then of each stage (two blocks, one doubling the resolution)."""
    attention: PositiveInt | None = 64
    """Resolution of the self-attention layer (null: none); it must be one the generator reaches."""
    reduction: PositiveInt = 4
    """Bottleneck: a block's inner width is its input width divided by this."""
    out_channels: PositiveInt = 3
    """Image channels of `image`."""
    rgb_conv: PositiveInt | None = None
    """Output channels of the last conv, of which the first `out_channels` are the image (the TF-Hub
    BigGAN-deep weights have `width` of them); null: `out_channels`."""
    eps: float = Field(default=1e-4, gt=0)

    def references(self) -> dict[str, str]:
        return {"input": self.input, "condition": self.condition}

    def side(self) -> int:
        return 4 * 2 ** (len(self.channels) - 1)

    def _check(self, inputs: dict[str, Bundle]) -> tuple[int, int]:
        z = _vector(inputs["input"], self.input, "input")
        k = _vector(inputs["condition"], self.condition, "condition")
        if self.attention is not None and self.attention not in {4 * 2**i for i in range(len(self.channels) - 1)}:
            raise CheckError("attention", f"the generator's blocks run at 4 .. {self.side() // 2} pixels, "
                                          f"not {self.attention}")
        if self.attention is not None and (width := self.blocks()[self.attention_index()][0]) < 8:
            raise CheckError("attention", f"the self-attention at {self.attention} pixels would see {width} "
                                          f"channels; its queries and keys take channels / 8, so at least 8")
        if (self.rgb_conv or self.out_channels) < self.out_channels:
            raise CheckError("rgb_conv", f"rgb_conv {self.rgb_conv} < out_channels {self.out_channels}")
        if any(b > a for a, b in zip(self.channels, self.channels[1:], strict=False)):
            raise CheckError("channels", f"channels {self.channels} grow: a block's skip keeps its first output "
                                         f"channels, so each stage is at most as wide as the one before")
        if any(self.width * c < self.reduction for c in self.channels):
            raise CheckError("reduction", "every stage width must be at least `reduction`")
        return z.width, k.width

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        self._check(inputs)
        z = next(iter(inputs["input"].values()))
        return {"image": TensorInfo((z.shape[0], self.out_channels, self.side(), self.side()))}

    def blocks(self) -> list[tuple[int, int, bool]]:
        """(in, out, doubles the resolution) per residual block, in order."""
        w = [self.width * c for c in self.channels]
        return [blk for a, b in zip(w, w[1:], strict=False) for blk in ((a, a, False), (a, b, True))]

    def attention_index(self) -> int | None:
        """Index of the block the self-attention layer precedes."""
        return None if self.attention is None else 2 * (self.attention.bit_length() - 3)

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Parameters `build` will allocate, by formula (budgets before allocation; mmspec.spec.budget)."""
        from mmspec.components.params import linear

        nz, k = self._check(inputs)
        cond = nz + self.embed_dim

        def conv(a: int, b: int, s: int) -> int:
            return a * b * s * s + b

        total = linear(k, self.embed_dim, False) + linear(cond, 16 * self.width * self.channels[0])
        for a, b, _ in self.blocks():
            mid = a // self.reduction
            total += 2 * cond * (a + 3 * mid) + conv(a, mid, 1) + 2 * conv(mid, mid, 3) + conv(mid, b, 1)
        if self.attention is not None:
            c = self.blocks()[self.attention_index()][0]
            total += 2 * c * (c // 8) + 2 * c * (c // 2) + 1
        return total + 2 * self.width * self.channels[-1] + conv(self.width * self.channels[-1],
                                                                 self.rgb_conv or self.out_channels, 3)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.biggan.module import BigGANDeepGenerator
        from mmspec.components.heads.gan.module import Generator

        nz, k = self._check(inputs)
        return Generator(BigGANDeepGenerator(nz, k, self.embed_dim, self.width * self.channels[0], self.blocks(),
                                             self.attention_index(), self.reduction, self.out_channels,
                                             self.rgb_conv or self.out_channels, self.eps))
