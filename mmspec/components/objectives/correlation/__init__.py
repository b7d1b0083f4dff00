"""Correlation maximisation between two views' features (training-only): DeepCorrSurv's pre-training stage,
which makes an image network and a molecular network agree before survival fine-tuning."""

from __future__ import annotations

from typing import Literal

from mmspec.components.objectives.base import LOSS, Objective, require_rank, same_shape, tensor
from mmspec.registry import Example, register
from mmspec.spec.base import PositiveFloat, Ref
from mmspec.spec.tensors import Bundle

CORRELATION_EXAMPLES = (
    Example(
        {"a": {"type": "vector", "dim": 6}, "b": {"type": "vector", "dim": 5}},
        {"input": "fa", "target": "fb"},
        {"heads": {"fa": {"type": "mlp", "input": "a", "dim": 4, "hidden": [8]},
                   "fb": {"type": "mlp", "input": "b", "dim": 4, "hidden": [8]}}},
    ),
)


@register("objectives", training_only=True, examples=CORRELATION_EXAMPLES)
class Correlation(Objective):
    """Negative sum over the D feature dimensions of the Pearson correlation, across the batch, between
    `input` [batch, D] and `target` [batch, D]: -sum_k cov(a_k, b_k) / sqrt(var(a_k) var(b_k) + eps). Both views
    are trained (DeepCorrSurv, Yao et al. 2017). Needs a batch of at least 2 rows."""

    type: Literal["correlation"]
    input: Ref
    target: Ref
    """The other view's features, of the same shape."""
    eps: PositiveFloat = 1e-8
    ref_fields = ("input", "target")

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        a = require_rank(tensor(inputs, "input", self.input), 2, "input", "features [batch, D]", self.input)
        same_shape(a, tensor(inputs, "target", self.target, field="target"), "target", self.input, self.target)
        return LOSS

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.correlation.loss import Correlation as Module

        return Module(self.eps)
