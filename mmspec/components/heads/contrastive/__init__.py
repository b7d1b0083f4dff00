"""Projection and two-tower contrastive heads (CLIP, ALIGN)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from mmspec.components.common import require_float
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, Name, PositiveFloat, PositiveInt, Ref
from mmspec.spec.layout import Rule
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo


def _vector(bundle: Bundle, ref: str, field: str | tuple = "input") -> TensorInfo:
    if len(bundle) != 1:
        raise CheckError(
            field, f"{ref!r} emits {sorted(bundle)}; reference one of them, e.g. '{ref}.{sorted(bundle)[-1]}'"
        )
    x = next(iter(bundle.values()))
    if x.rank != 2:
        raise CheckError(field, f"{ref!r} has shape {list(x.shape)}; a vector [batch, D] is needed")
    return require_float(x, ref, field)


PROJECTION_EXAMPLES = (Example({"x": {"type": "vector", "dim": 6}}, {"input": "x", "dim": 4}),)
CONTRASTIVE_EXAMPLES = (
    Example(
        {"a": {"type": "vector", "dim": 6}, "b": {"type": "vector", "dim": 5}},
        {"inputs": {"image": "pa", "text": "pb"}},
        {
            "heads": {
                "pa": {"type": "projection", "input": "a", "dim": 4},
                "pb": {"type": "projection", "input": "b", "dim": 4},
            }
        },
    ),
    Example(  # ALIGN: a learned temperature that divides the cosines
        {"a": {"type": "vector", "dim": 6}, "b": {"type": "vector", "dim": 4}},
        {"inputs": {"image": "a", "text": "pb"}, "temperature": 0.5},
        {"heads": {"pb": {"type": "projection", "input": "b", "dim": 6, "bias": True}}},
        name="align",
    ),
    Example(  # VATT: a fixed temperature of 0.07 (a constant, not a parameter)
        {"a": {"type": "vector", "dim": 6}, "b": {"type": "vector", "dim": 6}},
        {"inputs": {"video": "a", "audio": "b"}, "temperature": 0.07, "learn_temperature": False},
        name="fixed",
    ),
)


@register("heads", examples=PROJECTION_EXAMPLES)
class Projection(ComponentConfig):
    """Linear map of a vector into a shared embedding space -> `embedding` [batch, dim]."""

    type: Literal["projection"]
    input: Ref
    dim: PositiveInt
    """Width of the shared embedding space."""
    bias: bool = False
    """true: the linear map has a bias."""

    weight_layouts = {"linear": (Rule("{p}", "inner.{p}"),)}  # one nn.Linear (CLIP's text/visual_projection)

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        x = _vector(inputs["input"], self.input)
        return {"embedding": TensorInfo((x.shape[0], self.dim))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Parameters `build` will allocate, by formula (budgets before allocation; mmspec.spec.budget)."""
        return _vector(inputs["input"], self.input).width * self.dim + (self.dim if self.bias else 0)

    def build(self, inputs: dict[str, Bundle], ctx):
        from torch import nn

        from mmspec.blocks.io import Select

        return Select(nn.Linear(_vector(inputs["input"], self.input).width, self.dim, bias=self.bias), "embedding")


@register("heads", examples=CONTRASTIVE_EXAMPLES)
class Contrastive(ComponentConfig):
    """Scaled cosine similarities between two towers' embeddings, with a learned temperature.

    inputs {a: ref, b: ref} -> `logits_per_a` [batch, batch] (= scale * norm(a) norm(b)^T, or / temperature),
    `logits_per_b` (its transpose), `a_embeds`, `b_embeds` (L2-normalised). CLIP/ALIGN.
    """

    type: Literal["contrastive"]
    inputs: dict[Name, Ref] = Field(min_length=2, max_length=2)
    logit_scale_init: PositiveFloat = math.log(1 / 0.07)
    """Initial log of the inverse temperature (CLIP: ln(1/0.07) = 2.6592)."""
    temperature: PositiveFloat | None = None
    """ALIGN: learn the temperature t itself, starting at this value, and divide the cosines by it (logits =
    cos / t); `logit_scale_init` is then unused. null: CLIP's exp(logit_scale) * cos."""
    learn_temperature: bool = True
    """false: the temperature (or logit scale) keeps its initial value, a constant rather than a parameter (VATT's
    NCE at a fixed 0.07: `temperature: 0.07, learn_temperature: false`)."""

    weight_layouts = {  # transformers CLIPModel, AlignModel
        "clip": (Rule("logit_scale", "logit_scale"),),
        "align": (Rule("temperature", "temperature"),),
    }

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        (a, ta), (b, tb) = [(p, _vector(bundle, self.inputs[p], ("inputs", p))) for p, bundle in inputs.items()]
        if ta.width != tb.width:
            raise CheckError(
                ("inputs", b),
                f"embedding widths differ: {self.inputs[a]!r} has {ta.width}, "
                f"{self.inputs[b]!r} has {tb.width}; project both to one width",
            )
        return {
            f"logits_per_{a}": TensorInfo((ta.shape[0], tb.shape[0])),
            f"logits_per_{b}": TensorInfo((tb.shape[0], ta.shape[0])),
            f"{a}_embeds": ta,
            f"{b}_embeds": tb,
        }

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        return 1 if self.learn_temperature else 0  # the learned temperature

    def weight_rules(self, layout: str) -> tuple[Rule, ...]:
        """A fixed temperature is no tensor of ours: a checkpoint's is ignored."""
        rules = super().weight_rules(layout)
        return rules if self.learn_temperature else tuple(Rule(r.src, None) for r in rules)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.contrastive.module import ContrastiveModule

        return ContrastiveModule(list(inputs), self.logit_scale_init, self.temperature, self.learn_temperature)
