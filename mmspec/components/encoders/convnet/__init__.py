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
    Example(  # VGG-style: average pooling, the activations of layers 0 and 1 emitted as taps
        _IMAGE,
        {"input": "image", "layers": [{"channels": 4, "kernel": 3, "padding": 1, "pool": 2},
                                      {"channels": 4, "kernel": 3, "padding": 1}],
         "pooling": "average", "taps": [0, 1]},
        name="taps",
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
    the flattened features through Linear -> activation per width (the last one `dense_activation`) ([batch, last
    width]); without, their global mean [batch, C']. Sizes: h = floor((H + 2 padding - kernel) / stride) + 1 per
    conv, then floor(h / pool).
    Each layer i in `taps` also emits `layer_<i>` [batch, C_i, h_i, w_i], its activations before pooling."""

    type: Literal["convnet"]
    input: Ref
    layers: list[ConvLayer] = Field(min_length=1)
    """The conv layers in order, each with its channels, kernel, stride, padding and optional max-pool."""
    activation: Activation = "relu"
    """Activation after each conv layer and each `dense` layer."""
    dense: list[PositiveInt] = []
    """Widths of the fully connected layers on the flattened feature map (each followed by the activation)."""
    dense_activation: Activation | None = None
    """Activation after the last `dense` layer (null: `activation`); `identity` leaves it linear (DeepCorrSurv's
    32-d image representation)."""
    pooling: Literal["max", "average"] = "max"
    """Kind of the `pool` x `pool` pooling (Gatys et al.'s style transfer swaps VGG's max for average)."""
    taps: list[Annotated[int, Field(ge=0)]] = []
    """Layers whose activations (after the activation, before pooling) are also emitted as `layer_<i>`: the
    feature maps a style, content or DeepDream loss reads."""

    def _sizes(self, inputs: dict[str, Bundle]) -> tuple[TensorInfo, list[tuple[int, int, int, int, int]]]:
        """The pixels and (channels, h, w before pooling, h, w after) of each layer."""
        pixels = require(inputs["input"].get("pixels"), "pixels", 4, "image")
        c, h, w = pixels.shape[1:]
        if not all(isinstance(v, int) for v in (c, h, w)):
            raise CheckError("input", f"a convnet needs fixed channels and image size; {self.input!r} has shape "
                                      f"{list(pixels.shape)}")
        for i, tap in enumerate(self.taps):
            if tap >= len(self.layers) or tap in self.taps[:i]:
                raise CheckError(("taps", i), f"tap {tap} is not one of layers 0..{len(self.layers) - 1} or is "
                                              f"listed twice")
        sizes = []
        for i, layer in enumerate(self.layers):
            h, w = ((v + 2 * layer.padding - layer.kernel) // layer.stride + 1 for v in (h, w))
            sizes.append((layer.channels, h, w))
            h, w = h // layer.pool, w // layer.pool
            if h < 1 or w < 1:
                raise CheckError(("layers", i), f"the feature map of {self.input!r} is empty after layer {i}: "
                                                f"shrink kernel, stride or pool, or give a larger image")
            c = layer.channels
            sizes[-1] = (*sizes[-1], h, w)
        return pixels, sizes

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        pixels, sizes = self._sizes(inputs)
        c, _, _, h, w = sizes[-1]
        batch = pixels.shape[0]
        taps = {f"layer_{i}": TensorInfo((batch, *sizes[i][:3])) for i in self.taps}
        return {"features": TensorInfo((batch, c, h, w)),
                "pooled": TensorInfo((batch, self.dense[-1] if self.dense else c)), **taps}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        from mmspec.components.params import linear

        pixels, sizes = self._sizes(inputs)
        cin, total = pixels.shape[1], 0
        for layer in self.layers:
            total += cin * layer.channels * layer.kernel**2 + layer.channels
            cin = layer.channels
        c, _, _, h, w = sizes[-1]
        widths = [c * h * w, *self.dense]
        return total + sum(linear(a, b) for a, b in zip(widths, widths[1:], strict=False))

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.convnet.module import ConvNet

        pixels, sizes = self._sizes(inputs)
        c, _, _, h, w = sizes[-1]
        convs = [(layer.channels, layer.kernel, layer.stride, layer.padding, layer.pool) for layer in self.layers]
        return ConvNet(pixels.shape[1], convs, self.activation, c * h * w, self.dense, self.pooling, self.taps,
                       self.dense_activation or self.activation)
