"""T5 layer stacks (Raffel et al. 2020): token embedding, pre-norm RMSNorm residual layers of bias-free unscaled
attention with a bucketed relative position bias and a ReLU (v1.0) or gated-GELU (v1.1) feed-forward, final
RMSNorm. An encoder stack, or a decoder stack (causal, cross-attention to the encoder, optional LM head). VATT's
text tower is an encoder stack over a frozen word2vec table of its own width (`embed`) with an aggregation token."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from mmspec.components.common import Activation, layer_shapes, require, sequence_of
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, KVLayout, Name, PositiveFloat, PositiveInt, Probability, Ref, StrictModel
from mmspec.spec.layout import Rule
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo


class T5Cross(StrictModel):
    """Cross-attention to an encoder's sequence in every layer (after self-attention): makes the stack a decoder."""

    input: Ref
    """The context: a node with a `sequence` (or one rank-3 float tensor); its `mask` masks the keys."""


class T5LMHead(StrictModel):
    """The decoder's output layer: per-token logits over the input vocabulary."""

    tied: bool = True
    """true: the token embedding is the output matrix (T5 v1.0); false: an own bias-free Linear (T5 v1.1)."""
    scale: bool = True
    """Multiply the final sequence by width**-0.5 before the output matrix (T5 v1.0, whose head is tied)."""


class T5Embed(StrictModel):
    """A token table of its own width `dim`, then a bias-free Linear(dim -> width) and an activation (VATT's
    pre-projection of word2vec vectors)."""

    dim: PositiveInt
    """Width of the table (word2vec: 300)."""
    activation: Activation = "identity"
    """After the projection (VATT: gelu)."""
    trainable: bool = True
    """false: the table is frozen (pretrained word vectors); the projection still trains."""


_TEXT = {"type": "tokens", "vocab_size": 40, "length": "src", "max_length": 12, "mask": True}
_TARGET = {"type": "tokens", "vocab_size": 40, "length": "tgt", "max_length": 10}
_STACK = {"width": 8, "layers": 2, "heads": 2, "head_dim": 3, "ffn": 16, "buckets": 8, "max_distance": 16}
T5_EXAMPLES = (
    Example({"text": _TEXT}, {"input": "text", **_STACK}, name="encoder"),
    Example(  # T5 v1.0 decoder: the encoder's table, cross-attention, tied and scaled LM head
        {"source": _TEXT, "target": _TARGET},
        {"input": "target", **_STACK, "share": "enc", "cross": {"input": "enc"}, "lm_head": {}},
        {"encoders": {"enc": {"type": "t5", "input": "source", **_STACK}}},
        name="decoder",
    ),
    Example(  # T5 v1.1 decoder: gated-GELU, own table, untied unscaled head, context of another width
        {"source": _TEXT, "target": _TARGET},
        {"input": "target", **_STACK, "feed_forward": "gated-gelu", "cross": {"input": "enc"},
         "lm_head": {"tied": False, "scale": False}},
        {"encoders": {"enc": {"type": "t5", "input": "source", **_STACK, "width": 6, "feed_forward": "gated-gelu"}}},
        name="decoder_v1_1",
    ),
    Example({"text": {**_TEXT, "mask": False}}, {"input": "text", **_STACK, "causal": True, "lm_head": {}},
            name="causal"),
    Example(  # VATT's text tower: frozen 5-d table, projection + GELU, aggregation token, GELU FFN after a LayerNorm
        {"text": _TEXT},
        {"input": "text", **_STACK, "embed": {"dim": 5, "activation": "gelu", "trainable": False},
         "agg_token": True, "feed_forward": "gelu", "ffn_norm": "layer"},
        name="vatt_text",
    ),
)


@register("encoders", examples=T5_EXAMPLES)
class T5Stack(ComponentConfig):
    """T5 stack over token ids [batch, S]: emits `sequence` [batch, S, width] (after the final RMSNorm), `mask` when
    the input has one, and with `lm_head` `logits` [batch, S, vocab]. Attention has no biases and no 1/sqrt(d)
    scaling; the relative position bias (learned per bucket and head) is computed once per stack and added in every
    layer's self-attention: bidirectional buckets in an encoder, causal ones in a decoder."""

    type: Literal["t5"]
    input: Ref
    width: PositiveInt = 512
    """d_model."""
    layers: PositiveInt = 6
    """Transformer blocks in the stack."""
    heads: PositiveInt = 8
    head_dim: PositiveInt | None = None
    """d_kv, the width of one head (inner = heads * head_dim, which may differ from width); null: width / heads."""
    ffn: PositiveInt = 2048
    """d_ff."""
    feed_forward: Literal["relu", "gelu", "gated-gelu"] = "relu"
    """`relu`: wo(relu(wi x)) (T5 v1.0); `gelu`: wo(gelu(wi x)) (VATT); `gated-gelu`: wo(gelu_tanh(wi_0 x) * wi_1 x)
    (T5 v1.1)."""
    ffn_norm: Literal["rms", "layer"] = "rms"
    """Norm before the feed-forward: T5's RMSNorm, or a LayerNorm with a bias (VATT's text tower)."""
    embed: T5Embed | None = None
    """A table of another width, projected to `width` (VATT); null: a table of `width`."""
    agg_token: bool = False
    """Prepend a learned aggregation token (in the table's space, before `embed`'s projection) and emit `pooled`
    [batch, width], its final state; `sequence` stays the S token positions (VATT's text tower)."""
    eps: PositiveFloat = 1e-6
    dropout: Probability = 0.1
    """After the embedding, on attention weights, inside the feed-forward, after each sublayer and the final norm."""
    buckets: Annotated[int, Field(ge=4)] = 32
    """Relative position buckets (half of them per direction in an encoder)."""
    max_distance: PositiveInt = 128
    """Distances from here on share the last bucket."""
    causal: bool = False
    """Causal self-attention with causal buckets (a decoder); implied by `cross`."""
    cross: T5Cross | None = None
    """Cross-attention to an encoder's output (the decoder stack); null: an encoder stack."""
    share: Name | None = None
    """Use the token table of this other `t5` stack (same vocabulary size and width) instead of an own one: T5's
    one `shared` embedding. It must be computed before this stack (e.g. the one `cross` reads)."""
    lm_head: T5LMHead | None = None
    """Decoders only: emit `logits` over the input's vocabulary."""

    ref_fields: ClassVar[tuple[str, ...]] = ("cross",)
    weight_layouts = {"t5": ()}
    """transformers T5Stack names under `encoder.`/`decoder.` plus `shared` and `lm_head` (prefix '')."""

    @property
    def decoder(self) -> bool:
        return self.causal or self.cross is not None

    @property
    def inner(self) -> int:
        return self.heads * self.head_dim if self.head_dim else self.width

    def references(self) -> dict[str, str]:
        return {"input": self.input, **({"cross": self.cross.input} if self.cross else {})}

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        ids = require(inputs["input"].get("ids"), "ids", 2, "token ids")
        if self.head_dim is None and self.width % self.heads:
            raise CheckError(("heads",), f"width {self.width} is not divisible by heads {self.heads}; set head_dim "
                                         f"(T5's d_kv) or heads that divide width")
        half = self.buckets // (1 if self.decoder else 2)
        if self.max_distance <= half // 2:
            raise CheckError(("max_distance",), f"max_distance {self.max_distance} must exceed the {half // 2} exact "
                                                f"buckets of {self.buckets} buckets; raise it")
        if self.lm_head is not None and not self.decoder:
            raise CheckError(("lm_head",), "an LM head belongs to a decoder; set causal: true or cross, or remove "
                                           "lm_head")
        if self.embed is not None and (self.share or self.lm_head is not None):
            raise CheckError(("embed",), "an `embed` table of its own width is neither shared nor an LM head's "
                                         "matrix; remove embed, or share and lm_head")
        if self.agg_token and self.decoder:
            raise CheckError(("agg_token",), "an aggregation token summarises an encoder's input; remove it from "
                                             "a decoder")
        vocab = self._vocab(ctx)
        if self.share is not None:
            self._shared_table(ctx, vocab)
        batch, length = ids.shape
        out: Bundle = {"sequence": TensorInfo((batch, length, self.width))}
        if "mask" in inputs["input"]:
            out["mask"] = inputs["input"]["mask"]
        if self.cross is not None:
            _, context = sequence_of(inputs["cross"], self.cross.input, "cross")
            if context.shape[0] != batch:
                raise CheckError(("cross",), f"the context {self.cross.input!r} has batch axis {context.shape[0]!r} "
                                             f"but the input {self.input!r} has {batch!r}; both must be one batch")
        if self.lm_head is not None:
            out["logits"] = TensorInfo((batch, length, vocab))
        if self.agg_token:
            out["pooled"] = TensorInfo((batch, self.width))
        return out

    def _vocab(self, ctx) -> int:
        modality = ctx.spec.modalities.get(self.input.split(".")[0])
        if modality is None or modality.type != "tokens":
            raise CheckError("input", f"a t5 stack reads a tokens modality; {self.input!r} is not one")
        return modality.vocab_size

    def _shared_table(self, ctx, vocab: int) -> None:
        """`share` names another t5 stack that owns a table of this vocabulary and width, planned before."""
        other = ctx.spec.encoders.get(self.share)
        if other is None or other.type != "t5" or other is self:
            owners = [n for n, e in ctx.spec.encoders.items() if e.type == "t5" and e is not self]
            raise CheckError(("share",), f"share {self.share!r} must name another t5 stack; candidates: "
                                         f"{', '.join(owners) or 'none'}")
        if other.share is not None:
            raise CheckError(("share",), f"{self.share!r} shares the table of {other.share!r}; name the owner "
                                         f"{other.share!r}")
        theirs = ctx.spec.modalities[other.input.split(".")[0]].vocab_size
        if (theirs, other.width) != (vocab, self.width):
            raise CheckError(("share",), f"the table of {self.share!r} is [{theirs}, {other.width}] but this stack "
                                         f"needs [{vocab}, {self.width}]; make the vocabularies and widths equal")
        if self.share not in ctx.bundles:
            raise CheckError(("share",), f"{self.share!r} must be computed before this stack (reference it, e.g. "
                                         f"with cross: {{input: {self.share}}})")

    def kv_layout(self, inputs: dict[str, Bundle], ctx) -> KVLayout:
        """A decoder steps with per-layer self-attention caches; every layer's cross-attention reads the context's
        precomputed keys/values. Relative positions have no table, so no position limit."""
        if not self.decoder:
            raise CheckError(("causal",), "a KV cache serves a decoder; set causal: true or cross (a bidirectional "
                                          "encoder recomputes every position each step)")
        batch, length, _ = self.infer(inputs, ctx)["sequence"].shape
        if not isinstance(length, str):
            raise CheckError(("input",), f"the new positions of a step need a named dynamic length axis; "
                                         f"{self.input!r} has length {length!r}")
        cross = {}
        if self.cross is not None:
            fld, context = sequence_of(inputs["cross"], self.cross.input, "cross")
            cross = {"cross_layers": tuple(range(self.layers)), "context": (self.cross.input.split(".")[0], fld),
                     "context_port": "cross", "context_length": context.shape[1]}
        return KVLayout(self.layers, self.heads, self.inner // self.heads, batch, length, None, ("mask",), **cross)

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Parameters `build` will allocate, by formula (a shared table belongs to its owner)."""
        w, vocab = self.width, self._vocab(ctx)
        attention = 4 * w * self.inner
        ffn = (3 if self.feed_forward == "gated-gelu" else 2) * w * self.ffn
        layer = attention + ffn + (3 if self.ffn_norm == "layer" else 2) * w
        if self.cross is not None:
            _, context = sequence_of(inputs["cross"], self.cross.input, "cross")
            layer += 2 * w * self.inner + 2 * context.width * self.inner + w
        dim = self.embed.dim if self.embed else w
        table = 0 if self.share else vocab * dim + (dim * w if self.embed else 0)
        head = vocab * w if self.lm_head is not None and not self.lm_head.tied else 0
        agg = dim if self.agg_token else 0
        return table + agg + self.buckets * self.heads + self.layers * layer + w + head

    def internal_shapes(self, inputs: dict[str, Bundle], ctx) -> list[tuple]:
        return layer_shapes(self, inputs, ctx)

    def weight_rules(self, layout: str) -> tuple[Rule, ...]:
        """Layout `t5` (prefix ''): transformers' `{encoder|decoder}.block.{i}.layer.{n}...` for this stack, its
        `embed_tokens` and `final_layer_norm`, the owner's `shared` table and the decoder's `lm_head`."""
        if layout != "t5":
            return super().weight_rules(layout)
        s = "decoder" if self.decoder else "encoder"
        ffn = f"{s}.block.{{i}}.layer.{2 if self.cross else 1}"
        rules = [Rule(f"{s}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                      "position.relative_attention_bias.weight")]
        for attn, ours, n in (("SelfAttention", "attn", 0), ("EncDecAttention", "cross_attn", 1)):
            if ours == "cross_attn" and not self.cross:
                continue
            rules += [Rule(f"{s}.block.{{i}}.layer.{n}.{attn}.{x}.weight", f"layers.{{i}}.{ours}.{y}.weight")
                      for x, y in (("q", "q"), ("k", "k"), ("v", "v"), ("o", "out"))]
            rules.append(Rule(f"{s}.block.{{i}}.layer.{n}.layer_norm.weight",
                              f"layers.{{i}}.{'attn' if n == 0 else 'cross'}_norm.weight"))
        if self.feed_forward == "gated-gelu":
            pairs = (("wi_0", "gate"), ("wi_1", "fc1"), ("wo", "fc2"))
        else:
            pairs = (("wi", "fc1"), ("wo", "fc2"))
        rules += [Rule(f"{ffn}.DenseReluDense.{x}.weight", f"layers.{{i}}.ffn.{y}.weight") for x, y in pairs]
        rules.append(Rule(f"{ffn}.layer_norm.weight", "layers.{i}.ffn_norm.weight"))
        rules.append(Rule(f"{s}.final_layer_norm.weight", "final_norm.weight"))
        if self.share is None:
            rules.append(Rule("shared.weight", "embed.weight"))
        rules.append(Rule(f"{s}.embed_tokens.weight", "embed.weight"))
        if self.lm_head is not None:
            rules.append(Rule("lm_head.weight", "embed.weight" if self.lm_head.tied else "lm_head.weight"))
        if self.cross:  # older checkpoints carry an unused bias table in the first cross-attention
            rules.append(Rule(f"{s}.block.0.layer.1.EncDecAttention.relative_attention_bias.weight", None))
        return tuple(rules)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.t5.module import T5Module

        context = sequence_of(inputs["cross"], self.cross.input, "cross") if self.cross else None
        shared = ctx.modules[self.share].embed if self.share else None
        return T5Module(self, self._vocab(ctx), context, shared)
