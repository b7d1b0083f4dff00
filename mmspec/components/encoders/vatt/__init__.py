"""VATT tower (Akbari et al. 2021): raw video or waveform cut into non-overlapping patches (video voxel tubes,
waveform segments), a linear projection, factorised learned positions per patch axis summed and layer-normed,
DropToken while training, an aggregation token and a pre-norm Transformer stack with a final LayerNorm."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from mmspec.components.common import StackConfig
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, PositiveInt, Probability, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_STACK = {"width": 8, "layers": 1, "heads": 2, "ffn": 16}
VATT_EXAMPLES = (
    Example(  # video: 4 frames of 3 x 8 x 8, tubes of 2 x 4 x 4 -> 2 x 2 x 2 tokens, half kept while training
        {"video": {"type": "image", "channels": 3, "height": 8, "width": 8, "count": 4}},
        {"input": "video", "patch": [2, 4, 4], **_STACK},
        name="video",
    ),
    Example(  # waveform: 64 mono samples in segments of 8 -> 8 tokens, no DropToken
        {"audio": {"type": "sequence", "dim": 1, "length": 64}},
        {"input": "audio", "patch": [8], "keep": 1.0, **_STACK},
        name="waveform",
    ),
)


@register("encoders", examples=VATT_EXAMPLES)
class VATTEncoder(StackConfig, ComponentConfig):
    """One VATT modality tower. A video is an image modality with `count` frames [batch, T, C, H, W] and `patch`
    [t, h, w] (voxel tubes, a Conv3d with stride = kernel); a waveform is a sequence modality of fixed length
    [batch, L, C] and `patch` [l] (segments of l samples). Each patch axis has its own learned position table
    (VATT's temporal / vertical / horizontal buckets); their sum goes through a LayerNorm before it is added.
    While training DropToken keeps a random `keep` share of the patch tokens (one draw per batch, as the official
    code); the aggregation token is prepended; `layers` pre-norm blocks, then a final LayerNorm.

    Emits `sequence` [batch, 1 + N, width] (every patch token at inference) and `pooled` [batch, width] (the
    aggregation token)."""

    reads_items: ClassVar[bool] = True
    """A video's frames are the modality's items; the tower reads them itself (no folding into the batch)."""
    type: Literal["vatt"]
    input: Ref
    """A video (an image modality with `count` frames) or a waveform (a sequence modality of fixed length)."""
    patch: Annotated[list[PositiveInt], Field(min_length=1, max_length=3)] = [4, 16, 16]
    """Patch size along each patch axis: [frames, rows, columns] of a video, [samples] of a waveform."""
    keep: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    """DropToken: share of the patch tokens kept while training (VATT's patch_sampling_rate); 1 = no drop."""
    width: PositiveInt = 768
    """Width of the tokens and of the tower's transformer layers."""
    norm: Literal["pre"] = "pre"
    """Layer placement: `pre` (x + f(LN(x))), then a final LayerNorm."""
    eps: PositiveFloat = 1e-6
    dropout: Probability = 0.0
    attention_dropout: Probability = 0.0

    def grid(self, inputs: dict[str, Bundle]) -> tuple[int, tuple[int, ...]]:
        """(input channels, tokens along each patch axis)."""
        bundle = inputs["input"]
        pixels, values = bundle.get("pixels"), bundle.get("values")
        if pixels is not None and pixels.rank == 5 and len(self.patch) == 3:
            _, t, c, h, w = pixels.shape
            sizes = (t, h, w)
        elif values is not None and values.rank == 3 and len(self.patch) == 1:
            _, length, c = values.shape
            sizes = (length,)
        else:
            raise CheckError("input", f"{self.input!r} must be a video (an image modality with `count` frames) "
                                      f"with a 3-number patch, or a sequence modality (a waveform) with a 1-number "
                                      f"patch; it gives { {k: list(v.shape) for k, v in bundle.items()} } and patch "
                                      f"{self.patch}")
        if not all(isinstance(s, int) for s in sizes):
            raise CheckError("input", f"{self.input!r} needs fixed sizes on its patch axes, not {sizes}")
        if any(s % p for s, p in zip(sizes, self.patch, strict=True)):
            raise CheckError("patch", f"patch {self.patch} does not divide the input's sizes {list(sizes)}")
        return c, tuple(s // p for s, p in zip(sizes, self.patch, strict=True))

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        self.check_heads()
        _, grid = self.grid(inputs)
        tokens = 1
        for g in grid:
            tokens *= g
        if int(tokens * self.keep) < 1:
            raise CheckError("keep", f"keep {self.keep} keeps no token of {tokens}; raise keep")
        batch = next(iter(inputs["input"].values())).shape[0]
        return {"sequence": TensorInfo((batch, tokens + 1, self.width)), "pooled": TensorInfo((batch, self.width))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        from mmspec.components import params as P

        channels, grid = self.grid(inputs)
        fan_in = channels
        for p in self.patch:
            fan_in *= p
        w = self.width
        return P.linear(fan_in, w) + sum(grid) * w + 2 * P.layer_norm(w) + w + P.stack(self)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.vatt.module import VATTModule

        channels, grid = self.grid(inputs)
        return VATTModule(self, channels, grid)
