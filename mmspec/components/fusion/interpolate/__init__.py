"""Interpolation between examples of a batch: each example's tensor mixed with another example's (GAN-INT's
interpolated text embeddings, Reed et al. 2016). Training-only: it feeds extra training passes, never an export."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.common import require_float
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_X = {"x": {"type": "vector", "dim": 6}}
_HEAD = {"heads": {"out": {"type": "mlp", "input": "x", "dim": 2}}}  # an export, which the probe never joins
INTERPOLATE_EXAMPLES = (
    Example(_X, {"input": "x"}, _HEAD, name="vector"),
    Example({"s": {"type": "sequence", "dim": 4, "length": "seq", "max_length": 5}},
            {"input": "s", "beta": 0.25, "shift": 2},
            {"heads": {"out": {"type": "mlp", "input": "s", "dim": 2}}}, name="sequence"),
)


@register("fusion", training_only=True, examples=INTERPOLATE_EXAMPLES)
class InterpolateConfig(ComponentConfig):
    """One float tensor [batch, ...] -> `mixed` of the same shape: beta * x_i + (1 - beta) * x_(i - shift), each
    example interpolated with the one `shift` rows before it (the batch rolled). No parameters. Training-only:
    GAN-INT trains its generator on interpolated caption embeddings (through a `rerun` of the generator)."""

    type: Literal["interpolate"]
    input: Ref
    beta: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    """Weight of each example's own tensor (GAN-INT: 0.5, the midpoint of two captions)."""
    shift: PositiveInt = 1
    """Example i is paired with example i - shift, modulo the batch (a batch whose size divides `shift` pairs each
    example with itself)."""
    training_only: bool = True
    """Always true: mixing the examples of a batch is a training device, never exported."""

    def _tensor(self, inputs: dict[str, Bundle]) -> TensorInfo:
        bundle = inputs["input"]
        if len(bundle) != 1:
            raise CheckError("input", f"{self.input!r} emits {sorted(bundle)}; reference one of them, e.g. "
                                      f"'{self.input}.{sorted(bundle)[-1]}'")
        x = require_float(next(iter(bundle.values())), self.input)
        if not x.rank or isinstance(x.shape[0], int):
            raise CheckError("input", f"{self.input!r} has shape {list(x.shape)}; interpolating examples needs "
                                      f"the batch axis first")
        return x

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        if not self.training_only:
            raise CheckError("training_only", "interpolate mixes the examples of a training batch; it is always "
                                              "training-only (remove `training_only: false`)")
        return {"mixed": self._tensor(inputs)}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        return 0

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.fusion.interpolate.module import Interpolate

        self._tensor(inputs)
        return Interpolate(self.beta, self.shift)
