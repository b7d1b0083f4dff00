"""DETR's set prediction loss (Carion et al. 2020), as UniT trains its detection tasks: a one-to-one Hungarian
matching of queries to target objects, then class cross-entropy over every query and L1 + generalised-IoU box
losses over the matched ones."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from mmspec.components.objectives.base import LOSS, Objective, Target, require_rank, tensor
from mmspec.registry import Example, register
from mmspec.spec.base import PositiveFloat, PositiveInt, Probability, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_QUERIES = {"q": {"type": "sequence", "dim": 6, "length": 5}}
SET_PREDICTION_EXAMPLES = (
    Example(_QUERIES, {"classes": "cls", "boxes": "box", "objects": 3},
            {"heads": {"cls": {"type": "token_classifier", "input": "q", "num_classes": 4, "transform": False},
                       "box": {"type": "mlp", "input": "q", "dim": 4, "hidden": [6, 6]}}}),
)


@register("objectives", training_only=True, examples=SET_PREDICTION_EXAMPLES)
class SetPrediction(Objective):
    """Class logits [batch, Q, C + 1] (the last class is "no object") and box outputs [batch, Q, 4] (boxes =
    sigmoid of them, centre x, centre y, width, height in image fractions). Each image's targets are matched to
    queries by the Hungarian algorithm on class_weight * (-p(class)) + bbox_weight * L1 + giou_weight * (-GIoU);
    the loss is class_weight * CE over all queries (unmatched ones target "no object", weighted eos_coef) +
    bbox_weight * L1 + giou_weight * (1 - GIoU) summed over matched pairs / number of targets.

    Batch targets: `labels` [batch, objects] class ids, where the "no object" id C marks padding (no object);
    `boxes` [batch, objects, 4] (cx, cy, w, h)."""

    type: Literal["set_prediction"]
    classes: Ref
    """A head emitting `logits` [batch, Q, C + 1]."""
    boxes: Ref
    """A head emitting one [batch, Q, 4] tensor (pre-sigmoid boxes)."""
    objects: PositiveInt = 4
    """Target slots per image in a batch (padded with the "no object" id)."""
    eos_coef: Probability = 0.1
    """Weight of the "no object" class in the cross-entropy."""
    class_weight: PositiveFloat = 1.0
    """Weight of the class term (cross-entropy; -p(class) in the matching cost)."""
    bbox_weight: PositiveFloat = 5.0
    """Weight of the L1 box term (loss and matching cost)."""
    giou_weight: PositiveFloat = 2.0
    """Weight of the generalised-IoU term (1 - GIoU in the loss, -GIoU in the matching cost)."""
    ref_fields: ClassVar[tuple[str, ...]] = ("classes", "boxes")

    def _shapes(self, inputs: dict[str, Bundle]) -> tuple[TensorInfo, TensorInfo]:
        logits = require_rank(tensor(inputs, "classes", self.classes, "logits"), 3, "classes", "logits", self.classes)
        boxes = require_rank(tensor(inputs, "boxes", self.boxes), 3, "boxes", "boxes", self.boxes)
        if boxes.shape[2] != 4 or boxes.shape[:2] != logits.shape[:2]:
            raise CheckError("boxes", f"{self.boxes!r} must give 4 numbers per query of {self.classes!r} "
                                      f"({list(logits.shape[:2])}); it has shape {list(boxes.shape)}")
        return logits, boxes

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        self._shapes(inputs)
        return LOSS

    def targets(self, inputs: dict[str, Bundle], spec: Any) -> dict[str, Target]:
        logits, _ = self._shapes(inputs)
        batch = logits.shape[0]
        return {"labels": Target(TensorInfo((batch, self.objects), "int64"), "classes", int(logits.shape[2])),
                "boxes": Target(TensorInfo((batch, self.objects, 4)), "simplex")}

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.set_prediction.loss import SetPredictionLoss

        return SetPredictionLoss(self.eos_coef, self.class_weight, self.bbox_weight, self.giou_weight)
