"""GoogLeNet / Inception v1 image encoder (Szegedy et al. 2015, as torchvision.models.googlenet without the
auxiliary classifiers): the network DeepDream (GA-01) maximises the activations of."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.common import require
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

Row = Annotated[list[PositiveInt], Field(min_length=6, max_length=6)]

TORCHVISION_STAGES = [
    [[64, 96, 128, 16, 32, 32], [128, 128, 192, 32, 96, 64]],
    [[192, 96, 208, 16, 48, 64], [160, 112, 224, 24, 64, 64], [128, 128, 256, 24, 64, 64],
     [112, 144, 288, 32, 64, 64], [256, 160, 320, 32, 128, 128]],
    [[256, 160, 320, 32, 128, 128], [384, 192, 384, 48, 128, 128]],
]
"""Table 1 of the paper: stages 3, 4, 5, rows [#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj]."""

_IMAGE = {"image": {"type": "image", "channels": 3, "height": 32, "width": 32}}
_ROW = [2, 2, 4, 2, 2, 2]
GOOGLENET_EXAMPLES = (
    Example(_IMAGE, {"input": "image", "stem": [4, 4, 8], "stages": [[_ROW], [_ROW, _ROW], [_ROW]], "taps": ["4b"]},
            name="taps"),
    Example(_IMAGE, {"input": "image", "stem": [4, 4, 8], "stages": [[_ROW], [_ROW]], "wide_kernel": 5},
            name="paper_kernel"),
)


def _basic(cin: int, cout: int, kernel: int) -> int:
    """Conv2d without bias + BatchNorm2d (scale and shift)."""
    return cin * cout * kernel * kernel + 2 * cout


def _pooled(size: int, kernel: int) -> int:
    """Max-pool kernel / 2, ceil mode, no padding."""
    return -(-(size - kernel) // 2) + 1


@register("encoders", examples=GOOGLENET_EXAMPLES)
class GoogLeNetEncoder(ComponentConfig):
    """GoogLeNet: image [batch, 3, H, W] -> `features` [batch, C, h, w] (the last Inception block), `pooled`
    [batch, C] (global mean), and `inception_<name>` [batch, C_i, h_i, w_i] for each block named in `taps`.

    Stem: 7x7/2 conv to stem[0], 3x3/2 max-pool, 1x1 conv to stem[1], 3x3 conv to stem[2], 3x3/2 max-pool; then
    the `stages` of Inception blocks ("3a", "3b", "4a", ... by stage and position), a max-pool between stages
    (3x3/2, 2x2/2 before the last one, as torchvision), all pools in ceil mode. A block concatenates a 1x1 conv, a
    1x1 -> 3x3 conv, a 1x1 -> `wide_kernel` conv and a 3x3/1 max-pool -> 1x1 conv; every conv is bias-free with
    BatchNorm (`eps`) and ReLU."""

    type: Literal["googlenet"]
    input: Ref
    stem: Annotated[list[PositiveInt], Field(min_length=3, max_length=3)] = [64, 64, 192]
    """Channels of the stem: the 7x7/2 conv, the 1x1 conv and the 3x3 conv."""
    stages: Annotated[list[Annotated[list[Row], Field(min_length=1)]], Field(min_length=1)] = TORCHVISION_STAGES
    """Inception blocks per stage, rows [#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj]."""
    wide_kernel: Literal[3, 5] = 3
    """Kernel of the "5x5" branch: 3 in torchvision's GoogLeNet (its known bug, kept for its weights), 5 in the
    paper."""
    taps: list[str] = []
    """Blocks whose outputs are also emitted (`4c` -> `inception_4c`): DeepDream's layers."""
    eps: PositiveFloat = 1e-3

    def names(self) -> list[str]:
        return [f"{3 + s}{chr(97 + b)}" for s, stage in enumerate(self.stages) for b in range(len(stage))]

    def _shapes(self, inputs: dict[str, Bundle]) -> tuple[TensorInfo, dict[str, tuple[int, int, int]]]:
        """The pixels and (channels, h, w) after each block."""
        pixels = require(inputs["input"].get("pixels"), "pixels", 4, "image")
        h, w = pixels.shape[2:]
        if not all(isinstance(v, int) for v in (h, w)):
            raise CheckError("input", f"googlenet needs a fixed image size; {self.input!r} has {list(pixels.shape)}")
        names = self.names()
        for i, tap in enumerate(self.taps):
            if tap not in names:
                raise CheckError(("taps", i), f"no Inception block {tap!r}; the blocks are {names}")
        h, w = ((v - 1) // 2 + 1 for v in (h, w))  # 7x7/2 conv, padding 3
        shapes, names_iter = {}, iter(names)
        for s, stage in enumerate(self.stages):
            kernel = 2 if s == len(self.stages) - 1 and s > 0 else 3
            for _ in range(2 if s == 0 else 1):  # the stem's two pools, or the pool between stages
                if min(h, w) < kernel:
                    raise CheckError("input", f"the {h}x{w} feature map before stage {3 + s} is smaller than its "
                                              f"{kernel}x{kernel} max-pool: give a larger image or fewer stages")
                h, w = _pooled(h, kernel), _pooled(w, kernel)
            for row in stage:
                shapes[next(names_iter)] = (row[0] + row[2] + row[4] + row[5], h, w)
        return pixels, shapes

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        pixels, shapes = self._shapes(inputs)
        batch, (c, h, w) = pixels.shape[0], list(shapes.values())[-1]
        taps = {f"inception_{t}": TensorInfo((batch, *shapes[t])) for t in self.taps}
        return {"features": TensorInfo((batch, c, h, w)), "pooled": TensorInfo((batch, c)), **taps}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        pixels, _ = self._shapes(inputs)
        s0, s1, s2 = self.stem
        total = _basic(pixels.shape[1], s0, 7) + _basic(s0, s1, 1) + _basic(s1, s2, 3)
        cin = s2
        for row in (r for stage in self.stages for r in stage):
            c1, c3r, c3, c5r, c5, pool = row
            total += (_basic(cin, c1, 1) + _basic(cin, c3r, 1) + _basic(c3r, c3, 3) + _basic(cin, c5r, 1)
                      + _basic(c5r, c5, self.wide_kernel) + _basic(cin, pool, 1))
            cin = c1 + c3 + c5 + pool
        return total

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.googlenet.module import GoogLeNet

        pixels, _ = self._shapes(inputs)
        return GoogLeNet(pixels.shape[1], self.stem, self.stages, self.names(), self.wide_kernel, self.taps, self.eps)
