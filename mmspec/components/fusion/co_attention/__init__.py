"""Two-stream co-attention (ViLBERT Co-TRM): two transformer streams joined by cross-stream blocks."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.common import FreezableStack, PoolConfig, StackConfig, require, stream_outputs
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveInt, Probability, Ref, StrictModel
from mmspec.spec.tensors import Bundle, CheckError


class CoLayers(StrictModel):
    """Where the co-attention blocks go: block k runs just before text layer `text_layers[k]` and vision
    layer `vision_layers[k]` (ViLBERT's t_biattention_id / v_biattention_id). The lists are non-decreasing: a
    repeated id puts two blocks in a row with no layer of that stream between them (as the official code)."""

    width: PositiveInt = 1024
    heads: PositiveInt = 8
    text_layers: list[Annotated[int, Field(ge=0)]] = Field(min_length=1)
    vision_layers: list[Annotated[int, Field(ge=0)]] = Field(min_length=1)
    dropout: Probability = 0.1
    attention_dropout: Probability = 0.1


class Streams(StrictModel):
    """The two input streams of a co-attention fusion."""

    text: Ref
    vision: Ref


_STREAMS = {
    "text_enc": {
        "type": "transformer",
        "input": "text",
        "embed": {"type": "tokens", "positions": 12, "segments": 0},
        "width": 8,
        "layers": 0,
        "heads": 2,
        "ffn": 16,
    },
    "region_enc": {
        "type": "transformer",
        "input": "regions",
        "embed": {"type": "regions"},
        "width": 6,
        "layers": 0,
        "heads": 2,
        "ffn": 12,
    },
}
_STACK = {"layers": 2, "heads": 2, "ffn": 16}
CO_ATTENTION_EXAMPLES = (
    Example(
        {
            "text": {"type": "tokens", "vocab_size": 40, "length": "seq", "max_length": 12, "mask": True},
            "regions": {"type": "regions", "dim": 5, "count": "regions", "max_count": 6, "boxes": 5, "mask": True},
        },
        {
            "inputs": {"text": "text_enc", "vision": "region_enc"},
            "text": {"width": 8, **_STACK},
            "vision": {"width": 6, **_STACK},
            "co": {"width": 8, "heads": 2, "text_layers": [1, 2], "vision_layers": [0, 2]},
            "text_pool": {"type": "cls", "dense": 4, "activation": "tanh"},
            "vision_pool": {"type": "mean"},
        },
        {"encoders": _STREAMS},
    ),
    Example(  # ViLBERT's official repeated visual ids; a frozen (pretrained) text stream
        {
            "text": {"type": "tokens", "vocab_size": 40, "length": "seq", "max_length": 12, "mask": True},
            "regions": {"type": "regions", "dim": 5, "count": "regions", "max_count": 6, "boxes": 5, "mask": True},
        },
        {
            "inputs": {"text": "text_enc", "vision": "region_enc"},
            "text": {"width": 8, **_STACK, "layers": 3, "trainable": False},
            "vision": {"width": 6, **_STACK},
            "co": {"width": 8, "heads": 2, "text_layers": [1, 2, 2, 3], "vision_layers": [0, 0, 1, 2]},
            "text_pool": {"type": "cls"},
        },
        {"encoders": _STREAMS},
        name="repeated_ids_frozen_text",
    ),
)


@register("fusion", examples=CO_ATTENTION_EXAMPLES)
class CoAttentionFusion(ComponentConfig):
    """Text and vision streams, each a transformer stack, exchanging keys/values in co-attention blocks.

    Emits `text`/`vision` sequences, and `text_pooled`/`vision_pooled` when the pools are set.
    """

    type: Literal["co_attention"]
    inputs: Streams
    text: FreezableStack
    """The text stream's own transformer layers (width, layers, heads, ffn; `trainable: false` freezes them)."""
    vision: FreezableStack
    """The vision stream's own transformer layers."""
    co: CoLayers
    """The co-attention blocks: their width and heads, and after which text and vision layers each one runs."""
    text_pool: PoolConfig | None = None
    """Pooling of the text stream into `text_pooled`; null: none."""
    vision_pool: PoolConfig | None = None
    """Pooling of the vision stream into `vision_pooled`; null: none."""

    def references(self) -> dict[str, str]:
        return {"text": self.inputs.text, "vision": self.inputs.vision}

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        out: Bundle = {}
        for stream in ("text", "vision"):
            cfg: StackConfig = getattr(self, stream)
            cfg.check_heads((stream,))
            seq = require(inputs[stream].get("sequence"), "sequence", 3, f"{stream} sequence")
            if seq.width != cfg.width:
                raise CheckError(
                    (stream, "width"),
                    f"{stream}.width {cfg.width} differs from the width {seq.width} of "
                    f"{getattr(self.inputs, stream)!r}; make them equal",
                )
            layer_ids = getattr(self.co, f"{stream}_layers")
            if layer_ids != sorted(layer_ids) or layer_ids[0] < 0 or layer_ids[-1] > cfg.layers:
                raise CheckError(
                    ("co", f"{stream}_layers"),
                    f"co.{stream}_layers {layer_ids} must be non-decreasing layer indices "
                    f"in 0..{cfg.layers} ({stream}.layers)",
                )
            stream_outputs(out, stream, inputs[stream], getattr(self, f"{stream}_pool"), cfg.width, "co-attention")
        if len(self.co.text_layers) != len(self.co.vision_layers):
            raise CheckError(
                ("co", "vision_layers"),
                f"co.text_layers has {len(self.co.text_layers)} entries but co.vision_layers has "
                f"{len(self.co.vision_layers)}; each co-attention block needs one of each",
            )
        if self.co.width % self.co.heads:
            raise CheckError(("co", "heads"), f"co.width {self.co.width} is not divisible by co.heads {self.co.heads}")
        return out

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Parameters `build` will allocate, by formula (budgets before allocation; mmspec.spec.budget)."""
        from mmspec.components import params as P

        t, v, co = self.text, self.vision, self.co
        cross = P.attention(v.width, t.width, co.width, v.width) + P.attention(t.width, v.width, co.width, t.width)
        ffns = P.feed_forward(v.width, v.ffn) + P.feed_forward(t.width, t.ffn)
        per_block = cross + ffns + 2 * P.layer_norm(v.width) + 2 * P.layer_norm(t.width)
        pools = P.pool(self.text_pool, t.width) + P.pool(self.vision_pool, v.width)
        return P.stack(t) + P.stack(v) + len(co.text_layers) * per_block + pools

    def internal_shapes(self, inputs: dict[str, Bundle], ctx) -> list[tuple]:
        """Attention scores of both streams and of the two cross-attentions, and the feed-forward layers."""
        batch, st, _ = inputs["text"]["sequence"].shape
        sv = inputs["vision"]["sequence"].shape[1]
        t, v, co = self.text, self.vision, self.co
        return [
            (batch, t.heads, st, st),
            (batch, v.heads, sv, sv),
            (batch, co.heads, st, sv),
            (batch, co.heads, sv, st),
            (batch, st, t.ffn),
            (batch, sv, v.ffn),
        ]

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.fusion.co_attention.module import CoAttentionModule

        return CoAttentionModule(self)
