"""Negative log-likelihood of a `distributional` head (SSDDR's objective; DeepPAMM's piecewise-exponential Poisson
likelihood with a log-exposure offset), plus the penalties of the head's penalised terms. `ped.py` holds the
piecewise-exponential expansion of survival data into interval rows, a preprocessing stage outside the graph."""

from __future__ import annotations

from typing import Any, Literal

from mmspec.components.objectives.base import LOSS, Objective, Target
from mmspec.registry import Example, register
from mmspec.spec.base import Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_TAB = {"tab": {"type": "vector", "dim": 3}}
NLL_EXAMPLES = (
    Example(_TAB, {"input": "dist"}, {"heads": {"dist": {"type": "distributional", "family": "normal", "parameters": {
        "loc": {"terms": [{"input": "tab", "penalty": {"kind": "ridge"}}]}, "scale": {"terms": ["tab"]}}}}},
        name="normal"),
    Example(_TAB, {"input": "dist", "exposure": True}, {"heads": {"dist": {
        "type": "distributional", "family": "poisson", "parameters": {"rate": {"terms": ["tab"]}}}}},
        name="poisson_offset"),
    Example(_TAB, {"input": "dist"}, {"heads": {"dist": {
        "type": "distributional", "family": "bernoulli", "parameters": {"probs": {"terms": ["tab"]}}}}},
        name="bernoulli"),
)
TARGET_KIND = {"normal": "normal", "poisson": "binary", "bernoulli": "binary", "gamma": "positive"}
"""Family -> how synthetic batches draw the response `y` (Poisson: PED event indicators 0/1)."""


@register("objectives", training_only=True, examples=NLL_EXAMPLES)
class DistributionNLL(Objective):
    """Mean negative log-likelihood of the batch target `y` [batch] under the distribution a `distributional` head
    emits, plus the head's penalties (strength * w^T S w per penalised term). With `exposure: true` (Poisson only)
    the batch also carries `exposure` [batch] > 0 and the mean is rate * exposure: the log-exposure offset of
    piecewise-exponential models, so the head itself predicts the hazard rate."""

    type: Literal["distribution_nll"]
    input: Ref
    exposure: bool = False
    """true (Poisson only): the batch carries `exposure` [batch] and the mean is rate * exposure."""

    def _family(self, spec: Any) -> str:
        head = spec.heads.get(self.input.split(".")[0])
        if head is None or head.type != "distributional" or "." in self.input:
            raise CheckError("input", f"distribution_nll reads a whole `distributional` head; {self.input!r} is not "
                                      f"one")
        if self.exposure and head.family != "poisson":
            raise CheckError("exposure", f"an exposure offset needs a poisson head; {self.input!r} is "
                                         f"{head.family}")
        return head.family

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        self._family(ctx.spec)
        return LOSS

    def targets(self, inputs: dict[str, Bundle], spec: Any) -> dict[str, Target]:
        family = self._family(spec)
        batch = next(iter(inputs["input"].values())).shape[:1]
        dtype = "int64" if TARGET_KIND[family] == "binary" else "float32"
        out = {"y": Target(TensorInfo(batch, dtype), TARGET_KIND[family])}
        if self.exposure:
            out["exposure"] = Target(TensorInfo(batch), "positive")
        return out

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.distributional.loss import DistributionNLL as Module

        return Module(self._family(ctx.spec), self.exposure, ctx.modules[self.input])
