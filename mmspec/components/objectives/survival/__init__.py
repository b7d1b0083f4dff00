"""Survival objectives (training-only): Cox partial likelihood and the discrete-time (logistic hazard) NLL."""

from __future__ import annotations

from typing import Any, Literal

from mmspec.components.objectives.base import LOSS, Objective, Target, require_rank, tensor
from mmspec.registry import Example, register
from mmspec.spec.base import Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_X = {"x": {"type": "vector", "dim": 6}}
COX_EXAMPLES = (
    Example(_X, {"input": "risk"}, {"heads": {"risk": {"type": "mlp", "input": "x", "dim": 1}}}, name="breslow"),
    Example(  # risk [batch, 1] from a classifier; Efron's correction for tied times
        _X,
        {"input": "risk", "ties": "efron"},
        {"heads": {"risk": {"type": "classifier", "input": "x", "num_classes": 1, "hidden": [8]}}},
        name="efron",
    ),
)
DISCRETE_TIME_EXAMPLES = (
    Example(_X, {"input": "hazard"}, {"heads": {"hazard": {"type": "classifier", "input": "x", "num_classes": 5}}}),
)


@register("objectives", training_only=True, examples=COX_EXAMPLES)
class CoxPartialLikelihood(Objective):
    """Negative Cox partial log-likelihood of risk scores [batch] or [batch, 1] (DeepSurv, DeepConvSurv), per
    event, with Breslow or Efron handling of tied times. The risk set is the batch (of each process).

    Batch targets `time` [batch] (> 0) and `event` [batch] (1 = event observed, 0 = censored)."""

    type: Literal["cox_partial_likelihood"]
    input: Ref
    ties: Literal["breslow", "efron"] = "breslow"
    """How tied event times share the risk set: `breslow` or `efron`."""

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        risk = require_rank(tensor(inputs, "input", self.input), (1, 2), "input", "risk scores", self.input)
        if risk.rank == 2 and risk.shape[1] != 1:
            raise CheckError(
                "input", f"risk scores must be [batch] or [batch, 1]; {self.input!r} is {list(risk.shape)}"
            )
        return LOSS

    def targets(self, inputs: dict[str, Bundle], spec: Any) -> dict[str, Target]:
        batch = (tensor(inputs, "input", self.input).shape[0],)
        return {"time": Target(TensorInfo(batch), "positive"), "event": Target(TensorInfo(batch, "int64"), "binary")}

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.survival.loss import CoxPartialLikelihood as Module

        return Module(self.ties)


@register("objectives", training_only=True, examples=DISCRETE_TIME_EXAMPLES)
class DiscreteTimeSurvival(Objective):
    """Discrete-time survival NLL with logistic hazards (Gensheimer & Narasimhan; pycox LogisticHazard):
    `input` holds one hazard logit per time interval [batch, K].

    Batch targets `interval` [batch] (index of the event or censoring interval) and `event` [batch] (0/1)."""

    type: Literal["discrete_time_survival_nll"]
    input: Ref

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        require_rank(tensor(inputs, "input", self.input, "logits"), 2, "input", "hazard logits [batch, K]", self.input)
        return LOSS

    def targets(self, inputs: dict[str, Bundle], spec: Any) -> dict[str, Target]:
        logits = tensor(inputs, "input", self.input, "logits")
        batch = logits.shape[:1]
        return {
            "interval": Target(TensorInfo(batch, "int64"), "classes", int(logits.shape[1])),
            "event": Target(TensorInfo(batch, "int64"), "binary"),
        }

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.survival.loss import DiscreteTimeSurvival as Module

        return Module()
