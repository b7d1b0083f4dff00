"""Highway network head (Srivastava et al. 2015): gated layers that mix a non-linear and a linear transform,
the trunk of Cheerla & Gevaert's pan-cancer prognosis model after the modality embeddings are averaged."""

from __future__ import annotations

from typing import Literal

from mmspec.components.common import Activation, one_vector
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveInt, Probability, Ref
from mmspec.spec.tensors import Bundle, TensorInfo

HIGHWAY_EXAMPLES = (
    Example({"x": {"type": "vector", "dim": 6}}, {"input": "x", "layers": 2}, name="plain"),
    Example({"x": {"type": "vector", "dim": 6}}, {"input": "x", "layers": 3, "norm": "batch", "dropout": 0.5},
            name="batch_norm"),
)


@register("heads", examples=HIGHWAY_EXAMPLES)
class Highway(ComponentConfig):
    """Vector [batch, D] -> `embedding` [batch, D]: `layers` highway layers x <- g * act(W_n x) + (1 - g) * W_l x,
    g = sigmoid(W_g x) (three D x D Linear layers each). `norm: batch` adds BatchNorm1d before the first and after
    the last layer; `dropout` applies before the first layer (training only)."""

    type: Literal["highway"]
    input: Ref
    layers: PositiveInt
    """Highway layers."""
    activation: Activation = "relu"
    """Activation of each layer's transform branch."""
    norm: Literal["none", "batch"] = "none"
    """`batch`: BatchNorm1d before the first and after the last layer; `none`: no normalization."""
    dropout: Probability = 0.0

    def _vector(self, inputs: dict[str, Bundle]) -> TensorInfo:
        return one_vector(inputs["input"], self.input, "highway")

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        return {"embedding": self._vector(inputs)}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        d = self._vector(inputs).width
        return 3 * self.layers * (d * d + d) + (4 * d if self.norm == "batch" else 0)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.highway.module import HighwayModule

        return HighwayModule(self._vector(inputs).width, self.layers, self.activation, self.norm, self.dropout)
