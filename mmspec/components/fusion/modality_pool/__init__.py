"""Presence-aware fusion: pool one vector per modality over the modalities each example actually has.

Optional modalities (`optional: true`) carry a `present` flag per example; this fusion reads those flags and
pools only the present modalities' vectors (MultiSurv's element-wise max, Cheerla & Gevaert's average), so a
missing modality's placeholder values never reach the output. Multimodal dropout (hiding whole modalities of
random examples while training) is a training-time behaviour of the same node and is absent from exports.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmspec.components.common import PresentPorts
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, Probability, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_A = {"type": "vector", "dim": 6}
MODALITY_POOL_EXAMPLES = (
    Example(  # MultiSurv: max over the present modalities' vectors
        {"a": _A, "b": {**_A, "optional": True}, "c": {**_A, "optional": True}},
        {"inputs": ["a", "b.values", "c.values"], "present": [None, "b.present", "c.present"], "op": "max"},
        name="max",
    ),
    Example(  # Cheerla & Gevaert: mean of the present embeddings, multimodal dropout while training
        {"a": {**_A, "optional": True}, "b": {**_A, "optional": True}},
        {"inputs": ["a.values", "b.values"], "present": ["a.present", "b.present"], "dropout": 0.25},
        name="mean_dropout",
    ),
    Example({"a": _A, "b": _A}, {"inputs": ["a", "b"], "op": "sum"}, name="sum"),
)


def _vector(bundle: Bundle, ref: str, at: tuple) -> TensorInfo:
    if len(bundle) != 1:
        raise CheckError(at, f"{ref!r} is a bundle of {sorted(bundle)}; reference one vector, e.g. "
                             f"'{ref}.{'values' if 'values' in bundle else sorted(bundle)[-1]}'")
    x = next(iter(bundle.values()))
    if x.rank != 2 or not x.dtype.startswith("float"):
        raise CheckError(at, f"{ref!r} has shape {list(x.shape)} ({x.dtype}); modality_pool pools one float vector "
                             f"[batch, D] per modality")
    return x


@register("fusion", examples=MODALITY_POOL_EXAMPLES)
class ModalityPool(PresentPorts, ComponentConfig):
    """Vectors [batch, D] of several modalities -> `fused` [batch, D]: their `mean`, `max` or `sum` over the
    modalities present in each example. `present[i]` is the presence flag of `inputs[i]` (an optional
    modality's `<m>.present`, int64 [batch], 1 = present) or null for a modality every example has. An example
    with no modality present gets zeros.

    `dropout`: multimodal dropout; while training, each present modality of each example is treated as
    missing with this probability (the mean then averages the rest). Evaluation and exports ignore it."""

    type: Literal["modality_pool"]
    inputs: list[Ref] = Field(min_length=2)
    present: list[Ref | None] = []
    """One entry per input, in the same order: a presence flag or null; empty: every modality is present."""
    op: Literal["mean", "max", "sum"] = "mean"
    """How the present modalities' vectors combine."""
    dropout: Probability = 0.0

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        if self.present and len(self.present) != len(self.inputs):
            raise CheckError("present", f"present has {len(self.present)} entries for {len(self.inputs)} inputs; "
                                        f"give one per input, in order (null for a modality every example has)")
        first = _vector(inputs["0"], self.inputs[0], ("inputs", 0))
        for i, ref in enumerate(self.inputs[1:], 1):
            x = _vector(inputs[str(i)], ref, ("inputs", i))
            if x.shape != first.shape:
                raise CheckError(("inputs", i), f"{ref!r} has shape {list(x.shape)} but {self.inputs[0]!r} has "
                                                f"{list(first.shape)}; project the modalities to one width first")
        for i, ref in enumerate(self.present):
            if ref is None:
                continue
            bundle = inputs[f"present{i}"]
            flag = next(iter(bundle.values())) if len(bundle) == 1 else None
            if flag is None or flag.rank != 1 or flag.dtype != "int64":
                got = f"shape {list(flag.shape)} ({flag.dtype})" if flag else f"a bundle of {sorted(bundle)}"
                raise CheckError(("present", i), f"{ref!r} is {got}; a presence flag is int64 [batch]: the "
                                                 f"`present` of a modality with `optional: true`")
            if flag.shape[0] != first.shape[0]:
                raise CheckError(("present", i), f"{ref!r} has batch axis {flag.shape[0]!r} but the inputs have "
                                                 f"{first.shape[0]!r}")
        return {"fused": first}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        return 0

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.fusion.modality_pool.module import ModalityPoolModule

        flags = [i for i, ref in enumerate(self.present) if ref is not None]
        return ModalityPoolModule(len(self.inputs), flags, self.op, self.dropout)
