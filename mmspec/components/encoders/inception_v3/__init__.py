"""Inception-v3 image encoder (Szegedy et al. 2016, as torchvision.models.inception_v3 up to Mixed_7c, without the
auxiliary classifier and the 1000-way fc): the ImageNet network of AttnGAN's DAMSM image encoder (T2I-04, T2I-05),
which reads its 17x17 Mixed_6e map as region features and its pooled Mixed_7c vector as the image code."""

from __future__ import annotations

from typing import Literal

from mmspec.components.common import require_float
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

MIN_SIZE = 75
"""The smallest square input that keeps every stride-2 3x3 step (no padding) at least 1 pixel: 75 -> 37 -> 35 -> 17
-> 15 -> 7 -> 3 (Mixed_6a) -> 1 (Mixed_7a)."""

INCEPTION_EXAMPLES = (
    Example({"image": {"type": "image", "channels": 3, "height": 32, "width": 32}},
            {"input": "image", "resize": 75, "divisor": 16}, name="resized"),
)


def _conv(cin: int, cout: int, kh: int, kw: int | None = None) -> int:
    """Conv2d without bias + BatchNorm2d (scale and shift)."""
    return cin * cout * kh * (kh if kw is None else kw) + 2 * cout


def _down(n: int) -> int:
    """A 3x3 stride-2 conv or max-pool without padding."""
    return (n - 3) // 2 + 1


def block_params(d: int, channels: int) -> list[tuple[str, int, int]]:
    """(name, parameters, output channels) of the stem convs and the Mixed blocks, every width divided by `d`."""
    c = lambda n: n // d  # noqa: E731
    out: list[tuple[str, int, int]] = []
    cin = channels
    for name, cout, k in (("Conv2d_1a_3x3", 32, 3), ("Conv2d_2a_3x3", 32, 3), ("Conv2d_2b_3x3", 64, 3),
                          ("Conv2d_3b_1x1", 80, 1), ("Conv2d_4a_3x3", 192, 3)):
        out.append((name, _conv(cin, c(cout), k), c(cout)))
        cin = c(cout)
    for name, pool in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):  # InceptionA
        n = (_conv(cin, c(64), 1) + _conv(cin, c(48), 1) + _conv(c(48), c(64), 5) + _conv(cin, c(64), 1)
             + _conv(c(64), c(96), 3) + _conv(c(96), c(96), 3) + _conv(cin, c(pool), 1))
        cin_next = c(64) + c(64) + c(96) + c(pool)
        out.append((name, n, cin_next))
        cin = cin_next
    n = _conv(cin, c(384), 3) + _conv(cin, c(64), 1) + _conv(c(64), c(96), 3) + _conv(c(96), c(96), 3)  # InceptionB
    cin = c(384) + c(96) + cin
    out.append(("Mixed_6a", n, cin))
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):  # InceptionC
        c7 = c(c7)
        n = (_conv(cin, c(192), 1) + _conv(cin, c7, 1) + _conv(c7, c7, 1, 7) + _conv(c7, c(192), 7, 1)
             + _conv(cin, c7, 1) + 3 * _conv(c7, c7, 7, 1) + _conv(c7, c(192), 1, 7) + _conv(cin, c(192), 1))
        cin = 4 * c(192)
        out.append((name, n, cin))
    n = (_conv(cin, c(192), 1) + _conv(c(192), c(320), 3) + _conv(cin, c(192), 1) + _conv(c(192), c(192), 1, 7)
         + _conv(c(192), c(192), 7, 1) + _conv(c(192), c(192), 3))  # InceptionD
    cin = c(320) + c(192) + cin
    out.append(("Mixed_7a", n, cin))
    for name in ("Mixed_7b", "Mixed_7c"):  # InceptionE
        n = (_conv(cin, c(320), 1) + _conv(cin, c(384), 1) + 2 * _conv(c(384), c(384), 1, 3) + _conv(cin, c(448), 1)
             + _conv(c(448), c(384), 3) + 2 * _conv(c(384), c(384), 1, 3) + _conv(cin, c(192), 1))
        cin = c(320) + 4 * c(384) + c(192)
        out.append((name, n, cin))
    return out


@register("encoders", examples=INCEPTION_EXAMPLES)
class InceptionV3Encoder(ComponentConfig):
    """Inception-v3: image [batch, C, H, W] (resized bilinearly to `resize` x `resize` first, as DAMSM resizes to
    299) -> `features` [batch, 2048, h, w] (Mixed_7c), `pooled` [batch, 2048] (its global mean: DAMSM's image
    vector) and `regions` [batch, r * r, 768] (the Mixed_6e map, positions row by row: DAMSM's 17 x 17 sub-region
    features). Stem: 3x3/2, 3x3, 3x3 (padding 1) convs, 3x3/2 max-pool, 1x1 and 3x3 convs, 3x3/2 max-pool; then
    Mixed_5b-5d (InceptionA), 6a (B), 6b-6e (C, 7x1 / 1x7 factorised), 7a (D), 7b-7c (E), as torchvision; every conv
    bias-free with BatchNorm (`eps`) and ReLU. The input needs at least 75 x 75 pixels (after `resize`)."""

    type: Literal["inception_v3"]
    input: Ref
    """An image: a modality's `pixels`, or one [batch, C, H, W] float tensor of another node (a generated image)."""
    resize: PositiveInt | None = 299
    """Bilinear resize (align_corners false) to this square size before the stem; null: the input size as it is."""
    divisor: Literal[1, 2, 4, 8, 16] = 1
    """Every channel width divided by this (1: torchvision's Inception-v3; more: a small network of the same
    structure for tests)."""
    eps: PositiveFloat = 1e-3

    def _pixels(self, inputs: dict[str, Bundle]) -> tuple[str, TensorInfo]:
        bundle = inputs["input"]
        found = ["pixels"] if "pixels" in bundle else [k for k, t in sorted(bundle.items()) if t.rank == 4]
        if len(found) != 1:
            raise CheckError("input", f"{self.input!r} emits {sorted(bundle)}; an image [batch, C, H, W] is needed")
        x = require_float(bundle[found[0]], self.input)
        if not all(isinstance(v, int) for v in x.shape[1:]):
            raise CheckError("input", f"inception_v3 needs a fixed image size; {self.input!r} has {list(x.shape)}")
        return found[0], x

    def _sizes(self, inputs: dict[str, Bundle]) -> tuple[TensorInfo, int, int]:
        """(the image, the side of Mixed_6e's map, the side of Mixed_7c's map)."""
        _, x = self._pixels(inputs)
        h, w = (self.resize, self.resize) if self.resize else x.shape[2:]
        if min(h, w) < MIN_SIZE:
            field = "resize" if self.resize else "input"
            raise CheckError(field, f"inception_v3 needs at least {MIN_SIZE} x {MIN_SIZE} pixels (its stride-2 "
                                    f"steps have no padding); it would read {h} x {w}")
        if h != w:
            raise CheckError("input", f"inception_v3 reads square images here; {self.input!r} is {h} x {w}: set "
                                      f"resize")
        six = _down(_down(_down(_down(h) - 2) - 2))  # 3x3/2 conv, 3x3 conv, pool, 3x3 conv, pool, Mixed_6a
        return x, six, _down(six)

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        x, six, seven = self._sizes(inputs)
        widths = block_params(self.divisor, x.shape[1])
        local, top = widths[-4][2], widths[-1][2]  # Mixed_6e, Mixed_7c
        b = x.shape[0]
        return {"features": x.with_shape(b, top, seven, seven), "pooled": x.with_shape(b, top),
                "regions": x.with_shape(b, six * six, local)}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        x, _, _ = self._sizes(inputs)
        return sum(n for _, n, _ in block_params(self.divisor, x.shape[1]))

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.inception_v3.module import InceptionV3

        field, x = self._pixels(inputs)
        return InceptionV3(x.shape[1], self.divisor, self.resize, self.eps, field)
