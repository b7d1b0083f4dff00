"""Objectives on tabular and multimodal embeddings: Cheerla & Gevaert's cross-modal similarity loss and the
logistic (binary cross-entropy) loss of Wide & Deep."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from mmspec.components.common import PresentPorts
from mmspec.components.objectives.base import LOSS, Objective, Target, require_rank, tensor
from mmspec.registry import Example, register
from mmspec.spec.base import PositiveFloat, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_A = {"type": "vector", "dim": 6}
_NETS = {"heads": {"ea": {"type": "mlp", "input": "a.values", "dim": 4},
                   "eb": {"type": "mlp", "input": "b.values", "dim": 4}}}
SIMILARITY_EXAMPLES = (
    Example({"a": {**_A, "optional": True}, "b": {**_A, "optional": True}},
            {"inputs": ["ea", "eb"], "present": ["a.present", "b.present"], "margin": 0.1}, _NETS, name="present"),
    Example({"a": _A, "b": _A}, {"inputs": ["ea", "eb"]},
            {"heads": {"ea": {"type": "mlp", "input": "a", "dim": 4}, "eb": {"type": "mlp", "input": "b", "dim": 4}}},
            name="always_present"),
)
BCE_EXAMPLES = (
    Example({"x": _A}, {"input": "logit"}, {"heads": {"logit": {"type": "mlp", "input": "x", "dim": 1}}}),
)


@register("objectives", training_only=True, examples=SIMILARITY_EXAMPLES)
class ModalitySimilarity(PresentPorts, Objective):
    """Cheerla & Gevaert's similarity loss on modality embeddings [batch, D]: for every pair of modalities
    (m, n) and patients a != b, max(0, margin - cos(a_m, a_n) + cos(a_m, b_n)), averaged over the terms whose
    two embeddings are both present. Pulls one patient's embeddings of different modalities together and
    pushes other patients' apart. No data targets."""

    type: Literal["modality_similarity"]
    inputs: list[Ref] = Field(min_length=2)
    present: list[Ref | None] = []
    """Presence flag of each input (an optional modality's `<m>.present`) or null; empty: all present."""
    margin: PositiveFloat = 0.1
    """Margin of the hinge between a patient's own and another patient's cosine similarity."""
    ref_fields = ()

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        if self.present and len(self.present) != len(self.inputs):
            raise CheckError("present", f"present has {len(self.present)} entries for {len(self.inputs)} inputs; "
                                        f"give one per input (null for a modality every example has)")
        first = require_rank(tensor(inputs, "0", self.inputs[0]), 2, ("inputs", 0), "embeddings [batch, D]",
                             self.inputs[0])
        for i, ref in enumerate(self.inputs[1:], 1):
            x = require_rank(tensor(inputs, str(i), ref), 2, ("inputs", i), "embeddings [batch, D]", ref)
            if x.shape != first.shape:
                raise CheckError(("inputs", i), f"{ref!r} has shape {list(x.shape)} but {self.inputs[0]!r} has "
                                                f"{list(first.shape)}; compared embeddings need one width")
        for i, ref in enumerate(self.present):
            if ref is not None:
                flag = tensor(inputs, f"present{i}", ref)
                if flag.rank != 1 or flag.dtype != "int64":
                    raise CheckError(("present", i), f"{ref!r} has shape {list(flag.shape)} ({flag.dtype}); a "
                                                     f"presence flag is int64 [batch] (an optional modality's "
                                                     f"`present`)")
        return LOSS

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.similarity.loss import ModalitySimilarity as Module

        return Module(len(self.inputs), [i for i, r in enumerate(self.present) if r is not None], self.margin)


@register("objectives", training_only=True, examples=BCE_EXAMPLES)
class BinaryCrossEntropy(Objective):
    """Logistic loss of one logit per example [batch] or [batch, 1] (Wide & Deep's sigmoid output).

    Batch target `labels` [batch] (0/1)."""

    type: Literal["binary_cross_entropy"]
    input: Ref

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        logit = require_rank(tensor(inputs, "input", self.input), (1, 2), "input", "logits", self.input)
        if logit.rank == 2 and logit.shape[1] != 1:
            raise CheckError("input", f"one logit per example is needed ([batch] or [batch, 1]); {self.input!r} is "
                                      f"{list(logit.shape)}")
        return LOSS

    def targets(self, inputs: dict[str, Bundle], spec: Any) -> dict[str, Target]:
        batch = tensor(inputs, "input", self.input).shape[:1]
        return {"labels": Target(TensorInfo(batch, "int64"), "binary")}

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.similarity.loss import BinaryCrossEntropy as Module

        return Module()
