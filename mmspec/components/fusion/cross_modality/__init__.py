"""LXMERT's cross-modality encoder (used by XDBERT): two streams of their own widths exchanging information in
layers of cross-attention, then self-attention and feed-forward per stream."""

from __future__ import annotations

from typing import Literal

from mmspec.components.common import Activation, PoolConfig, require, stream_outputs
from mmspec.components.fusion.co_attention import Streams
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, PositiveInt, Probability, StrictModel
from mmspec.spec.tensors import Bundle, CheckError


class CrossStream(StrictModel):
    """One stream of the cross-modality layers: its heads (in its cross- and self-attention) and its
    feed-forward width; its width is that of its input sequence."""

    heads: PositiveInt = 12
    ffn: PositiveInt = 3072


_STREAMS = {
    "text_enc": {"type": "transformer", "input": "text", "embed": {"type": "tokens", "positions": 12},
                 "width": 8, "layers": 1, "heads": 2, "ffn": 16},
    "other_enc": {"type": "transformer", "input": "other", "embed": {"type": "tokens", "positions": 10},
                  "width": 6, "layers": 1, "heads": 2, "ffn": 12, "norm": "pre", "causal": True},
}
_TOKENS = {"text": {"type": "tokens", "vocab_size": 40, "length": "seq", "max_length": 12, "mask": True},
           "other": {"type": "tokens", "vocab_size": 30, "length": "other_len", "max_length": 10}}
CROSS_MODALITY_EXAMPLES = (
    Example(  # XDBERT: BERT tokens against CLIP text tokens of another width, a tanh pooler on the text stream
        _TOKENS,
        {
            "inputs": {"text": "text_enc", "vision": "other_enc"},
            "layers": 2,
            "text": {"heads": 2, "ffn": 16},
            "vision": {"heads": 3, "ffn": 8},
            "text_pool": {"type": "cls", "dense": 8, "activation": "tanh"},
        },
        {"encoders": _STREAMS},
    ),
)


@register("fusion", examples=CROSS_MODALITY_EXAMPLES)
class CrossModalityFusion(ComponentConfig):
    """`layers` LXMERT cross-modality layers over a text and a vision (or other) stream [batch, S, D] of their
    own widths. In each layer both streams attend to the other's input (queries, keys and values in the
    querying stream's width and heads; post-norm Add&Norm), then each runs its own post-norm self-attention and
    feed-forward block.

    Emits `text`/`vision` sequences (with the inputs' masks) and `text_pooled`/`vision_pooled` when pooled."""

    type: Literal["cross_modality"]
    inputs: Streams
    layers: PositiveInt = 5
    """Cross-modality layers."""
    text: CrossStream = CrossStream()
    """The text stream's heads and feed-forward width (its width is its input's)."""
    vision: CrossStream = CrossStream()
    """The vision stream's heads and feed-forward width (its width is its input's)."""
    activation: Activation = "gelu"
    """Activation of the feed-forward layers."""
    eps: PositiveFloat = 1e-12
    dropout: Probability = 0.1
    attention_dropout: Probability = 0.1
    text_pool: PoolConfig | None = None
    """Pooling of the text stream into `text_pooled`; null: none."""
    vision_pool: PoolConfig | None = None
    """Pooling of the vision stream into `vision_pooled`; null: none."""

    def references(self) -> dict[str, str]:
        return {"text": self.inputs.text, "vision": self.inputs.vision}

    def widths(self, inputs: dict[str, Bundle]) -> tuple[int, int]:
        """(text width, vision width) of the input sequences."""
        return tuple(require(inputs[s].get("sequence"), "sequence", 3, f"{s} sequence").width
                     for s in ("text", "vision"))  # type: ignore[return-value]

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        out: Bundle = {}
        for stream, width in zip(("text", "vision"), self.widths(inputs), strict=True):
            heads = getattr(self, stream).heads
            if width % heads:
                raise CheckError((stream, "heads"), f"the {stream} stream is {width} wide, not divisible by "
                                                    f"{stream}.heads {heads}")
            stream_outputs(out, stream, inputs[stream], getattr(self, f"{stream}_pool"), width, "cross-modality")
        return out

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Parameters `build` will allocate, by formula (budgets before allocation; mmspec.spec.budget)."""
        from mmspec.components import params as P

        t, v = self.widths(inputs)
        cross = P.attention(t, v, t, t) + P.layer_norm(t) + P.attention(v, t, v, v) + P.layer_norm(v)
        per_layer = cross + P.block(t, self.text.ffn) + P.block(v, self.vision.ffn)
        return self.layers * per_layer + P.pool(self.text_pool, t) + P.pool(self.vision_pool, v)

    def internal_shapes(self, inputs: dict[str, Bundle], ctx) -> list[tuple]:
        """Attention scores within and across the streams, and the feed-forward layers."""
        batch, st, _ = inputs["text"]["sequence"].shape
        sv = inputs["vision"]["sequence"].shape[1]
        ht, hv = self.text.heads, self.vision.heads
        return [(batch, ht, st, st), (batch, hv, sv, sv), (batch, ht, st, sv), (batch, hv, sv, st),
                (batch, st, self.text.ffn), (batch, sv, self.vision.ffn)]

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.fusion.cross_modality.module import CrossModalityModule

        return CrossModalityModule(self, *self.widths(inputs))
