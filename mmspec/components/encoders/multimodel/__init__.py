"""MultiModel (Kaiser et al. 2017, tensor2tensor `multi_model`): an encoder of depthwise-separable convolution
steps beside a sparsely-gated mixture of experts in every layer, and an autoregressive decoder whose layers sum
self-attention and encoder-decoder attention, with a mixture of experts in chosen layers."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.common import require
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, KVLayout, PositiveFloat, PositiveInt, Probability, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo, dim_product

_TEXT = {"text": {"type": "tokens", "vocab_size": 20, "length": "seq", "max_length": 8, "mask": True}}
_TARGET = {"target": {"type": "tokens", "vocab_size": 24, "length": "target_len", "max_length": 8}}
_SIZES = {"width": 8, "layers": 2, "filter": 12, "experts": 3, "timescales": 2}
_ENCODER = {"type": "multimodel_encoder", "input": "text", **_SIZES}
MULTIMODEL_ENCODER_EXAMPLES = (
    Example(_TEXT, {"input": "text", **_SIZES}, name="tiny"),
    Example({"image": {"type": "image", "channels": 3, "height": 4, "width": 4}}, {"input": "image", **_SIZES},
            name="image"),
    Example(_TEXT, {"input": "text", **_SIZES, "kernel": 1, "large_kernel": 3, "dilation": 2, "top_k": 1},
            name="top1"),
)
MULTIMODEL_DECODER_EXAMPLES = (
    Example({**_TEXT, **_TARGET},
            {"input": "target", "encoder": "enc.sequence", "encoder_mask": "enc.mask", "width": 8, "layers": 2,
             "heads": 2, "filter": 12, "experts": 3, "moe_layers": [1]},
            {"encoders": {"enc": _ENCODER}}, name="moe"),
    Example({**_TEXT, **_TARGET},
            {"input": "target", "encoder": "enc.sequence", "width": 8, "layers": 1, "heads": 2, "filter": 12,
             "moe_layers": [], "spaces": 4},
            {"encoders": {"enc": _ENCODER}}, name="dense"),
)


def _vocab(input_: str, ctx) -> int:
    modality = ctx.spec.modalities.get(input_.split(".")[0])
    if modality is None or modality.type != "tokens":
        raise CheckError("input", f"needs a tokens modality; {input_!r} is not one")
    return modality.vocab_size


def _modality(inputs: dict[str, Bundle], input_: str, ctx) -> tuple[int | None, int | None]:
    """(vocabulary, None) for token ids, (None, channels) for an image."""
    if "ids" in inputs["input"]:
        require(inputs["input"]["ids"], "ids", 2, "token ids")
        return _vocab(input_, ctx), None
    pixels = require(inputs["input"].get("pixels"), "input", 4, "token ids or an image")
    return None, pixels.shape[1]


def _moe_params(width: int, filter_: int, experts: int) -> int:
    """Router and noise matrices, bias-free experts width -> filter -> width."""
    return 2 * width * experts + experts * 2 * width * filter_


@register("encoders", examples=MULTIMODEL_ENCODER_EXAMPLES)
class MultiModelEncoder(ComponentConfig):
    """Token ids [batch, S] -> input table * sqrt(width) (padding zeroed), or an image [batch, C, H, W] -> a
    bias-free 3 x 3 conv to the width + LayerNorm, flattened to S = H W positions; + tensor2tensor's timing signal
    (`timescales` sinusoid pairs, zero-padded to the width), then `layers` layers x <- LN(x + MoE(x) + conv(x)):
    conv = two `kernel`-tap separable steps to `filter` channels, two `large_kernel`-tap steps back to the width
    (the last dilated by `dilation`), each step ReLU -> mask -> separable conv -> LayerNorm; MoE = noisy top-k
    gating over `experts` bias-free ReLU experts (width -> filter -> width, output scaled by (filter /
    width)^-1/2). Emits `sequence` [batch, S, width], `pooled` [batch, width] (the mean over all S positions,
    the class-label modality's), `router` [batch, layers*S, experts] (the router logits of every layer along
    the sequence axis) and the input's `mask`."""

    type: Literal["multimodel_encoder"]
    input: Ref
    width: PositiveInt = 512
    """hidden_size: the embedding and every layer's width."""
    layers: PositiveInt = 4
    """num_hidden_layers: conv + MoE layers."""
    filter: PositiveInt = 2048
    """filter_size: the conv block's inner channels and each expert's hidden width."""
    kernel: PositiveInt = 3
    """Taps of the first two separable steps (kernel_height)."""
    large_kernel: PositiveInt = 15
    """Taps of the last two separable steps (large_kernel_size)."""
    dilation: PositiveInt = 4
    """Dilation of the last separable step."""
    experts: PositiveInt = 30
    """moe_num_experts."""
    top_k: PositiveInt = 2
    """moe_k: experts per token; their gates are the softmax over the kept logits."""
    timescales: PositiveInt = 16
    """Sinusoid pairs of the timing signal (the remaining channels get none)."""
    dropout: Probability = 0.1
    eps: PositiveFloat = 1e-6

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        _modality(inputs, self.input, ctx)
        for name in ("kernel", "large_kernel"):
            if getattr(self, name) % 2 == 0:
                raise CheckError(name, f"{name} {getattr(self, name)} must be odd (same padding)")
        if self.top_k > self.experts:
            raise CheckError("top_k", f"top_k {self.top_k} exceeds the {self.experts} experts")
        if 2 * self.timescales > self.width:
            raise CheckError("timescales", f"{self.timescales} sinusoid pairs do not fit width {self.width}")
        x = next(t for k, t in inputs["input"].items() if k in ("ids", "pixels"))
        batch = x.shape[0]
        length = x.shape[1] if x.rank == 2 else dim_product(x.shape[2], x.shape[3])
        out = {"sequence": TensorInfo((batch, length, self.width)), "pooled": TensorInfo((batch, self.width)),
               "router": TensorInfo((batch, dim_product(self.layers, length), self.experts))}
        if "mask" in inputs["input"]:
            out["mask"] = inputs["input"]["mask"]
        return out

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Input table or image net; per layer four separable steps (depthwise taps + pointwise, LayerNorm), the
        MoE and the residual LayerNorm."""
        w, f, k, big = self.width, self.filter, self.kernel, self.large_kernel
        convs = (k * w + w * f + 2 * f) + (k * f + f * f + 2 * f)  # two steps to the filter width
        convs += (big * f + f * w + 2 * w) + (big * w + w * w + 2 * w)  # two steps back
        layer = convs + _moe_params(w, f, self.experts) + 2 * w
        vocab, channels = _modality(inputs, self.input, ctx)
        net = vocab * w if vocab else 9 * channels * w + 2 * w
        return net + self.layers * layer

    def idle_params(self) -> int:
        """Per layer, the experts a token is not routed to and the noise matrix (training only)."""
        return self.layers * ((self.experts - self.top_k) * 2 * self.width * self.filter + self.width * self.experts)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.multimodel.module import MultiModelEncoderModule

        return MultiModelEncoderModule(*_modality(inputs, self.input, ctx), self.width, self.layers, self.filter,
                                       self.kernel, self.large_kernel, self.dilation, self.experts, self.top_k,
                                       self.timescales, self.dropout, self.eps)


@register("encoders", examples=MULTIMODEL_DECODER_EXAMPLES)
class MultiModelDecoder(ComponentConfig):
    """Target ids [batch, T] -> position 0 looked up in the target-space table (its id says which output
    modality/task; tensor2tensor's shifted-in target_space embedding), later positions in the target table *
    sqrt(width) (id 0, padding, zeroed); + the full-width timing signal; `layers` layers x <- LN(x + y +
    EncDec(y)) with y = causal SelfAttn(x), then x <- LN(x + FFN(x)), FFN a ReLU feed-forward (biases) or, in
    `moe_layers`, the noisy top-k mixture of experts; attention without biases. A bias-free softmax matrix
    gives `logits` [batch, T, vocab]; with MoE layers also `router` [batch, n*T, experts]."""

    type: Literal["multimodel_decoder"]
    input: Ref
    encoder: Ref
    """The encoder's `sequence` [batch, S, width] (`<encoder>.sequence`)."""
    encoder_mask: Ref | None = None
    """The encoder's padding `mask` [batch, S] (`<encoder>.mask`); None: every position is attended."""
    width: PositiveInt = 512
    """hidden_size: the embeddings' and every layer's width."""
    layers: PositiveInt = 4
    """num_hidden_layers: decoder layers."""
    heads: PositiveInt = 8
    filter: PositiveInt = 2048
    """filter_size: the feed-forward's hidden width."""
    expert_filter: PositiveInt = 2048
    """moe_hidden_sizes: each expert's hidden width (an hparam of its own: multimodel_tiny keeps 2048)."""
    experts: PositiveInt = 30
    """moe_num_experts: experts of each mixture-of-experts layer."""
    top_k: PositiveInt = 2
    """moe_k: experts per token; their gates are the softmax over the kept logits."""
    moe_layers: list[Annotated[int, Field(ge=0)]] = [2]
    """Layers (from 0) whose feed-forward is the mixture of experts (moe_layers "2")."""
    spaces: PositiveInt = 32
    """Rows of the target-space table."""
    dropout: Probability = 0.1
    attention_dropout: Probability = 0.1
    eps: PositiveFloat = 1e-6

    def references(self) -> dict[str, str]:
        refs = {"input": self.input, "encoder": self.encoder}
        return refs | ({"encoder_mask": self.encoder_mask} if self.encoder_mask else {})

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        ids = require(inputs["input"].get("ids"), "ids", 2, "target token ids")
        seq = require(inputs["encoder"].get("sequence"), "encoder", 3, "multimodel_encoder's sequence")
        if self.encoder_mask and "mask" not in inputs["encoder_mask"]:
            raise CheckError("encoder_mask", f"{self.encoder_mask!r} is not a padding mask (`<encoder>.mask`)")
        if seq.shape[2] != self.width:
            raise CheckError("encoder", f"{self.encoder!r} is {seq.shape[2]} wide; this decoder is {self.width}")
        if self.width % self.heads:
            raise CheckError("heads", f"width {self.width} is not divisible by heads {self.heads}")
        if self.width % 2:
            raise CheckError("width", f"the timing signal needs an even width, got {self.width}")
        bad = [i for i in self.moe_layers if i >= self.layers]
        if bad or len(set(self.moe_layers)) != len(self.moe_layers):
            raise CheckError("moe_layers", f"{self.moe_layers} must be distinct layers of 0..{self.layers - 1}")
        if self.moe_layers and self.top_k > self.experts:
            raise CheckError("top_k", f"top_k {self.top_k} exceeds the {self.experts} experts")
        batch, length = ids.shape
        out = {"logits": TensorInfo((batch, length, _vocab(self.input, ctx)))}
        if self.moe_layers:
            out["router"] = TensorInfo((batch, dim_product(len(self.moe_layers), length), self.experts))
        return out

    def kv_layout(self, inputs: dict[str, Bundle], ctx) -> KVLayout:
        """Self-attention caches per layer; the encoder sequence comes in whole every step."""
        batch, length = inputs["input"]["ids"].shape
        if not isinstance(length, str):
            raise CheckError("input", f"the new positions of a step need a named dynamic length axis; "
                                      f"{self.input!r} has length {length!r}")
        return KVLayout(self.layers, self.heads, self.width // self.heads, batch, length, None)

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Target table, target-space table, softmax matrix; per layer two bias-free attentions, two LayerNorms and
        the feed-forward (Linear + bias twice) or the MoE."""
        w, f = self.width, self.filter
        moe = len(self.moe_layers)
        layer = 2 * 4 * w * w + 4 * w
        ffn = moe * _moe_params(w, self.expert_filter, self.experts) + (self.layers - moe) * (2 * w * f + f + w)
        return 2 * _vocab(self.input, ctx) * w + self.spaces * w + self.layers * layer + ffn

    def idle_params(self) -> int:
        """In each MoE layer, the experts a token is not routed to and the noise matrix (training only)."""
        per = (self.experts - self.top_k) * 2 * self.width * self.expert_filter + self.width * self.experts
        return len(self.moe_layers) * per

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.multimodel.module import MultiModelDecoderModule

        return MultiModelDecoderModule(_vocab(self.input, ctx), self.spaces, self.width, self.layers, self.heads,
                                       self.filter, self.expert_filter, self.experts, self.top_k, self.moe_layers,
                                       self.dropout, self.attention_dropout, self.eps)
