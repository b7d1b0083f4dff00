"""M² Meshed-Memory Transformer (Cornia et al. 2020): a memory-augmented region encoder whose attention keys and
values carry learned memory slots and which keeps every layer's output, and a meshed decoder whose layers
cross-attend to all of them and mix the results through sigmoid gates."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.common import require
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, KVLayout, PositiveFloat, PositiveInt, Probability, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_REGIONS = {"regions": {"type": "regions", "dim": 6, "count": "regions", "max_count": 5, "mask": True}}
_CAPTION = {"caption": {"type": "tokens", "vocab_size": 20, "length": "caption_len", "max_length": 8}}
_STACK = {"width": 8, "layers": 2, "heads": 2, "ffn": 16}
_ENCODER = {"type": "memory_encoder", "input": "regions", **_STACK, "memory": 3}
MEMORY_ENCODER_EXAMPLES = (
    Example(_REGIONS, {"input": "regions", **_STACK, "memory": 3}, name="tiny"),
    Example(_REGIONS, {"input": "regions", **_STACK, "memory": 0}, name="no_memory"),
)
MESHED_DECODER_EXAMPLES = (
    Example({**_REGIONS, **_CAPTION}, {"input": "caption", "encoder": "enc", **_STACK, "positions": 8},
            {"encoders": {"enc": _ENCODER}}, name="meshed"),
    Example({**_REGIONS, **_CAPTION},
            {"input": "caption", "encoder": "enc", **_STACK, "positions": 8, "meshed": "one_to_one"},
            {"encoders": {"enc": _ENCODER}}, name="one_to_one"),
)


@register("encoders", examples=MEMORY_ENCODER_EXAMPLES)
class MemoryEncoder(ComponentConfig):
    """Regions [batch, R, D_in] -> Linear -> ReLU -> dropout -> LayerNorm, then `layers` post-norm layers of
    memory-augmented attention (keys = [W_k x; sqrt(d_k) M_k], values = [W_v x; sqrt(memory) M_v] with `memory`
    learned slots that padding never masks) and a ReLU feed-forward. Emits `levels` [batch, layers, R, width]
    (every layer's output) and the regions' `mask`."""

    type: Literal["memory_encoder"]
    input: Ref
    width: PositiveInt = 512
    """d_model: the projected regions' and every layer's width."""
    layers: PositiveInt = 3
    """Encoder layers, hence levels."""
    heads: PositiveInt = 8
    ffn: PositiveInt = 2048
    """Feed-forward hidden width."""
    memory: Annotated[int, Field(ge=0)] = 40
    """Learned memory slots per layer (0: plain self-attention, the paper's ablation)."""
    dropout: Probability = 0.1
    eps: PositiveFloat = 1e-5

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        features = require(inputs["input"].get("features"), "features", 3, "region features")
        if self.width % self.heads:
            raise CheckError("heads", f"width {self.width} is not divisible by heads {self.heads}")
        batch, regions, _ = features.shape
        out = {"levels": TensorInfo((batch, self.layers, regions, self.width))}
        if "mask" in inputs["input"]:
            out["mask"] = inputs["input"]["mask"]
        return out

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Input Linear + LayerNorm; per layer q/k/v/out with biases, two memory tables, the feed-forward, two
        LayerNorms."""
        w = self.width
        layer = 4 * (w * w + w) + 2 * self.memory * w + 2 * w * self.ffn + self.ffn + w + 4 * w
        return inputs["input"]["features"].shape[2] * w + w + 2 * w + self.layers * layer

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.meshed_memory.module import MemoryEncoderModule

        return MemoryEncoderModule(inputs["input"]["features"].shape[2], self.width, self.layers, self.heads, self.ffn,
                                   self.memory, self.dropout, self.eps)


@register("encoders", examples=MESHED_DECODER_EXAMPLES)
class MeshedDecoder(ComponentConfig):
    """Caption ids [batch, T] -> word embedding + a frozen sinusoid table (positions 1..T; row 0 is padding's),
    then `layers` layers of causal self-attention (Add & Norm), one cross-attention (Add & Norm) applied to each
    encoder level C_i, gates alpha_i = sigmoid(W_i [Y; C_i] + b_i), sum alpha_i * C_i / sqrt(levels), a ReLU
    feed-forward (Add & Norm); a bias-free Linear to the vocabulary. `meshed: one_to_one` reads only level i in
    decoder layer i, ungated (the paper's 1-to-1 ablation). Emits `logits` [batch, T, vocab_size]."""

    type: Literal["meshed_decoder"]
    input: Ref
    encoder: Ref
    """A `memory_encoder`: its `levels` [batch, L, R, width] and `mask`."""
    width: PositiveInt = 512
    """d_model; equals the encoder's width."""
    layers: PositiveInt = 3
    """Decoder layers."""
    heads: PositiveInt = 8
    ffn: PositiveInt = 2048
    """Feed-forward hidden width."""
    positions: PositiveInt = 54
    """Longest caption (max_len); the sinusoid table has positions + 1 rows."""
    meshed: Literal["all", "one_to_one"] = "all"
    """`all`: every layer reads every level through gates; `one_to_one`: layer i reads level i, ungated."""
    dropout: Probability = 0.1
    eps: PositiveFloat = 1e-5

    def references(self) -> dict[str, str]:
        return {"input": self.input, "encoder": self.encoder}

    def _levels(self, inputs: dict[str, Bundle]) -> int:
        levels = require(inputs["encoder"].get("levels"), "levels", 4, "memory_encoder's levels")
        if levels.shape[3] != self.width:
            raise CheckError("encoder", f"{self.encoder!r} is {levels.shape[3]} wide; this decoder is {self.width}")
        if self.meshed == "one_to_one" and levels.shape[1] != self.layers:
            raise CheckError("meshed", f"one_to_one pairs decoder and encoder layers; {self.layers} decoder layers "
                                       f"and {levels.shape[1]} encoder levels")
        return levels.shape[1]

    def _vocab(self, ctx) -> int:
        modality = ctx.spec.modalities.get(self.input.split(".")[0])
        if modality is None or modality.type != "tokens":
            raise CheckError("input", f"needs a tokens modality; {self.input!r} is not one")
        return modality.vocab_size

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        ids = require(inputs["input"].get("ids"), "ids", 2, "caption token ids")
        self._levels(inputs)
        if self.width % self.heads:
            raise CheckError("heads", f"width {self.width} is not divisible by heads {self.heads}")
        return {"logits": TensorInfo((*ids.shape, self._vocab(ctx)))}

    def kv_layout(self, inputs: dict[str, Bundle], ctx) -> KVLayout:
        """Self-attention caches per layer; the encoder levels come in whole every step (the gates read them)."""
        batch, length = inputs["input"]["ids"].shape
        if not isinstance(length, str):
            raise CheckError("input", f"the new positions of a step need a named dynamic length axis; "
                                      f"{self.input!r} has length {length!r}")
        return KVLayout(self.layers, self.heads, self.width // self.heads, batch, length, self.positions)

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Word table and sinusoid table (frozen, as the official code counts it); per layer two attentions, their
        LayerNorms, one gate Linear(2 width, width) per level, the feed-forward and its LayerNorm; the output."""
        w, vocab, levels = self.width, self._vocab(ctx), self._levels(inputs)
        gates = levels if self.meshed == "all" else 0
        layer = 2 * (4 * (w * w + w) + 2 * w) + gates * (2 * w * w + w) + 2 * w * self.ffn + self.ffn + 3 * w
        return 2 * vocab * w + (self.positions + 1) * w + self.layers * layer

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.meshed_memory.module import MeshedDecoderModule

        gates = self._levels(inputs) if self.meshed == "all" else 0
        return MeshedDecoderModule(self._vocab(ctx), self.width, self.layers, self.heads, self.ffn, self.positions,
                                   gates, self.dropout, self.eps)
