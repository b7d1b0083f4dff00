"""The orthogonalization cell of semi-structured regression (SSDDR, Rügamer et al.; DeepPAMM): the deep latent
features U are replaced by their residual after projection onto span([1, X]) of the structured design X, so the
structured coefficients stay identifiable."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmspec.components.common import require_float
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, Probability, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

ORTHOGONALIZE_EXAMPLES = (
    Example({"x": {"type": "vector", "dim": 3}, "u": {"type": "vector", "dim": 4}},
            {"input": "u", "against": ["x"]}, name="vector"),
    Example({"x": {"type": "vector", "dim": 2}, "t": {"type": "scalar", "low": 0.0, "high": 1.0},
             "u": {"type": "vector", "dim": 3}},
            {"input": "u", "against": ["x", "t_basis.basis"], "momentum": 0.5},
            {"encoders": {"t_basis": {"type": "spline", "input": "t", "knots": 3, "degree": 1,
                                      "range": [0.0, 1.0]}}}, name="spline"),
)


@register("fusion", examples=ORTHOGONALIZE_EXAMPLES)
class Orthogonalize(ComponentConfig):
    """Deep latent U [batch, q] and structured terms X_i ([batch] or [batch, p_i]) -> `latent` [batch, q] =
    U - X (X^T X + eps I)^-1 X^T U with X = [1, X_1, X_2, ...] (the residual of U on span(X)).

    Training: the projection of the batch (P-perp U, differentiable), and running averages of X^T X / B and
    X^T U / B (momentum `momentum`, like BatchNorm's statistics) from which the coefficients C = (S_xx + eps I)^-1
    S_xu are refreshed after each batch. Evaluation and export: U - X C, a per-example function (the batch
    projection would depend on the other rows of the batch, and ONNX has no matrix inverse)."""

    type: Literal["orthogonalize"]
    input: Ref
    against: list[Ref] = Field(min_length=1)
    """The structured terms: features shared with the structured predictor (raw columns, spline bases)."""
    momentum: Probability = 0.1
    """Weight of each batch in the running averages of X^T X and X^T U (like BatchNorm's momentum)."""
    eps: PositiveFloat = 1e-4
    """Ridge added to X^T X (keeps the inverse defined when the batch is smaller than X's width)."""

    def references(self) -> dict[str, str]:
        return {"input": self.input, **{f"x{i}": ref for i, ref in enumerate(self.against)}}

    def _widths(self, inputs: dict[str, Bundle]) -> list[int]:
        u = self._latent(inputs)
        widths = []
        for i, ref in enumerate(self.against):
            bundle = inputs[f"x{i}"]
            if len(bundle) != 1:
                raise CheckError(("against", i), f"{ref!r} emits {sorted(bundle)}; reference one tensor")
            x = require_float(next(iter(bundle.values())), ref, ("against", i))
            if x.rank not in (1, 2) or x.shape[0] != u.shape[0] or not isinstance(x.shape[-1], int):
                raise CheckError(("against", i), f"{ref!r} has shape {list(x.shape)}; a structured term is [batch] "
                                                 f"or [batch, p] on the batch axis of {self.input!r} {list(u.shape)}")
            widths.append(1 if x.rank == 1 else x.shape[1])
        return widths

    def _latent(self, inputs: dict[str, Bundle]) -> TensorInfo:
        bundle = inputs["input"]
        if len(bundle) != 1:
            raise CheckError("input", f"{self.input!r} emits {sorted(bundle)}; reference the latent, e.g. "
                                      f"'{self.input}.{sorted(bundle)[-1]}'")
        u = require_float(next(iter(bundle.values())), self.input)
        if u.rank != 2 or not isinstance(u.width, int):
            raise CheckError("input", f"the latent must be [batch, q]; {self.input!r} is {list(u.shape)}")
        return u

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        self._widths(inputs)
        return {"latent": self._latent(inputs)}

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.fusion.orthogonalize.module import Orthogonalize as Module

        return Module(1 + sum(self._widths(inputs)), self._latent(inputs).width, len(self.against), self.momentum,
                      self.eps)
