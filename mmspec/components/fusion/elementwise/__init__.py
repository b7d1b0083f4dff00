"""Element-wise and concatenation fusion of vectors or sequences."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo


def _single(inputs: dict[str, Bundle], refs: list[str]) -> list[TensorInfo]:
    tensors = []
    for i, (bundle, ref) in enumerate(zip(inputs.values(), refs, strict=True)):
        if len(bundle) != 1:
            raise CheckError(
                ("inputs", i),
                f"input {ref!r} is a bundle of {sorted(bundle)}; reference one field, e.g. '{ref}.{sorted(bundle)[0]}'",
            )
        tensors.append(next(iter(bundle.values())))
    return tensors


ELEMENTWISE_EXAMPLES = tuple(
    Example(
        {"a": {"type": "vector", "dim": 6}, "b": {"type": "vector", "dim": 6}},
        {"inputs": ["a", "b"], "op": op},
        name=op,
    )
    for op in ("product", "sum", "mean")
)
CONCAT_EXAMPLES = (
    Example({"a": {"type": "vector", "dim": 6}, "b": {"type": "vector", "dim": 3}}, {"inputs": ["a", "b"]}),
)


@register("fusion", examples=ELEMENTWISE_EXAMPLES)
class ElementwiseFusion(ComponentConfig):
    """Combine same-shaped tensors by `product` (ViLBERT's h_IMG * h_CLS), `sum` or `mean`. Emits `fused`."""

    type: Literal["elementwise"]
    inputs: list[Ref] = Field(min_length=2)
    op: Literal["product", "sum", "mean"] = "product"

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        tensors = _single(inputs, self.inputs)
        for ref, t in zip(self.inputs[1:], tensors[1:], strict=True):
            if t.shape != tensors[0].shape:
                raise CheckError(
                    "inputs",
                    f"{ref!r} has shape {list(t.shape)} but {self.inputs[0]!r} has "
                    f"{list(tensors[0].shape)}; {self.op} needs equal shapes",
                )
        return {"fused": tensors[0]}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        return 0

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.fusion.elementwise.module import Elementwise

        return Elementwise(self.op)


@register("fusion", examples=CONCAT_EXAMPLES)
class ConcatFusion(ComponentConfig):
    """Concatenate tensors along the last axis (late fusion). Emits `fused`."""

    type: Literal["concat"]
    inputs: list[Ref] = Field(min_length=2)

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        tensors = _single(inputs, self.inputs)
        lead = tensors[0].shape[:-1]
        for ref, t in zip(self.inputs, tensors, strict=True):
            if t.shape[:-1] != lead or not isinstance(t.width, int):
                raise CheckError(
                    "inputs",
                    f"{ref!r} has shape {list(t.shape)}; concat needs equal leading axes "
                    f"{list(lead)} and a fixed last axis",
                )
        return {"fused": tensors[0].with_shape(*lead, sum(t.width for t in tensors))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        return 0

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.fusion.elementwise.module import Concat

        return Concat()
