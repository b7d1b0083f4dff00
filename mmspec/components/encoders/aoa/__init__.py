"""AoANet's caption decoder (Huang, Wang, Chen, Wei. Attention on Attention for Image Captioning. ICCV 2019): an
attention LSTM whose multi-head attention over the refined regions ends in Attention on Attention. The refiner is a
`transformer` encoder with `aoa: true` (mmspec.blocks.attention.AttentionOnAttention)."""

from __future__ import annotations

from typing import Literal

from mmspec.components.common import require, sequence_of
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, KVLayout, PositiveFloat, PositiveInt, Probability, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_REFINER = {"type": "transformer", "input": "regions",
            "embed": {"type": "regions", "norm": False, "activation": "relu"},
            "width": 8, "layers": 2, "heads": 2, "ffn": 16, "norm": "pre", "aoa": True, "feed_forward": False,
            "final_norm": True, "eps": 1e-6}
AOA_DECODER_EXAMPLES = (
    Example(
        {"regions": {"type": "regions", "dim": 6, "count": "regions", "max_count": 5, "mask": True},
         "caption": {"type": "tokens", "vocab_size": 20, "length": "caption_len", "max_length": 8}},
        {"input": "caption", "memory": "refiner", "embed": 6, "hidden": 8, "heads": 2},
        {"encoders": {"refiner": _REFINER}},
        name="aoanet",
    ),
)


@register("encoders", examples=AOA_DECODER_EXAMPLES)
class AoADecoder(ComponentConfig):
    """AoANet's decoder (official AoA_Decoder_Core, decoder_type AoA, multi-head attention): for each previous word
    w_t, x_t = dropout(ReLU(E w_t)); (h_t, c_t) = LSTMCell([x_t; mean + dropout(ctx_(t-1))], (h_(t-1), c_(t-1)))
    with `mean` the masked mean of the memory; a_t = multi-head attention of the query W_q LN(h_t) over the memory's
    keys W_k m and values W_v m (no output projection); ctx_t = AoA(a_t, h_t) = i * sigmoid(g) with
    [i; g] = Linear([a_t; h_t]). States start at zero. Emits `sequence` = dropout(ctx_t) [batch, T, hidden] (a
    `token_classifier` makes the logits) and the last states `h`, `c`, `context` [batch, 1, hidden].

    The recurrence runs position by position; it exports as one ONNX Scan, so the monolithic forward and the step
    graph (`exports.G.cache`, states h, c, context; the memory comes in every step) keep a dynamic length."""

    type: Literal["aoa_decoder"]
    input: Ref
    """Caption ids (the previous words; teacher forcing), a tokens modality without padding mask."""
    memory: Ref
    """The refined regions: a node with a `sequence` [batch, R, hidden] (its `mask` masks them)."""
    embed: PositiveInt = 1024
    """Word embedding width (input_encoding_size)."""
    hidden: PositiveInt = 1024
    """LSTM state, attention and context width (rnn_size); equals the memory's width."""
    heads: PositiveInt = 8
    dropout: Probability = 0.5
    """drop_prob_lm: on the word embedding, the fed-back context (ctx_drop) and the output, while training."""
    attention_dropout: Probability = 0.1
    """On the attention probabilities, while training."""
    eps: PositiveFloat = 1e-6
    """The query LayerNorm's epsilon."""

    def references(self) -> dict[str, str]:
        return {"input": self.input, "memory": self.memory}

    def _vocab(self, ctx) -> int:
        modality = ctx.spec.modalities.get(self.input.split(".")[0])
        if getattr(modality, "vocab_size", None) is None:
            raise CheckError("input", f"needs a tokens modality's ids; {self.input!r} is not one")
        return modality.vocab_size

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        bundle = inputs["input"]
        if "mask" in bundle:
            raise CheckError("input", f"{self.input!r} carries a padding mask; the decoder runs every position")
        ids = require(bundle.get("ids"), "ids", 2, "caption token ids")
        self._vocab(ctx)
        _, memory = sequence_of(inputs["memory"], self.memory, "memory")
        if memory.shape[2] != self.hidden:
            raise CheckError("memory", f"{self.memory!r} is {memory.shape[2]} wide; the decoder's hidden is "
                                       f"{self.hidden} (the mean and the context are added); make them equal")
        if memory.shape[0] != ids.shape[0]:
            raise CheckError("memory", f"{self.memory!r} has batch axis {memory.shape[0]!r} but {self.input!r} has "
                                       f"{ids.shape[0]!r}; both must be one batch")
        if self.hidden % self.heads:
            raise CheckError("heads", f"hidden {self.hidden} is not divisible by heads {self.heads}")
        batch, length = ids.shape
        state = TensorInfo((batch, 1, self.hidden))
        return {"sequence": TensorInfo((batch, length, self.hidden)), "h": state, "c": state, "context": state}

    def kv_layout(self, inputs: dict[str, Bundle], ctx) -> KVLayout:
        """The states h, c and context come in and go out; the memory is read as a fed input at every step."""
        out = self.infer(inputs, ctx)
        batch, length, _ = out["sequence"].shape
        if not isinstance(length, str) or not length.isidentifier():
            raise CheckError(("input",), f"the new positions of a step need a named dynamic length axis; "
                                         f"{self.input!r} has length {length!r}")
        return KVLayout(0, 0, 0, batch, length, None,
                        states=tuple((name, out[name].shape) for name in ("h", "c", "context")))

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Word table; LSTMCell(embed + hidden, hidden); the query LayerNorm; q, k, v Linear(hidden, hidden); the
        AoA Linear(2 hidden, 2 hidden)."""
        from mmspec.components import params as P

        h = self.hidden
        lstm = 4 * h * (self.embed + h) + 4 * h * h + 8 * h
        return self._vocab(ctx) * self.embed + lstm + P.layer_norm(h) + 3 * P.linear(h, h) + P.linear(2 * h, 2 * h)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.aoa.module import AoADecoderModule

        return AoADecoderModule(self._vocab(ctx), self.embed, self.hidden, self.heads, self.dropout,
                                self.attention_dropout, self.eps)
