"""Negative log marginal likelihood of a `gaussian_process` head (training-only)."""

from __future__ import annotations

from typing import Any, Literal

from mmspec.components.objectives.base import LOSS, Objective, Target
from mmspec.registry import Example, register
from mmspec.spec.base import Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

GP_NLL_EXAMPLES = (
    Example({"h": {"type": "vector", "dim": 5}, "where": {"type": "vector", "dim": 2},
             "year": {"type": "scalar", "low": 0.0, "high": 1.0}},
            {"input": "gp"},
            {"heads": {"gp": {"type": "gaussian_process", "input": "h", "location": "where", "time": "year",
                              "points": 4}}}),
)


@register("objectives", training_only=True, examples=GP_NLL_EXAMPLES)
class GPMarginalLikelihood(Objective):
    """Per-example negative log marginal likelihood of the batch target `y` [batch] under the head's GP:
    y ~ N(mean, K + noise I) over the batch (K the head's kernel of the batch's locations and times), i.e.
    (r^T (K + noise I)^-1 r + log det(K + noise I) + B log 2 pi) / 2B with r = y - mean. It trains the network and
    the GP mean (the kernel hyperparameters stay fixed, as in You et al.)."""

    type: Literal["gp_marginal_likelihood"]
    input: Ref

    def _head(self, spec: Any):
        head = spec.heads.get(self.input)
        if head is None or head.type != "gaussian_process":
            raise CheckError("input", f"gp_marginal_likelihood reads a `gaussian_process` head; {self.input!r} is not "
                                      f"one")
        return head

    def references(self) -> dict[str, str]:
        return {"input": self.input}

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        self._head(ctx.spec)
        return LOSS

    def targets(self, inputs: dict[str, Bundle], spec: Any) -> dict[str, Target]:
        return {"y": Target(TensorInfo(inputs["input"]["mean"].shape), "normal")}

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.gaussian_process.loss import GPMarginalLikelihood as Module

        return Module(ctx.modules[self.input])
