"""The `film` fusion component: config, shape rules and parameter count (torch-free), and its torch module."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

EXAMPLES = [
    Example({"x": {"type": "vector", "dim": 6}, "c": {"type": "vector", "dim": 4}}, {"input": "x", "condition": "c"}),
    Example({"x": {"type": "sequence", "dim": 6, "length": "seq", "max_length": 5}, "c": {"type": "vector", "dim": 3}},
            {"input": "x", "condition": "c", "hidden": 8}, name="sequence"),
]


@register("fusion", examples=EXAMPLES, notes="a plugin component (package mmspec-film)")
class Film(ComponentConfig):
    """FiLM: `gamma(c) * x + beta(c)` per channel of `x` (its last axis), with gamma and beta linear in the
    condition `c` [batch, C] (through a ReLU layer of `hidden` units when set). Emits `fused`, shaped as `x`."""

    type: Literal["film"]
    input: Ref
    condition: Ref
    hidden: int | None = Field(None, ge=1, description="Width of a ReLU layer between `c` and gamma/beta.")

    def references(self) -> dict[str, str]:
        return {"input": self.input, "condition": self.condition}

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        (x,), (c,) = inputs["input"].values(), inputs["condition"].values()
        if len(c.shape) != 2:
            raise CheckError("condition", f"{self.condition!r} must be a vector [batch, C], not {list(c.shape)}")
        if not isinstance(x.width, int):
            raise CheckError("input", f"{self.input!r} needs a fixed channel count, not {x.width!r}")
        return {"fused": TensorInfo(x.shape)}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        (x,), (c,) = inputs["input"].values(), inputs["condition"].values()
        hidden = (c.width + 1) * self.hidden if self.hidden else 0
        return hidden + ((self.hidden or c.width) + 1) * 2 * x.width  # [hidden layer] + gamma/beta layer

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec_film.module import FilmModule

        (x,), (c,) = inputs["input"].values(), inputs["condition"].values()
        return FilmModule(c.width, x.width, self.hidden)
