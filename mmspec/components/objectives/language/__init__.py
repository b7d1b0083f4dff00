"""Autoregressive language modelling and T5 span corruption (training-only)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from mmspec.components.examples import TEXT
from mmspec.components.objectives.base import (
    LOSS,
    Objective,
    Target,
    input_names,
    pick_modality,
    require_rank,
    tensor,
)
from mmspec.registry import Example, register
from mmspec.spec.base import Name, PositiveFloat, PositiveInt, Probability, Ref
from mmspec.spec.tensors import Bundle, CheckError

_STACK = {"width": 8, "layers": 1, "heads": 2, "ffn": 16, "causal": True}
AUTOREGRESSIVE_LM_EXAMPLES = (
    Example(  # GPT: causal transformer, output layer tied to the token embedding
        {"text": TEXT},
        {"input": "lm", "tokens": "text"},
        {
            "encoders": {"gpt": {"type": "transformer", "input": "text", "embed": {"type": "tokens", "positions": 12},
                                 **_STACK}},
            "heads": {"lm": {"type": "token_classifier", "input": "gpt.sequence", "tie_to": "gpt"}},
        },
        name="gpt",
    ),
    Example(  # DALL-E / Gato: per-segment loss weights and a data loss mask
        {"text": {**TEXT, "segments": 2}},
        {"input": "lm", "tokens": "text", "loss_mask": True, "segment_weights": [0.125, 0.875], "label_smoothing": 0.1},
        {
            "encoders": {"gpt": {"type": "transformer", "input": "text",
                                 "embed": {"type": "tokens", "positions": 12, "segments": 2}, **_STACK}},
            "heads": {"lm": {"type": "token_classifier", "input": "gpt.sequence", "num_classes": 40,
                             "transform": False}},
        },
        name="weighted",
    ),
    Example(  # DALL-E: text before position 4 weighs 1/8, image tokens from it 7/8
        {"text": TEXT},
        {"input": "lm", "tokens": "text", "segment_weights": [0.125, 0.875], "segment_start": 4},
        {
            "encoders": {"gpt": {"type": "transformer", "input": "text",
                                 "embed": {"type": "tokens", "positions": 12}, **_STACK, "causal": True}},
            "heads": {"lm": {"type": "token_classifier", "input": "gpt.sequence", "tie_to": "gpt"}},
        },
        name="segment_start",
    ),
    Example(  # a right-to-left GRU: logits at t predict token t-1
        {"text": {**TEXT, "mask": False}},
        {"input": "lm", "tokens": "text", "direction": "previous"},
        {
            "encoders": {"bwd": {"type": "rnn", "input": "text", "embed": {"dim": 6}, "hidden": 5, "cell": "gru",
                                 "reverse": True}},
            "heads": {"lm": {"type": "token_classifier", "input": "bwd.sequence", "num_classes": 40,
                             "transform": False}},
        },
        name="previous",
    ),
)
SPAN_CORRUPTION_EXAMPLES = (
    Example(  # the source is corrupted in place, the decoder reads the shifted target
        {
            "source": {"type": "tokens", "vocab_size": 40, "length": "src", "max_length": 12, "mask": True},
            "target": {"type": "tokens", "vocab_size": 40, "length": 6, "mask": True},
        },
        {"input": "t5", "source": "source", "decoder": "target", "noise_density": 0.3, "mean_span": 2.0},
        {
            "encoders": {"decoder": {"type": "transformer", "input": "target",
                                     "embed": {"type": "tokens", "positions": 6}, **_STACK}},
            "heads": {"t5": {"type": "token_classifier", "input": "decoder.sequence", "num_classes": 40}},
        },
    ),
)


@register("objectives", training_only=True, examples=AUTOREGRESSIVE_LM_EXAMPLES)
class AutoregressiveLM(Objective):
    """Next-token cross-entropy on per-token logits [batch, S, V] of a causal model (GPT, DALL-E, Gato):
    logits at t predict token t+1 of `tokens`; padding never counts.

    `loss_mask: true` adds batch target `loss_mask` [batch, S] (1 = this token is a target; Gato's action
    tokens). `segment_weights` weighs the mean loss of each segment id of the tokens (DALL-E: [0.125, 0.875]).
    `label_smoothing` mixes the one-hot target with the uniform distribution (the Transformer: 0.1)."""

    type: Literal["autoregressive_lm"]
    input: Ref
    tokens: Name
    """The tokens modality whose next ids are the targets (the one the causal model reads)."""
    loss_mask: bool = False
    """true: the batch carries `loss_mask` [batch, S] and only tokens marked 1 are predicted."""
    segment_weights: list[Annotated[float, Field(ge=0.0)]] | None = None
    """Weight of each segment id's mean loss (DALL-E: text 0.125, image 0.875); null: one mean over all tokens."""
    segment_start: PositiveInt | None = None
    """Segments by position instead of the modality's segment ids: target tokens before this position are segment
    0, the rest segment 1 (DALL-E: 256, its first image token); `segment_weights` then gives two weights."""
    label_smoothing: Probability = 0.0
    direction: Literal["next", "previous"] = "next"
    """`next`: logits at t predict token t+1; `previous`: token t-1 (a right-to-left model: a reversed rnn)."""
    ref_fields = ("input", "tokens")

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        logits = require_rank(tensor(inputs, "input", self.input, "logits"), 3, "input", "per-token logits", self.input)
        modality = ctx.spec.modalities.get(self.tokens)
        if modality is None or modality.type != "tokens":
            pick_modality(ctx.spec, self.tokens, self.input, ("tokens",), "tokens", "predict")
        if logits.shape[:2] != inputs["tokens"]["ids"].shape:
            raise CheckError(
                "input",
                f"logits {list(logits.shape)} of {self.input!r} do not cover the tokens "
                f"{list(inputs['tokens']['ids'].shape)} of {self.tokens!r}",
            )
        if self.segment_start is not None:
            if self.segment_weights is None or len(self.segment_weights) != 2:
                raise CheckError("segment_start", "segment_start splits the tokens into two segments; give "
                                                  "segment_weights two entries [before, from]")
        elif self.segment_weights is not None and len(self.segment_weights) != modality.segments:
            raise CheckError(
                "segment_weights",
                f"segment_weights has {len(self.segment_weights)} entries but "
                f"{self.tokens!r} has segments: {modality.segments}; give one each",
            )
        return LOSS

    def targets(self, inputs: dict[str, Bundle], spec: Any) -> dict[str, Target]:
        if not self.loss_mask:
            return {}
        return {"loss_mask": Target(inputs["tokens"]["ids"], "binary")}

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.language.loss import AutoregressiveLM as Module

        return Module(self.segment_weights, self.loss_mask, self.label_smoothing, self.segment_start,
                      self.direction == "previous")


@register("objectives", training_only=True, examples=SPAN_CORRUPTION_EXAMPLES)
class SpanCorruption(Objective):
    """T5 span corruption: `noise_density` of the `source` tokens, in spans of mean length `mean_span`, are
    replaced by sentinel ids (first_sentinel, first_sentinel - 1, ...); the `decoder` modality gets the target
    shifted right, and the loss is cross-entropy of the decoder's per-token logits against the target."""

    type: Literal["span_corruption"]
    input: Ref
    """A head with per-token logits over the decoder positions."""
    source: Name
    """The tokens modality the encoder reads (corrupted in place, then padded)."""
    decoder: Name
    """The tokens modality the decoder reads (filled with the shifted target)."""
    noise_density: Probability = 0.15
    """Fraction of the source tokens that are corrupted."""
    mean_span: PositiveFloat = 3.0
    """Mean length of a corrupted span."""
    first_sentinel: Annotated[int, Field(ge=0)] | None = None
    """Id of the first sentinel; default: the source's vocab_size - 1 (T5: <extra_id_0> = 32099)."""
    pad: Annotated[int, Field(ge=0)] = 0
    """Id of the padding token (never corrupted, never a target)."""
    decoder_start: Annotated[int, Field(ge=0)] = 0
    """Id that starts the shifted-right decoder input."""

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        logits = require_rank(tensor(inputs, "input", self.input, "logits"), 3, "input", "per-token logits", self.input)
        for fld in ("source", "decoder"):
            pick_modality(ctx.spec, getattr(self, fld), self.input, ("tokens",), fld, "corrupt")
        dec = ctx.spec.modalities[self.decoder]
        if logits.shape[1] != dec.length:
            raise CheckError(
                "decoder",
                f"{self.input!r} has {logits.shape[1]} positions but decoder "
                f"{self.decoder!r} has length {dec.length}; the head must read the decoder",
            )
        vocab = ctx.spec.modalities[self.source].vocab_size
        if self.first_sentinel is not None and self.first_sentinel >= vocab:
            raise CheckError(
                "first_sentinel",
                f"first_sentinel {self.first_sentinel} is not below the vocab_size {vocab} of {self.source!r}",
            )
        return LOSS

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.language.loss import SpanCorruption as Module

        src, dec = input_names(ctx.spec, self.source), input_names(ctx.spec, self.decoder)
        first = self.first_sentinel
        if first is None:
            first = ctx.spec.modalities[self.source].vocab_size - 1
        return Module(
            src["ids"],
            src.get("mask"),
            dec["ids"],
            dec.get("mask"),
            self.noise_density,
            self.mean_span,
            first,
            self.pad,
            self.decoder_start,
        )
