"""Per-pixel segmentation loss (training-only): U-Net building masks (Sirko et al. 2021)."""

from __future__ import annotations

from typing import Any, Literal

from mmspec.components.objectives.base import LOSS, Objective, Target, require_rank, tensor
from mmspec.registry import Example, register
from mmspec.spec.base import PositiveFloat, Ref
from mmspec.spec.tensors import Bundle, TensorInfo

_IMAGE = {"image": {"type": "image", "channels": 3, "height": 8, "width": 8}}
SEGMENTATION_EXAMPLES = (
    Example(_IMAGE, {"input": "net.logits"},
            {"encoders": {"net": {"type": "unet", "input": "image", "widths": [4, 6], "classes": 1}}},
            outputs=["net.logits"], name="binary"),
    Example(_IMAGE, {"input": "net.logits", "positive_weight": 2.0},
            {"encoders": {"net": {"type": "unet", "input": "image", "widths": [4, 6], "classes": 3}}},
            outputs=["net.logits"], name="classes"),
)


@register("objectives", training_only=True, examples=SEGMENTATION_EXAMPLES)
class PixelCrossEntropy(Objective):
    """Mean per-pixel cross-entropy of logits [batch, K, H, W] against the batch target `mask` [batch, H, W]
    (int64): binary cross-entropy on the one channel when K = 1 (mask 0/1, positives weighted by
    `positive_weight`), softmax cross-entropy over K classes otherwise (mask in [0, K))."""

    type: Literal["pixel_cross_entropy"]
    input: Ref
    positive_weight: PositiveFloat = 1.0
    """K = 1: weight of the positive pixels (buildings are rare); K > 1: ignored."""

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        require_rank(tensor(inputs, "input", self.input, "logits"), 4, "input", "per-pixel logits [batch, K, H, W]",
                     self.input)
        return LOSS

    def targets(self, inputs: dict[str, Bundle], spec: Any) -> dict[str, Target]:
        batch, k, h, w = tensor(inputs, "input", self.input, "logits").shape
        info = TensorInfo((batch, h, w), "int64")
        return {"mask": Target(info, "binary") if k == 1 else Target(info, "classes", int(k))}

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.segmentation.loss import PixelCrossEntropy as Module

        return Module(self.positive_weight)
