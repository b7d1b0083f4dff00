"""CLIP's modified ResNet image tower (Radford et al. 2021): a three-conv stem, anti-aliased (average-pool)
downsampling inside the bottlenecks, and attention pooling in place of global average pooling."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.common import require
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_IMAGE = {"image": {"type": "image", "channels": 3, "height": 64, "width": 64}}
CLIP_RESNET_EXAMPLES = (
    Example(_IMAGE, {"input": "image", "layers": [1, 2, 1, 1], "width": 8, "heads": 4, "output": 12}, name="tiny"),
)


@register("encoders", examples=CLIP_RESNET_EXAMPLES)
class ClipResNetEncoder(ComponentConfig):
    """Stem: three 3x3 convs (stride 2, then 1, 1; width/2, width/2, width channels, each BatchNorm + ReLU) and a
    2x2 average pool. Four stages of bottlenecks (planes width, 2w, 4w, 8w; expansion 4); a strided block
    average-pools before its last 1x1 conv, and its shortcut is average pool + 1x1 conv + BatchNorm. Attention
    pooling: the mean feature, prepended to the h*w features, plus learned positions; one multi-head attention
    whose only query is that mean token, then a linear map to `output`. Emits `features` [batch, 32 width, h, w]
    and `pooled` [batch, output]."""

    type: Literal["clip_resnet"]
    input: Ref
    layers: Annotated[list[PositiveInt], Field(min_length=4, max_length=4)] = [3, 4, 6, 3]
    """Bottlenecks per stage (RN50 3-4-6-3, RN101 3-4-23-3, RN50x4 4-6-10-6)."""
    width: PositiveInt = 64
    """Stem and first-stage width; the stages use width, 2, 4 and 8 times it (x4 after each bottleneck)."""
    heads: PositiveInt | None = None
    """Attention-pool heads; null: 32 width / 64 (CLIP's)."""
    output: PositiveInt = 1024
    """Width of the pooled embedding (CLIP's joint space)."""
    eps: PositiveFloat = 1e-5

    def channels(self) -> int:
        return 32 * self.width

    def blocks(self) -> list[tuple[int, int, int]]:
        """(in channels, planes, stride) of every bottleneck."""
        out, inplanes = [], self.width
        for stage, count in enumerate(self.layers):
            planes = self.width * 2**stage
            for j in range(count):
                out.append((inplanes, planes, 2 if stage and not j else 1))
                inplanes = 4 * planes
        return out

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        pixels = require(inputs["input"].get("pixels"), "pixels", 4, "image")
        batch, _, h, w = pixels.shape
        if self.width < 2:
            raise CheckError("width", f"width {self.width} leaves the stem's first two convs width/2 = 0 channels; "
                                      "use 2 or more")
        if h % 32 or w % 32:
            raise CheckError("input", f"the image {h}x{w} must have sides divisible by 32 (the tower strides 32)")
        heads = self.heads or self.channels() // 64
        if heads < 1 or self.channels() % heads:
            raise CheckError("heads", f"{self.channels()} channels do not split into {heads} heads")
        return {"features": TensorInfo((batch, self.channels(), h // 32, w // 32)),
                "pooled": TensorInfo((batch, self.output))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Convs and BatchNorm scales/shifts of stem and bottlenecks, then the attention pool's positions and its
        q, k, v and output projections."""
        half, w = self.width // 2, self.width
        total = inputs["input"]["pixels"].shape[1] * half * 9 + half * half * 9 + half * w * 9 + 2 * (2 * half + w)
        for inplanes, planes, stride in self.blocks():
            total += inplanes * planes + planes * planes * 9 + planes * 4 * planes + 2 * (6 * planes)
            if stride > 1 or inplanes != 4 * planes:
                total += inplanes * 4 * planes + 2 * 4 * planes
        _, _, h, wd = inputs["input"]["pixels"].shape
        e = self.channels()
        return total + ((h // 32) * (wd // 32) + 1) * e + 3 * (e * e + e) + e * self.output + self.output

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.clip_resnet.module import ClipResNetModule

        _, channels, h, w = inputs["input"]["pixels"].shape
        return ClipResNetModule(channels, self.width, self.blocks(), (h // 32) * (w // 32),
                                self.heads or self.channels() // 64, self.output, self.eps)
