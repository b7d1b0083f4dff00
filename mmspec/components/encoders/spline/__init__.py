"""Structured-term bases for additive predictors (SSDDR, DeepPAMM): `spline` evaluates a B-spline basis of one
numeric feature inside the graph (knots fixed in the spec, so the ONNX file takes raw features), `random_effect`
one-hot encodes a group id (the design of a random intercept). Both are parameter-free: the coefficients and their
smoothness / ridge penalties belong to the term that reads the basis (the `distributional` head)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

SPLINE_EXAMPLES = (
    Example({"tab": {"type": "vector", "dim": 3}}, {"input": "tab", "column": 1, "knots": 5, "range": [-2.0, 2.0]},
            name="column"),
    Example({"time": {"type": "scalar", "low": 0.0, "high": 4.0}},
            {"input": "time", "degree": 2, "knots": 4, "range": [0.0, 4.0]}, name="scalar"),
)
RANDOM_EFFECT_EXAMPLES = (
    Example({"site": {"type": "scalar", "dtype": "int64", "high": 5}}, {"input": "site", "groups": 5}),
)


def _values(bundle: Bundle, ref: str) -> TensorInfo:
    if len(bundle) != 1:
        raise CheckError("input", f"{ref!r} emits {sorted(bundle)}; reference one tensor, e.g. '{ref}.values'")
    return next(iter(bundle.values()))


@register("encoders", examples=SPLINE_EXAMPLES)
class Spline(ComponentConfig):
    """One numeric feature (a scalar modality [batch], or column `column` of a vector [batch, D]) -> `basis`
    [batch, knots + degree - 1]: the B-splines of `degree` on `knots` equally spaced knots over `range` (extended by
    `degree` knots on each side), evaluated in the graph; values outside `range` are clamped to it. Inside the range
    the basis functions sum to one."""

    type: Literal["spline"]
    input: Ref
    column: Annotated[int, Field(ge=0)] | None = None
    """Which column of a vector input; null for a scalar input."""
    degree: Annotated[int, Field(ge=1, le=5)] = 3
    """Polynomial degree of the B-splines (3: cubic)."""
    knots: Annotated[int, Field(ge=2)] = 10
    """Knots on `range`, both ends included: knots - 1 intervals."""
    range: list[float] = Field(min_length=2, max_length=2)
    """[low, high] of the knots."""

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        x = _values(inputs["input"], self.input)
        if not x.dtype.startswith("float"):
            raise CheckError("input", f"a spline needs a float feature; {self.input!r} holds {x.dtype}")
        if x.rank == 1 and self.column is not None:
            raise CheckError("column", f"{self.input!r} is one number per example {list(x.shape)}; drop `column`")
        if x.rank == 2:
            if self.column is None:
                raise CheckError("column", f"{self.input!r} is a vector {list(x.shape)}; say which `column`")
            if not isinstance(x.width, int) or self.column >= x.width:
                raise CheckError("column", f"column {self.column} is outside {self.input!r}, shape {list(x.shape)}")
        elif x.rank != 1:
            raise CheckError("input", f"a spline reads [batch] or [batch, D]; {self.input!r} is {list(x.shape)}")
        if not self.range[0] < self.range[1]:
            raise CheckError("range", f"range {list(self.range)} must be increasing")
        return {"basis": TensorInfo((x.shape[0], self.knots + self.degree - 1))}

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.spline.module import BSplineBasis

        return BSplineBasis(self.column, self.degree, self.knots, (self.range[0], self.range[1]))


@register("encoders", examples=RANDOM_EFFECT_EXAMPLES)
class RandomEffect(ComponentConfig):
    """Group ids (an int64 scalar modality [batch] in [0, groups)) -> `basis` [batch, groups], one-hot: the design
    of a random intercept. A term that reads it with a `ridge` penalty is the per-group effect b_g with a Gaussian
    prior (mixed-model shrinkage); its coefficient block is the per-group embedding."""

    type: Literal["random_effect"]
    input: Ref
    groups: PositiveInt
    """Number of groups: ids run from 0 to groups - 1, one basis column each."""

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        ids = _values(inputs["input"], self.input)
        if ids.rank != 1 or ids.dtype != "int64":
            raise CheckError("input", f"random effects read int64 group ids [batch]; {self.input!r} is "
                                      f"{ids.dtype} {list(ids.shape)}")
        modality = ctx.spec.modalities.get(self.input.split(".")[0])
        high = getattr(modality, "high", None)
        if high is not None and high != self.groups:
            raise CheckError("groups", f"{self.input!r} holds ids below {high}, but groups is {self.groups}")
        return {"basis": TensorInfo((ids.shape[0], self.groups))}

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.spline.module import OneHot

        return OneHot(self.groups)
