"""DETR-style transformer (Carion et al. 2020) as UniT (Hu & Singh 2021) uses it: an encoder over a CNN feature map
whose fixed 2-D sine positions are added to the queries and keys of every layer, and a decoder whose learned
queries (one set per task) attend to the concatenated encodings of the present modalities, decoded in parallel."""

from __future__ import annotations

from typing import Literal

from mmspec.components.common import Activation, require, sequence_of
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, Name, PositiveFloat, PositiveInt, Probability, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo, dim_sum

_IMAGE = {"image": {"type": "image", "channels": 3, "height": 32, "width": 32}}
_TEXT = {"text": {"type": "tokens", "vocab_size": 20, "length": "text_len", "max_length": 6, "mask": True}}
_STACK = {"width": 8, "layers": 1, "heads": 2, "ffn": 16}
_BACKBONE = {"type": "resnet", "input": "image", "depths": [1, 1], "widths": [8, 16], "stem": 4,
             "frozen_norm": True}
_ENCODER = {"type": "detr_encoder", "input": "cnn", **_STACK}
_BERT = {"type": "transformer", "input": "text", "embed": {"type": "tokens", "positions": 6, "segments": 2},
         "width": 12, "layers": 1, "heads": 2, "ffn": 16, "activation": "gelu"}
DETR_ENCODER_EXAMPLES = (
    Example(_IMAGE, {"input": "cnn", **_STACK}, {"encoders": {"cnn": _BACKBONE}}, name="detr"),
    Example(_IMAGE, {"input": "cnn", **_STACK, "residual": True}, {"encoders": {"cnn": _BACKBONE}},
            name="unit_residual"),
)
DETR_DECODER_EXAMPLES = (
    Example(_IMAGE, {"image": "enc", "queries": 5, **_STACK},
            {"encoders": {"cnn": _BACKBONE, "enc": _ENCODER}}, name="detection"),
    Example({**_IMAGE, **_TEXT}, {"image": "enc", "text": "bert", "queries": 3, **_STACK, "width": 10},
            {"encoders": {"cnn": _BACKBONE, "enc": _ENCODER, "bert": _BERT}}, name="image_and_text"),
    Example({**_IMAGE, **_TEXT}, {"text": "bert", "text_first": True, "queries": 2, "share": "vqa", **_STACK},
            {"encoders": {"cnn": _BACKBONE, "enc": _ENCODER, "bert": _BERT,
                          "vqa": {"type": "detr_decoder", "image": "enc", "text": "bert", "queries": 3, **_STACK}}},
            name="shared_text_only"),
)


def _layer(width: int, ffn: int, attentions: int) -> int:
    """One post-norm layer: `attentions` q/k/v/out projections with biases, the feed-forward, one LayerNorm per
    sublayer."""
    return attentions * 4 * (width * width + width) + 2 * width * ffn + ffn + width + (attentions + 1) * 2 * width


@register("encoders", examples=DETR_ENCODER_EXAMPLES)
class DetrEncoder(ComponentConfig):
    """A CNN feature map [batch, C, h, w] -> 1x1 conv to `width` -> flattened to h*w positions -> `layers` post-norm
    layers whose self-attention adds the fixed 2-D sine positions (DETR's, normalised to 2 pi, temperature 10000)
    to queries and keys. Emits `sequence` [batch, h*w, width] and those `positions` [batch, h*w, width]."""

    type: Literal["detr_encoder"]
    input: Ref
    """A node with a `features` map [batch, C, h, w] of fixed size (a `resnet`)."""
    width: PositiveInt = 256
    """d_model: the projected map's and every layer's width."""
    layers: PositiveInt = 6
    """Encoder layers."""
    heads: PositiveInt = 8
    ffn: PositiveInt = 2048
    """Feed-forward hidden width."""
    activation: Activation = "relu"
    """Activation of the feed-forward."""
    residual: bool = False
    """UniT's residual_in_encoder: the output is the projected feature map plus the encoder's output."""
    dropout: Probability = 0.1
    eps: PositiveFloat = 1e-5

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        features = require(inputs["input"].get("features"), "features", 4, "feature map [batch, C, h, w]")
        batch, _, h, w = features.shape
        if not isinstance(h, int) or not isinstance(w, int):
            raise CheckError("input", f"the sine positions are fixed at build time; {self.input!r} has a feature map "
                                      f"of size {h} x {w}: give the image modality a fixed height and width")
        if self.width % self.heads or self.width % 2:
            raise CheckError("heads", f"width {self.width} must be even and divisible by heads {self.heads}")
        sequence = TensorInfo((batch, h * w, self.width))
        return {"sequence": sequence, "positions": sequence}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """The 1x1 input projection (with bias) and the layers; the sine positions have none."""
        channels = inputs["input"]["features"].shape[1]
        return channels * self.width + self.width + self.layers * _layer(self.width, self.ffn, 1)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.detr.module import DetrEncoderModule

        _, channels, h, w = inputs["input"]["features"].shape
        return DetrEncoderModule(channels, (h, w), self)


@register("encoders", examples=DETR_DECODER_EXAMPLES)
class DetrDecoder(ComponentConfig):
    """`queries` learned query embeddings (one task's) decoded in parallel by `layers` post-norm layers: the
    decoder input starts at zero and the queries are added to the queries and keys of the self-attention and to
    the queries of the cross-attention over the memory = [image encoding; text encoding] (keys + their positions).
    The image side is a `detr_encoder` (Linear maps to `width` for sequence and positions when its width differs);
    the text side a token `transformer` (BERT), projected by Linear(D_text, width), its positions = another
    Linear(D_text, width) of its own position table's rows. A final LayerNorm. `share` names a decoder whose
    layers, norm and projections this one uses (UniT's shared decoder: each task owns only its queries). Emits
    `sequence` [batch, queries, width] and `first` [batch, width] (query 0, which UniT's classifiers read)."""

    type: Literal["detr_decoder"]
    image: Ref | None = None
    """A `detr_encoder` (sequence and positions)."""
    text: Ref | None = None
    """A `transformer` with token embeddings and a learned position table (its sequence and mask)."""
    text_first: bool = False
    """Keep only the text's first ([CLS]) position in the memory (UniT's SNLI-VE and GLUE tasks)."""
    queries: PositiveInt = 100
    """This task's number of learned queries (DETR detection: 100)."""
    share: Name | None = None
    """Another `detr_decoder` (with the same stack fields, owning its layers) whose layers, final norm and
    projections this one uses."""
    width: PositiveInt = 256
    """d_model of the decoder (UniT's decoder_hidden_dim); the memories are projected to it when they differ."""
    layers: PositiveInt = 6
    """Decoder layers."""
    heads: PositiveInt = 8
    ffn: PositiveInt = 2048
    """Feed-forward hidden width."""
    activation: Activation = "relu"
    """Activation of the feed-forward."""
    dropout: Probability = 0.1
    eps: PositiveFloat = 1e-5

    def references(self) -> dict[str, str]:
        refs = {"image": self.image, "text": self.text}  # not `share`: the stack is parameters, not data
        return {port: ref for port, ref in refs.items() if ref is not None}

    def _owner(self, ctx) -> DetrDecoder | None:
        if self.share is None:
            return None
        other = ctx.spec.encoders.get(self.share)
        if not isinstance(other, DetrDecoder) or other is self or other.share:
            raise CheckError("share", f"share {self.share!r} must name another detr_decoder that owns its layers")
        fields = ("width", "layers", "heads", "ffn", "activation", "eps")
        differ = [f for f in fields if getattr(self, f) != getattr(other, f)]
        if differ:
            raise CheckError("share", f"the stack of {self.share!r} differs in {', '.join(differ)}")
        for side in ("image", "text"):
            if getattr(self, side) is not None and getattr(other, side) is None:
                raise CheckError(side, f"{self.share!r} has no {side} projection to share; give it a {side} input")
        return other

    def _image_width(self, ctx) -> int | None:
        if self.image is None:
            return None
        node = ctx.spec.encoders.get(self.image)
        if getattr(node, "type", None) != "detr_encoder":
            raise CheckError("image", f"{self.image!r} must be a detr_encoder (sequence and positions)")
        return node.width

    def _text_width(self, ctx) -> int | None:
        if self.text is None:
            return None
        node = ctx.spec.encoders.get(self.text)
        embed = getattr(node, "embed", None)
        if getattr(node, "type", None) != "transformer" or getattr(embed, "type", None) != "tokens" or (
                embed.position_kind != "learned"):
            raise CheckError("text", f"{self.text!r} must be a transformer with token embeddings and a learned "
                                     f"position table")
        return node.width

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        if self.image is None and self.text is None:
            raise CheckError("image", "a detr_decoder needs an image or a text memory (or both)")
        if self.width % self.heads:
            raise CheckError("heads", f"width {self.width} is not divisible by heads {self.heads}")
        self._owner(ctx)
        self._image_width(ctx)
        self._text_width(ctx)
        sequences = [sequence_of(inputs[side], getattr(self, side), side)[1] for side in ("image", "text")
                     if getattr(self, side) is not None]
        batch = sequences[0].shape[0]
        if self.text is not None:
            dim_sum(*(s.shape[1] for s in sequences))  # the memory's length (checks the axes combine)
        return {"sequence": TensorInfo((batch, self.queries, self.width)), "first": TensorInfo((batch, self.width))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """The queries; unless shared: the layers (self- and cross-attention), the final LayerNorm, two Linear maps
        (memory and positions) per projected side."""
        w = self.width
        total = self.queries * w
        if self.share is not None:
            return total
        total += self.layers * _layer(w, self.ffn, 2) + 2 * w
        image, text = self._image_width(ctx), self._text_width(ctx)
        for side in (image if image != w else None, text):
            if side is not None:
                total += 2 * (side * w + w)
        return total

    def build(self, inputs: dict[str, Bundle], ctx):
        """The stack of the sharing group (this decoder and those that `share` one owner) is built by whichever
        member is built first; the others take it (build order follows the data, not `share`)."""
        from mmspec.components.encoders.detr.module import DetrDecoderModule, DetrDecoderStack

        owner = self._owner(ctx) or self
        name = self.share or next(n for n, c in ctx.spec.encoders.items() if c is self)
        stack = next((m.stack for m in ctx.modules.values()
                      if isinstance(m, DetrDecoderModule) and m.group == name), None)
        if stack is None:
            stack = DetrDecoderStack(owner, owner._image_width(ctx), owner._text_width(ctx))
        text_positions = ctx.modules[self.text].embed.position if self.text is not None else None
        return DetrDecoderModule(self, name, stack, text_positions)
