"""Cox log-risk head: the linear predictor x beta of a proportional-hazards model (CPH) or the MLP g(x) that
replaces it (DeepSurv, DeepConvSurv). No output bias: a constant cancels in the partial likelihood."""

from __future__ import annotations

from typing import Literal

from mmspec.components.common import Activation, one_vector
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, PositiveInt, Probability, Ref
from mmspec.spec.tensors import Bundle, TensorInfo

_X = {"x": {"type": "vector", "dim": 6}}
RISK_EXAMPLES = (
    Example(_X, {"input": "x"}, name="linear"),  # Cox: one coefficient per covariate
    Example(_X, {"input": "x", "hidden": [8, 8], "batch_norm": True, "dropout": 0.1}, name="deep"),  # DeepSurv
)


@register("heads", examples=RISK_EXAMPLES)
class RiskHead(ComponentConfig):
    """Log-risk score of a vector [batch, D] -> `risk` [batch, 1]: per `hidden` width Linear -> activation
    (-> BatchNorm1d) (-> dropout), then Linear(1) without bias (`bias: true` adds one). With `hidden: []` it is
    the Cox model's x beta, D parameters."""

    type: Literal["risk"]
    input: Ref
    hidden: list[PositiveInt] = []
    """Widths of the hidden layers before the log-risk unit ([]: the linear Cox term)."""
    activation: Activation = "relu"
    """Activation of the hidden layers."""
    batch_norm: bool = False
    """true: BatchNorm1d after each hidden layer's activation."""
    dropout: Probability = 0.0
    bias: bool = False
    """An output bias; it cancels in the Cox partial likelihood, so survival models leave it out."""
    eps: PositiveFloat = 1e-5

    def _vector(self, inputs: dict[str, Bundle]) -> TensorInfo:
        return one_vector(inputs["input"], self.input, "a risk head")

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        x = self._vector(inputs)
        return {"risk": TensorInfo((x.shape[0], 1))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        from mmspec.components.params import linear

        widths = [self._vector(inputs).width, *self.hidden]
        pairs = zip(widths, widths[1:], strict=False)
        hidden = sum(linear(a, b) + (2 * b if self.batch_norm else 0) for a, b in pairs)
        return hidden + linear(widths[-1], 1, self.bias)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.risk.module import Risk

        return Risk(self._vector(inputs).width, self.hidden, self.activation, self.batch_norm, self.dropout,
                    self.bias, self.eps)
