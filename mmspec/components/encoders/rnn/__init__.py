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
    Example({"text": _TEXT}, {"input": "text", "embed": {"dim": 6}, "hidden": 3, "bidirectional": True,
                              "final": True}, outputs=["probe.final"], name="sentence_vector"),
    Example({"text": {**_TEXT, "mask": True}}, {"input": "text", "embed": {"dim": 6, "dropout": 0.5}, "hidden": 3,
                                                "layers": 2, "bidirectional": True, "final": True},
            outputs=["probe.sequence", "probe.final", "probe.c"], name="packed"),  # padded rows (AttnGAN's DAMSM)
    Example({"text": {**_TEXT, "mask": True}}, {"input": "text", "embed": {"dim": 6}, "hidden": 4, "cell": "gru",
                                                "bridge": 3}, outputs=["probe.sequence", "probe.h", "probe.bridge"],
            name="packed_gru"),
    Example(  # a decoder whose states start from the encoder's final ones (Sutskever et al. 2014)
        {"source": {**_TEXT, "length": "src_len"}, "target": {**_TEXT, "length": "tgt_len"}},
        {"input": "target", "embed": {"dim": 4}, "hidden": 5, "layers": 2, "init": "enc"},
        nodes={"encoders": {"enc": {"type": "rnn", "input": "source", "embed": {"dim": 6}, "hidden": 5,
                                    "layers": 2}}},
        name="decoder",
    ),
    Example(  # a GRU that starts from a vector of another node (an image's, through a tanh MLP), read right to left
        {"text": _TEXT, "image": {"type": "vector", "dim": 7}},
        {"input": "text", "embed": {"dim": 6}, "hidden": 5, "cell": "gru", "init": "start.embedding",
         "reverse": True, "final": True},
        nodes={"heads": {"start": {"type": "mlp", "input": "image", "dim": 5, "hidden": [4], "activation": "tanh"}}},
        outputs=["probe.sequence", "probe.final"],
        name="start_from_vector",
    ),
)


class RNNEmbed(StrictModel):
    """A word table over the token ids of the input (a tokens modality)."""

    dim: PositiveInt
    dropout: Probability = 0.0
    """Dropout on the word vectors while training (AttnGAN's DAMSM text encoder: 0.5)."""


@register("encoders", examples=RNN_EXAMPLES)
class RNNEncoder(ComponentConfig):
    """A stacked LSTM or GRU (torch.nn.LSTM / torch.nn.GRU) over token ids (`embed`) or a sequence [batch, S, D] ->
    `sequence` [batch, S, hidden * directions] and the final states `h` (and `c` for an LSTM) [batch,
    layers * directions, hidden] (batch first; layer-major, directions interleaved as torch orders them).

    An input with a padding mask (1s then 0s per row) runs as packed sequences: each row stops at its length (the
    backward direction starts at its last word), the final states are those at its length, `sequence` is 0 at the
    padding, and the mask comes along as `mask` (AttnGAN's DAMSM text encoder). Decoding step by step
    (`exports.G.cache`) keeps `h` (and `c`) as recurrent states (docs/spec-language.md 4.9), for unpadded rows."""

    type: Literal["rnn"]
    input: Ref
    cell: Literal["lstm", "gru"] = "lstm"
    """Recurrent cell: `lstm` (states h and c) or `gru` (state h)."""
    layers: PositiveInt = 1
    """Stacked recurrent layers."""
    hidden: PositiveInt
    """Hidden state width of each layer and direction."""
    bidirectional: bool = False
    """true: a second pass right to left; the outputs concatenate both directions."""
    embed: RNNEmbed | None = None
    """Token ids -> vectors of `dim`; without it the input is a float sequence."""
    dropout: Probability = 0.0
    """Between stacked layers (torch's `dropout`), while training."""
    init: Ref | None = None
    """Another `rnn` whose final states (`h`, `c`) start this one: the decoder of an encoder-decoder. Same cell,
    layers, directions and hidden size. A GRU may also start from one tensor of any node: [batch, layers *
    directions, hidden], or [batch, hidden] that every layer and direction starts from (e.g. an image vector
    through an `mlp`)."""
    reverse: bool = False
    """true: one pass right to left (the backward half of a bidirectional rnn as a network of its own);
    `sequence` stays aligned with the input positions and the final states are those after the first position."""
    bridge: PositiveInt | None = None
    """Also emit `bridge` [batch, 1, bridge] = tanh(Linear(last state)), the last layer's final state of its last
    direction (the backward one, at the first position, when bidirectional): RNNsearch's decoder start
    s_0 = tanh(W_s h_1) (an `rnn_attention`'s `init`)."""

    final: bool = False
    """Also emit `final` [batch, directions * hidden]: the last layer's final states of its directions side by side
    (AttnGAN's DAMSM sentence vector from a bidirectional LSTM)."""

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
        if "mask" in bundle and self.reverse:
            raise CheckError("reverse", f"{self.input!r} carries a padding mask; a reverse rnn reads whole rows: use "
                                        f"bidirectional, or declare the modality without mask")
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
        if "mask" in inputs["input"]:
            out["mask"] = inputs["input"]["mask"]
        if self.bridge is not None:
            out["bridge"] = TensorInfo((batch, 1, self.bridge))
        if self.final:
            out["final"] = TensorInfo((batch, self.hidden * self.directions))
        if self.reverse and self.bidirectional:
            raise CheckError("reverse", "a bidirectional rnn already reads right to left; set one of reverse and "
                                        "bidirectional")
        if self.init is not None:
            self.start_tensor(inputs, state)
        return out

    def start_tensor(self, inputs: dict[str, Bundle], state: TensorInfo) -> str | None:
        """Checks `init`; the field of the one tensor a GRU starts from, or None for the named states."""
        given = inputs["init"]
        if all(name in given and given[name].shape == state.shape for name in self.state_names()):
            return None
        one = next(iter(given.values())) if len(given) == 1 else None
        vector = (state.shape[0], self.hidden)
        if self.cell == "gru" and one is not None and one.shape in (state.shape, vector):
            return next(iter(given))
        have = {k: list(t.shape) for k, t in sorted(given.items())}
        raise CheckError("init", f"needs the final states {list(self.state_names())} of shape {list(state.shape)} "
                                 f"(an rnn of the same cell, layers, directions and hidden size)"
                                 + (f", or one tensor of that shape or {list(vector)}" if self.cell == "gru" else "")
                                 + f"; {self.init!r} has {have}")

    def kv_layout(self, inputs: dict[str, Bundle], ctx) -> KVLayout:
        """A unidirectional RNN decodes step by step: its states `h` (and `c`) come in and go out; no attention
        keys/values, no position limit. The initial states (`init`) become the states' first values."""
        if "mask" in inputs["input"]:
            raise CheckError(("input",), f"{self.input!r} carries a padding mask; a step graph runs unpadded rows: "
                                         f"declare the modality without mask")
        if self.bidirectional or self.reverse:
            field = "reverse" if self.reverse else "bidirectional"
            raise CheckError((field,), f"a {field} rnn reads the whole sequence right to left; a step graph needs "
                                       f"{field}: false")
        out = self.infer(inputs, ctx)
        batch, length, _ = out["sequence"].shape
        if not isinstance(length, str) or not length.isidentifier():
            raise CheckError(("input",), f"the new positions of a step need a named dynamic length axis; "
                                         f"{self.input!r} has length {length!r}")
        states = tuple((name, out[name].shape) for name in self.state_names())
        init: tuple = ()
        if self.init is not None:
            one = self.start_tensor(inputs, out["h"])
            if one is not None and inputs["init"][one].shape != out["h"].shape:
                raise CheckError(("init",), f"a step graph starts from states of shape {list(out['h'].shape)}; "
                                            f"{self.init!r} is a vector")
            init = tuple((name, self.init.split(".")[0], one or name) for name in self.state_names())
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
        return total + (self.hidden * self.bridge + self.bridge if self.bridge else 0)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.rnn.module import Recurrent

        _, width = self.input_size(inputs, ctx)
        vocab = ctx.spec.modalities[self.input.split(".")[0]].vocab_size if self.embed else None
        field = None if self.embed else sequence_of(inputs["input"], self.input)[0]
        state = self.infer(inputs, ctx)["h"]
        start = self.start_tensor(inputs, state) if self.init is not None else None
        vector = start is not None and inputs["init"][start].rank == 2
        return Recurrent(self.cell, width, self.hidden, self.layers, self.bidirectional, self.dropout, vocab, field,
                         self.bridge, self.final, self.reverse, start, vector,
                         self.embed.dropout if self.embed is not None else 0.0)


class AdditiveAttention(StrictModel):
    """Bahdanau's alignment model over another node's sequence (the annotations h_j)."""

    input: Ref
    dim: PositiveInt
    """Width of the alignment MLP: e_ij = v_a^T tanh(W_a s_(i-1) + U_a h_j)."""


_ATTENTION_EXAMPLE = Example(  # RNNsearch (Bahdanau et al. 2015) at toy size
    {"source": {**_TEXT, "length": "src_len"}, "target": {**_TEXT, "length": "tgt_len"}},
    {"input": "target", "embed": {"dim": 4}, "hidden": 5, "attention": {"input": "enc.sequence", "dim": 3},
     "init": "enc.bridge", "maxout": 3},
    nodes={"encoders": {"enc": {"type": "rnn", "input": "source", "embed": {"dim": 6}, "hidden": 4, "cell": "gru",
                                "bidirectional": True, "bridge": 5}}},
)


@register("encoders", examples=(_ATTENTION_EXAMPLE,))
class RNNAttentionDecoder(ComponentConfig):
    """RNNsearch's decoder (Bahdanau et al. 2015): per target position i, the context c_i = sum_j a_ij h_j with
    a_ij = softmax_j(v_a^T tanh(W_a s_(i-1) + U_a h_j)) over the annotations `attention.input` [batch, S, C]; the
    GRU state s_i = GRUCell([E y_(i-1); c_i], s_(i-1)); the output t_i = maxout(Linear([s_i; E y_(i-1); c_i]))
    -> `sequence` [batch, T, maxout] (or [s_i] [batch, T, hidden] without maxout), `h` [batch, 1, hidden].

    Input ids are the previous target words (teacher forcing). The recurrence runs position by position (the
    GRU input depends on the previous state); it exports as one ONNX Scan, so both the monolithic forward and
    the step graph (`exports.G.cache`, state `h`) keep a dynamic length."""

    type: Literal["rnn_attention"]
    input: Ref
    embed: RNNEmbed
    """The target-token embedding (the previous word y_(i-1) fed at each step)."""
    hidden: PositiveInt
    """Width of the GRU state s_i."""
    attention: AdditiveAttention
    """The additive attention: what it attends to (`input`, the encoder's annotations) and its width."""
    init: Ref | None = None
    """A [batch, 1, hidden] tensor the state starts from (an `rnn`'s `bridge`); default zeros."""
    maxout: PositiveInt | None = None
    """Units of the maxout output layer (pairs of 2 * maxout linear units; RNNsearch: 500)."""

    def references(self) -> dict[str, str]:
        return {"input": self.input, "memory": self.attention.input, **({"init": self.init} if self.init else {})}

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        bundle = inputs["input"]
        if "mask" in bundle:
            raise CheckError("input", f"{self.input!r} carries a padding mask; the decoder runs every position")
        ids = require(bundle.get("ids"), "ids", 2, "token ids")
        if getattr(ctx.spec.modalities.get(self.input.split(".")[0]), "vocab_size", None) is None:
            raise CheckError("input", f"embed reads a tokens modality's ids; {self.input!r} is not one")
        _, memory = sequence_of(inputs["memory"], self.attention.input, ("attention", "input"))
        if "mask" in inputs["memory"]:
            raise CheckError(("attention", "input"), "the annotations carry a padding mask; attend over unpadded rows")
        if not isinstance(memory.shape[2], int):
            raise CheckError(("attention", "input"), f"the annotation width must be fixed, got {memory.shape[2]!r}")
        batch, length = ids.shape
        state = TensorInfo((batch, 1, self.hidden))
        if self.init is not None:
            (given,) = inputs["init"].values() if len(inputs["init"]) == 1 else (None,)
            if given is None or given.shape != state.shape:
                have = {k: list(t.shape) for k, t in sorted(inputs["init"].items())}
                raise CheckError("init", f"needs one start state of shape {list(state.shape)} (an rnn's bridge of "
                                         f"width {self.hidden}); {self.init!r} has {have}")
        return {"sequence": TensorInfo((batch, length, self.maxout or self.hidden)), "h": state}

    def kv_layout(self, inputs: dict[str, Bundle], ctx) -> KVLayout:
        """The state `h` comes in and goes out; the annotations are read as a fed input at every step."""
        out = self.infer(inputs, ctx)
        batch, length, _ = out["sequence"].shape
        if not isinstance(length, str) or not length.isidentifier():
            raise CheckError(("input",), f"the new positions of a step need a named dynamic length axis; "
                                         f"{self.input!r} has length {length!r}")
        init = ()
        if self.init is not None:
            node, _, fld = self.init.partition(".")
            init = (("h", node, fld or next(iter(inputs["init"]))),)
        return KVLayout(0, 0, 0, batch, length, None, states=(("h", out["h"].shape),), state_init=init,
                        state_port="init" if self.init else None)

    def _widths(self, inputs: dict[str, Bundle]) -> tuple[int, int]:
        _, memory = sequence_of(inputs["memory"], self.attention.input, ("attention", "input"))
        return int(memory.shape[2]), self.embed.dim

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        from mmspec.components import params as P

        context, emb = self._widths(inputs)
        vocab = ctx.spec.modalities[self.input.split(".")[0]].vocab_size
        h, a = self.hidden, self.attention.dim
        readout = P.linear(h + emb + context, 2 * self.maxout) if self.maxout else 0
        return (vocab * emb + 3 * h * (emb + context + h + 2) + P.linear(h, a) + P.linear(context, a, bias=False)
                + a + readout)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.rnn.module import AttentionRecurrent

        context, emb = self._widths(inputs)
        vocab = ctx.spec.modalities[self.input.split(".")[0]].vocab_size
        return AttentionRecurrent(vocab, emb, context, self.hidden, self.attention.dim, self.maxout)
