"""UniCL (Yang et al. 2022; Florence's pre-training objective): image-text contrastive learning in which every pair
sharing a label (a class name or a description) is a positive, not only the diagonal."""

from __future__ import annotations

from typing import Any, Literal

from mmspec.components.objectives.base import Target
from mmspec.components.objectives.supervised import _HeadObjective
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, PositiveInt
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_TOWERS = {
    "pa": {"type": "projection", "input": "a", "dim": 4},
    "pb": {"type": "projection", "input": "b", "dim": 4},
    "pair": {"type": "contrastive", "inputs": {"image": "pa", "text": "pb"}},
}
UNICL_EXAMPLES = (
    Example({"a": {"type": "vector", "dim": 6}, "b": {"type": "vector", "dim": 5}}, {"input": "pair", "labels": 3},
            {"heads": _TOWERS}, name="shared_labels"),
)


@register("objectives", training_only=True, examples=UNICL_EXAMPLES)
class UniCL(_HeadObjective):
    """Bidirectional contrastive loss over a `contrastive` head's unit embeddings with the head's learned scale:
    for each row, the mean negative log-softmax over its positives (every row, across processes, with the same
    label), averaged over rows and both directions. With all labels distinct it is `symmetric_infonce`.

    Batch target `labels` [batch]: the label id of each image-text pair."""

    type: Literal["unicl"]
    labels: PositiveInt = 1000
    """Number of label ids (class names and descriptions share one id space); sizes the synthetic batches."""
    max_scale: PositiveFloat | None = 100.0
    """Upper bound of exp(logit_scale), clamped after each step; null: unclamped."""

    def check_head(self, head: ComponentConfig, bundle: Bundle) -> None:
        if head.type != "contrastive" or head.temperature is not None:  # type: ignore[attr-defined]
            raise CheckError("input", f"unicl needs a `contrastive` head with a logit scale; {self.input!r} is not")

    def targets(self, inputs: dict[str, Bundle], spec: Any) -> dict[str, Target]:
        batch = next(iter(inputs["input"].values())).shape[0]
        return {"labels": Target(TensorInfo((batch,), "int64"), "classes", self.labels)}

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.unicl.loss import UniCLLoss

        head = self.input.split(".")[0]
        a, b = ctx.spec.heads[head].inputs
        return UniCLLoss(a, b, ctx.modules[head].logit_scale, self.max_scale)
