"""Plain convolutional encoder: a stack of conv -> activation (-> max-pool) layers, then optionally flatten and
fully connected layers (DeepConvSurv's and DeepCorrSurv's patch networks, small CNN feature extractors)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.common import Activation, require
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveInt, Ref, StrictModel
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_IMAGE = {"image": {"type": "image", "channels": 3, "height": 20, "width": 20}}
CONVNET_EXAMPLES = (
    Example(  # conv 5x5/2 + pool, conv 3x3, flatten, one dense layer
        _IMAGE,
        {"input": "image", "layers": [{"channels": 4, "kernel": 5, "stride": 2, "pool": 2},
                                      {"channels": 6, "kernel": 3}], "dense": [8]},
        name="dense",
    ),
    Example(  # padded convolutions, global mean instead of dense layers
        _IMAGE,
        {"input": "image", "layers": [{"channels": 4, "kernel": 3, "padding": 1, "pool": 2}], "activation": "tanh"},
        name="mean",
    ),
)


class ConvLayer(StrictModel):
    """Conv2d(channels, kernel, stride, padding) with bias, the activation, then a `pool` x `pool` max-pool with
    stride `pool` (1: none)."""

    channels: PositiveInt
    kernel: PositiveInt
    stride: PositiveInt = 1
    padding: Annotated[int, Field(ge=0)] = 0
    pool: PositiveInt = 1


@register("encoders", examples=CONVNET_EXAMPLES)
class ConvNetEncoder(ComponentConfig):
    """Image [batch, C, H, W] -> `features` [batch, C', h, w] after the conv `layers`, and `pooled`: with `dense`,
    the flattened features through Linear -> activation per width ([batch, last width]); without, their global
    mean [batch, C']. Sizes: h = floor((H + 2 padding - kernel) / stride) + 1 per conv, then floor(h / pool)."""

    type: Literal["convnet"]
    input: Ref
    layers: list[ConvLayer] = Field(min_length=1)
    """The conv layers in order, each with its channels, kernel, stride, padding and optional max-pool."""
    activation: Activation = "relu"
    """Activation after each conv layer and each `dense` layer."""
    dense: list[PositiveInt] = []
    """Widths of the fully connected layers on the flattened feature map (each followed by the activation)."""

    def _sizes(self, inputs: dict[str, Bundle]) -> tuple[TensorInfo, list[tuple[int, int, int]]]:
        """The pixels and (channels, h, w) after each layer."""
        pixels = require(inputs["input"].get("pixels"), "pixels", 4, "image")
        c, h, w = pixels.shape[1:]
        if not all(isinstance(v, int) for v in (c, h, w)):
            raise CheckError("input", f"a convnet needs fixed channels and image size; {self.input!r} has shape "
                                      f"{list(pixels.shape)}")
        sizes = []
        for i, layer in enumerate(self.layers):
            h, w = ((v + 2 * layer.padding - layer.kernel) // layer.stride + 1 for v in (h, w))
            h, w = h // layer.pool, w // layer.pool
            if h < 1 or w < 1:
                raise CheckError(("layers", i), f"the feature map of {self.input!r} is empty after layer {i}: "
                                                f"shrink kernel, stride or pool, or give a larger image")
            c = layer.channels
            sizes.append((c, h, w))
        return pixels, sizes

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        pixels, sizes = self._sizes(inputs)
        c, h, w = sizes[-1]
        batch = pixels.shape[0]
        return {"features": TensorInfo((batch, c, h, w)),
                "pooled": TensorInfo((batch, self.dense[-1] if self.dense else c))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        from mmspec.components.params import linear

        pixels, sizes = self._sizes(inputs)
        cin, total = pixels.shape[1], 0
        for layer in self.layers:
            total += cin * layer.channels * layer.kernel**2 + layer.channels
            cin = layer.channels
        c, h, w = sizes[-1]
        widths = [c * h * w, *self.dense]
        return total + sum(linear(a, b) for a, b in zip(widths, widths[1:], strict=False))

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.convnet.module import ConvNet

        pixels, sizes = self._sizes(inputs)
        c, h, w = sizes[-1]
        convs = [(layer.channels, layer.kernel, layer.stride, layer.padding, layer.pool) for layer in self.layers]
        return ConvNet(pixels.shape[1], convs, self.activation, c * h * w, self.dense)
