"""Recurrent encoder/decoder (LSTM or GRU, stacked, optionally bidirectional): Sutskever et al. 2014 and Cho et al.
2014's encoder-decoders, and the recurrent step of a decoder that keeps its states between steps."""

from __future__ import annotations

from typing import Literal

from mmspec.components.common import require, sequence_of
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, KVLayout, PositiveInt, Probability, Ref, StrictModel
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_TEXT = {"type": "tokens", "vocab_size": 20, "length": "seq", "max_length": 6}
RNN_EXAMPLES = (
    Example({"text": _TEXT}, {"input": "text", "embed": {"dim": 6}, "hidden": 5, "layers": 2}, name="lstm"),
    Example({"text": _TEXT}, {"input": "text", "embed": {"dim": 6}, "hidden": 5, "cell": "gru",
                              "bidirectional": True}, name="bidirectional_gru"),
    Example(  # a decoder whose states start from the encoder's final ones (Sutskever et al. 2014)
        {"source": {**_TEXT, "length": "src_len"}, "target": {**_TEXT, "length": "tgt_len"}},
        {"input": "target", "embed": {"dim": 4}, "hidden": 5, "layers": 2, "init": "enc"},
        nodes={"encoders": {"enc": {"type": "rnn", "input": "source", "embed": {"dim": 6}, "hidden": 5,
                                    "layers": 2}}},
        name="decoder",
    ),
)


class RNNEmbed(StrictModel):
    """A word table over the token ids of the input (a tokens modality)."""

    dim: PositiveInt


@register("encoders", examples=RNN_EXAMPLES)
class RNNEncoder(ComponentConfig):
    """A stacked LSTM or GRU (torch.nn.LSTM / torch.nn.GRU) over token ids (`embed`) or a sequence [batch, S, D] ->
    `sequence` [batch, S, hidden * directions] and the final states `h` (and `c` for an LSTM) [batch,
    layers * directions, hidden] (batch first; layer-major, directions interleaved as torch orders them).

    Rows are unpadded: an input with a padding mask is rejected (an RNN would run over the padding). Decoding step
    by step (`exports.G.cache`) keeps `h` (and `c`) as recurrent states (docs/spec-language.md 4.9)."""

    type: Literal["rnn"]
    input: Ref
    cell: Literal["lstm", "gru"] = "lstm"
    layers: PositiveInt = 1
    hidden: PositiveInt
    bidirectional: bool = False
    embed: RNNEmbed | None = None
    """Token ids -> vectors of `dim`; without it the input is a float sequence."""
    dropout: Probability = 0.0
    """Between stacked layers (torch's `dropout`), while training."""
    init: Ref | None = None
    """Another `rnn` whose final states (`h`, `c`) start this one: the decoder of an encoder-decoder. Same cell,
    layers, directions and hidden size."""

    def references(self) -> dict[str, str]:
        return {"input": self.input, **({"init": self.init} if self.init else {})}

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def state_names(self) -> tuple[str, ...]:
        return ("h", "c") if self.cell == "lstm" else ("h",)

    def input_size(self, inputs: dict[str, Bundle], ctx) -> tuple[TensorInfo, int]:
        """(the input tensor, its feature width after the embedding)."""
        bundle = inputs["input"]
        if "mask" in bundle:
            raise CheckError("input", f"{self.input!r} carries a padding mask; an rnn runs every position of a row "
                                      f"(its states would run over the padding): declare the modality without mask")
        if self.embed is not None:
            ids = require(bundle.get("ids"), "ids", 2, "token ids")
            modality = ctx.spec.modalities.get(self.input.split(".")[0])
            if getattr(modality, "vocab_size", None) is None:
                raise CheckError("input", f"embed reads a tokens modality's ids; {self.input!r} is not one")
            return ids, self.embed.dim
        _, seq = sequence_of(bundle, self.input)
        return seq, int(seq.shape[2]) if isinstance(seq.shape[2], int) else 0

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        x, width = self.input_size(inputs, ctx)
        if not width:
            raise CheckError("input", f"the feature axis of {self.input!r} must have a fixed size, got {x.shape[2]!r}")
        batch, length = x.shape[0], x.shape[1]
        state = TensorInfo((batch, self.layers * self.directions, self.hidden))
        out: Bundle = {"sequence": TensorInfo((batch, length, self.hidden * self.directions)),
                       **{name: state for name in self.state_names()}}
        if self.init is not None:
            given = inputs["init"]
            for name in self.state_names():
                if name not in given or given[name].shape != state.shape:
                    have = {k: list(t.shape) for k, t in sorted(given.items())}
                    raise CheckError("init", f"needs the final states {list(self.state_names())} of shape "
                                             f"{list(state.shape)} (an rnn of the same cell, layers, directions and "
                                             f"hidden size); {self.init!r} has {have}")
        return out

    def kv_layout(self, inputs: dict[str, Bundle], ctx) -> KVLayout:
        """A unidirectional RNN decodes step by step: its states `h` (and `c`) come in and go out; no attention
        keys/values, no position limit. The initial states (`init`) become the states' first values."""
        if self.bidirectional:
            raise CheckError(("bidirectional",), "a bidirectional rnn reads the whole sequence; a step graph needs "
                                                 "bidirectional: false")
        out = self.infer(inputs, ctx)
        batch, length, _ = out["sequence"].shape
        if not isinstance(length, str) or not length.isidentifier():
            raise CheckError(("input",), f"the new positions of a step need a named dynamic length axis; "
                                         f"{self.input!r} has length {length!r}")
        states = tuple((name, out[name].shape) for name in self.state_names())
        init = tuple((name, self.init.split(".")[0], name) for name in self.state_names()) if self.init else ()
        return KVLayout(0, 0, 0, batch, length, None, states=states, state_init=init,
                        state_port="init" if self.init else None)

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        _, width = self.input_size(inputs, ctx)
        gates = 4 if self.cell == "lstm" else 3
        total = 0
        for layer in range(self.layers):
            fan_in = width if layer == 0 else self.hidden * self.directions
            total += self.directions * gates * self.hidden * (fan_in + self.hidden + 2)  # W_ih, W_hh, b_ih, b_hh
        if self.embed is not None:
            total += ctx.spec.modalities[self.input.split(".")[0]].vocab_size * self.embed.dim
        return total

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.rnn.module import Recurrent

        _, width = self.input_size(inputs, ctx)
        vocab = ctx.spec.modalities[self.input.split(".")[0]].vocab_size if self.embed else None
        field = None if self.embed else sequence_of(inputs["input"], self.input)[0]
        return Recurrent(self.cell, width, self.hidden, self.layers, self.bidirectional, self.dropout, vocab, field)
