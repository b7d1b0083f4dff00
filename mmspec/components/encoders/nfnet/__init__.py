"""NFNet (Brock, De, Smith, Simonyan 2021): a Normalizer-Free ResNet image tower, Flamingo's frozen vision encoder
(NFNet-F6: `depths: [7, 14, 42, 21]`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.common import require
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_IMAGE = {"image": {"type": "image", "channels": 3, "height": 32, "width": 32}}
_TINY = {"input": "image", "widths": [16, 32, 32, 48], "depths": [1, 1, 1, 1], "group_width": 8}
NFNET_EXAMPLES = (
    Example(_IMAGE, _TINY, name="tiny"),
    Example({"image": {**_IMAGE["image"], "count": "media", "max_count": 3}},
            {**_TINY, "depths": [1, 2, 1, 1], "activation": "relu", "two_convs": False, "final_mult": 1},
            name="items"),
)


@register("encoders", examples=NFNET_EXAMPLES)
class NFNetEncoder(ComponentConfig):
    """Pixels [batch, C, H, W] (sides divisible by 32) -> stem of four 3x3 convs (to 16 stride 2, 32, 64,
    widths[0]/2 stride 2), four stages of NF bottleneck blocks (widths, depths; stride 2 at each later stage's first
    block): act(x) * beta -> 1x1 -> grouped 3x3 -> grouped 3x3 -> 1x1 -> squeeze-excite (ReLU, x2) -> x skip gain
    (0 at init) x alpha, plus the shortcut (average pool and a 1x1 conv where the shape changes); every conv has
    scaled weight standardisation, a gain and a bias, and there is no normalisation layer. A final 1x1 conv to
    `final_mult` x the last width and the activation. Emits `features` [batch, F, H/32, W/32], `sequence`
    [batch, H/32 * W/32, F] (the grid row by row, as Flamingo flattens it) and `pooled` [batch, F] (its mean)."""

    type: Literal["nfnet"]
    input: Ref
    widths: Annotated[list[PositiveInt], Field(min_length=4, max_length=4)] = [256, 512, 1536, 1536]
    """Output channels of the four stages (F-series; the `+` models: 384, 768, 2048, 2048)."""
    depths: Annotated[list[PositiveInt], Field(min_length=4, max_length=4)] = [1, 2, 6, 3]
    """Blocks per stage: F0 1-2-6-3; Fk (k = 1..7) (k+1) x (1, 2, 6, 3), F6 7-14-42-21."""
    expansion: Annotated[float, Field(gt=0.0)] = 0.5
    """Bottleneck width / output width (rounded down to whole groups)."""
    group_width: PositiveInt = 128
    """Channels per group of the 3x3 convs."""
    se_ratio: Annotated[float, Field(gt=0.0)] = 0.5
    """Squeeze-excite hidden width / output width."""
    alpha: Annotated[float, Field(gt=0.0)] = 0.2
    """Residual branch scale (the expected variance grows by alpha^2 per block)."""
    activation: Literal["gelu", "relu", "silu"] = "gelu"
    """Nonlinearity, times its variance-preserving gain."""
    two_convs: bool = True
    """Two grouped 3x3 convs per block (NFNet); false: one (NF-ResNet)."""
    final_mult: PositiveInt = 2
    """Width of the final 1x1 conv, in multiples of the last stage's width."""

    def final(self) -> int:
        return self.final_mult * self.widths[-1]

    def blocks(self) -> list[tuple[int, int, int, int, int]]:
        """(in channels, out channels, bottleneck width, groups, stride) of every block."""
        out, ch = [], self.widths[0] // 2
        for stage, (width, depth) in enumerate(zip(self.widths, self.depths, strict=True)):
            for i in range(depth):
                groups = int(width * self.expansion) // self.group_width
                out.append((ch, width, groups * self.group_width, groups, 2 if stage and not i else 1))
                ch = width
        return out

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        pixels = require(inputs["input"].get("pixels"), "pixels", 4, "image")
        batch, _, h, w = pixels.shape
        if not isinstance(h, int) or not isinstance(w, int) or h % 32 or w % 32:
            raise CheckError("input", f"the image {h}x{w} must have fixed sides divisible by 32 (the tower strides 32)")
        if self.widths[0] < 2:
            raise CheckError("widths", "the first width must be 2 or more (the stem ends at widths[0] / 2)")
        if any(groups < 1 for *_, groups, _ in self.blocks()):
            raise CheckError("group_width", f"group_width {self.group_width} exceeds a bottleneck of "
                                            f"{self.expansion} x {min(self.widths)} channels")
        f, cells = self.final(), (h // 32) * (w // 32)
        return {"features": TensorInfo((batch, f, h // 32, w // 32)), "sequence": TensorInfo((batch, cells, f)),
                "pooled": TensorInfo((batch, f))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Every WS conv: weight, gain and bias; per block conv0, two grouped 3x3 (one without `two_convs`), conv2,
        the shortcut where the shape changes, the squeeze-excite's two biased 1x1 convs and the skip gain."""

        def conv(cin: int, cout: int, k: int, groups: int = 1) -> int:
            return cout * (cin // groups) * k * k + 2 * cout

        c = inputs["input"]["pixels"].shape[1]
        total = conv(c, 16, 3) + conv(16, 32, 3) + conv(32, 64, 3) + conv(64, self.widths[0] // 2, 3)
        for cin, cout, width, groups, stride in self.blocks():
            total += conv(cin, width, 1) + (2 if self.two_convs else 1) * conv(width, width, 3, groups)
            total += conv(width, cout, 1) + 1
            if cin != cout or stride > 1:
                total += conv(cin, cout, 1)
            se = max(1, int(cout * self.se_ratio))
            total += 2 * cout * se + se + cout
        return total + conv(self.widths[-1], self.final(), 1)

    def internal_shapes(self, inputs: dict[str, Bundle], ctx) -> list[tuple]:
        batch, _, h, w = inputs["input"]["pixels"].shape
        return [(batch, max(self.widths), h // 4, w // 4)]

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.nfnet.module import NFNetModule

        return NFNetModule(self, inputs["input"]["pixels"].shape[1])
