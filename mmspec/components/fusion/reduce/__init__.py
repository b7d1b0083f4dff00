"""Reduce over the item (or sequence) axis: several images' or views' vectors [batch, items, D] -> [batch, D]."""

from __future__ import annotations

from typing import Literal

from mmspec.components.common import require_float
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_VIEWS = {"views": {"type": "image", "channels": 3, "height": 8, "width": 8, "count": "view", "max_count": 4}}
_CNN = {"cnn": {"type": "resnet", "input": "views", "block": "basic", "depths": [1], "widths": [8], "stem": 8}}
REDUCE_EXAMPLES = (
    Example(_VIEWS, {"input": "cnn.pooled", "op": "max"}, {"encoders": _CNN}, name="views_max"),  # multi-view CNN
    Example({"s": {"type": "sequence", "dim": 6, "length": "seq", "max_length": 8}}, {"input": "s"}, name="mean"),
    Example(_VIEWS, {"input": "cnn.features", "op": "sum"}, {"encoders": _CNN}, name="feature_maps_sum"),
)


@register("fusion", examples=REDUCE_EXAMPLES)
class Reduce(ComponentConfig):
    """`mean`, `max` or `sum` over axis 1 of one float tensor [batch, items, ...] -> `pooled` [batch, ...]:
    the items of a modality with `count` (multi-view, several images), or the positions of a sequence."""

    type: Literal["reduce"]
    input: Ref
    op: Literal["mean", "max", "sum"] = "mean"
    """Reduction over axis 1."""

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        bundle = inputs["input"]
        if len(bundle) != 1:
            raise CheckError("input", f"{self.input!r} emits {sorted(bundle)}; reference one of them, e.g. "
                                      f"'{self.input}.{sorted(bundle)[-1]}'")
        x = require_float(next(iter(bundle.values())), self.input)
        if x.rank < 3:
            raise CheckError("input", f"reduce needs [batch, items, ...] (rank 3 or more), but {self.input!r} has "
                                      f"shape {list(x.shape)}; it is already one vector per example")
        return {"pooled": TensorInfo((x.shape[0], *x.shape[2:]), x.dtype)}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        return 0

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.fusion.reduce.module import ReduceModule

        return ReduceModule(self.op)
