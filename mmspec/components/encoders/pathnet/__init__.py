"""PathNet (Fernando et al. 2017): a super-network of `layers` x `modules` small networks; a path (a 0/1 mask
[layers, modules], an input of the graph) picks the active modules of each layer, whose outputs are summed.
The path search (tournament selection over genotypes) is host code: `evolution.py`."""

from __future__ import annotations

from typing import Literal

from mmspec.components.common import Activation, one_vector, require_float
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_X = {"type": "vector", "dim": 6}
PATHNET_EXAMPLES = (
    Example({"x": _X, "path": {"type": "sequence", "dim": 3, "length": 2}},
            {"input": "x", "path": "path", "layers": 2, "modules": 3, "width": 4}, name="mlp"),
    Example({"x": _X, "path": {"type": "sequence", "dim": 2, "length": 1}},
            {"input": "x", "path": "path", "layers": 1, "modules": 2, "width": 3, "activation": "tanh"},
            name="one_layer"),
)


@register("encoders", examples=PATHNET_EXAMPLES)
class PathNet(ComponentConfig):
    """Vector [batch, D] and path [batch, layers, modules] -> `embedding` [batch, width]. Layer l holds `modules`
    modules Linear(in, width) + activation (in = D for the first layer, `width` after it); its output is
    sum_m path[:, l, m] * module_m(x). A 0/1 path evaluates only its modules' contribution; every module runs in
    the graph, so one exported graph serves every path."""

    type: Literal["pathnet"]
    input: Ref
    """The features [batch, D] (a vector)."""
    path: Ref
    """The path mask [batch, layers, modules] (a `sequence` modality with length `layers` and dim `modules`)."""
    layers: PositiveInt = 3
    """L, the layers of the super-network."""
    modules: PositiveInt = 10
    """M, the modules of each layer."""
    width: PositiveInt = 20
    """Units of each module."""
    activation: Activation = "relu"
    """Activation of each module's output (before the layer's sum)."""

    def references(self) -> dict[str, str]:
        return {"input": self.input, "path": self.path}

    def _in_width(self, inputs: dict[str, Bundle]) -> int:
        x = one_vector(inputs["input"], self.input, "pathnet")
        bundle = inputs["path"]
        path = require_float(next(iter(bundle.values())), self.path, "path") if len(bundle) == 1 else None
        if path is None or path.rank != 3 or tuple(path.shape[1:]) != (self.layers, self.modules):
            shape = list(path.shape) if path is not None else sorted(bundle)
            raise CheckError("path", f"{self.path!r} must be a float path mask [batch, {self.layers}, "
                                     f"{self.modules}] (layers, modules), got {shape}; declare it as "
                                     f"{{type: sequence, length: {self.layers}, dim: {self.modules}}}")
        if path.shape[0] != x.shape[0]:
            raise CheckError("path", f"{self.path!r} has batch axis {path.shape[0]!r} but {self.input!r} has "
                                     f"{x.shape[0]!r}")
        return x.width

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        self._in_width(inputs)
        x = next(iter(inputs["input"].values()))
        return {"embedding": TensorInfo((x.shape[0], self.width))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        d, w = self._in_width(inputs), self.width
        return self.modules * ((d * w + w) + (self.layers - 1) * (w * w + w))

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.pathnet.module import PathNetModule

        return PathNetModule(self._in_width(inputs), self.layers, self.modules, self.width, self.activation)
