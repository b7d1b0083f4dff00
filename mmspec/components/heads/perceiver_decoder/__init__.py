"""Perceiver IO decoder (Jaegle et al. 2022): a learned output-query array cross-attends to the latents, so the
output size is independent of the latent size; then a projection, or the tied embedding decoder of the language
perceiver, or nothing. transformers' PerceiverBasicDecoder / PerceiverClassificationDecoder
(+ PerceiverEmbeddingDecoder)."""

from __future__ import annotations

from typing import Literal

from mmspec.components.common import Activation, sequence_of
from mmspec.components.encoders.perceiver import QK, attention_channels, layer_params, layer_rules
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, Name, PositiveFloat, PositiveInt, Probability, Ref
from mmspec.spec.layout import Rule
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_DECODER = (
    Rule("output_position_encodings.position_embeddings", "queries"),
    *layer_rules("decoding_cross_attention", "layer"),
    Rule("final_layer.{p}", "project.{p}"),
)
HF_LAYOUTS = {
    "perceiver_decoder": _DECODER,  # transformers PerceiverBasicDecoder (perceiver.decoder)
    "perceiver_classification_decoder": tuple(  # PerceiverClassificationDecoder (perceiver.decoder)
        Rule(f"decoder.{r.src}", r.dst) for r in _DECODER
    ),
    "perceiver_mlm_decoder": (  # PerceiverForMaskedLM: perceiver.decoder and the embedding decoder's bias
        *(Rule(f"perceiver.decoder.{r.src}", r.dst) for r in _DECODER),
        Rule("embedding_decoder.bias", "bias"),
    ),
}

_ENC = {"type": "perceiver", "latents": 4, "width": 8, "layers": 1, "heads": 2, "cross_heads": 1}
_TEXT = {"text": {"type": "tokens", "vocab_size": 20, "length": 6, "max_length": 6}}
PERCEIVER_DECODER_EXAMPLES = (
    Example(  # the language perceiver's decoder: one query per position, logits over the tied embeddings
        _TEXT,
        {"input": "enc.sequence", "queries": 6, "width": 6, "heads": 2, "qk_channels": 4, "tie_to": "enc"},
        {"encoders": {"enc": {**_ENC, "input": "text", "embed": {"type": "tokens", "width": 6, "positions": 6}}}},
        name="tied",
    ),
    Example(  # classification: one query with the query residual, projected to the classes
        {"feats": {"type": "sequence", "dim": 6, "length": "seq", "max_length": 10}},
        {"input": "enc", "queries": 1, "width": 8, "query_residual": True, "project": 3, "single": True},
        {"encoders": {"enc": {**_ENC, "input": "feats"}}},
        name="classification",
    ),
    Example(  # output queries only: the decoded array itself
        {"feats": {"type": "sequence", "dim": 6, "length": "seq", "max_length": 10}},
        {"input": "enc", "queries": 5, "width": 4, "widening": 2},
        {"encoders": {"enc": {**_ENC, "input": "feats"}}},
        name="array",
    ),
)


@register("heads", examples=PERCEIVER_DECODER_EXAMPLES)
class PerceiverDecoder(ComponentConfig):
    """`queries` learned output queries [queries, width] cross-attend to a latent array [batch, N, D] (one
    blocks.perceiver.PerceiverLayer); then `project` (Linear(width, project)) or `tie_to` (logits = y E^T + b with
    the word table E of a `perceiver` encoder with `embed: tokens`), else nothing.

    Emits `logits` [batch, queries, C] (`single`: [batch, C] from the one query) with `project` / `tie_to`,
    otherwise `sequence` [batch, queries, width]."""

    type: Literal["perceiver_decoder"]
    input: Ref
    queries: PositiveInt
    """Number of output queries (transformers' output_index_dims)."""
    width: PositiveInt
    """The queries' width (num_channels)."""
    heads: PositiveInt = 1
    qk_channels: PositiveInt | None = None
    """Channels of the cross-attention's queries and keys; null: the query width."""
    v_channels: PositiveInt | None = None
    """Channels of the cross-attention's values; null: the queries' channels."""
    cross_qk: QK = "keys"
    """Query/key width without qk_channels: the latents' width (`keys`) or the queries' (`queries`)."""
    widening: PositiveInt = 1
    """Width multiplier of the MLP after the cross-attention."""
    query_residual: bool = False
    """true: the queries are added back after the cross-attention (a residual connection)."""
    activation: Activation = "gelu"
    """Activation of the MLP."""
    eps: PositiveFloat = 1e-5
    attention_dropout: Probability = 0.1
    project: PositiveInt | None = None
    """Width of a final Linear layer to `logits`; null: none."""
    tie_to: Name | None = None
    """A `perceiver` encoder with `embed: tokens` whose word table decodes the output (logits = y E^T + b)."""
    single: bool = False
    """Classification: `logits` [batch, C] from the only query (queries must be 1)."""

    weight_layouts = HF_LAYOUTS

    def _latents(self, inputs: dict[str, Bundle]) -> TensorInfo:
        _, latents = sequence_of(inputs["input"], self.input)
        return latents

    def _classes(self, ctx) -> int | None:
        """The output width C: `project`, or the tied encoder's vocabulary size; None for neither."""
        if self.project is not None and self.tie_to is not None:
            raise CheckError("tie_to", "set one of project and tie_to (tie_to decodes with the embeddings)")
        if self.tie_to is None:
            return self.project
        enc = ctx.spec.encoders.get(self.tie_to)
        if enc is None or enc.type != "perceiver" or getattr(enc.embed, "type", None) != "tokens":
            found = [n for n, e in ctx.spec.encoders.items()
                     if e.type == "perceiver" and getattr(e.embed, "type", None) == "tokens"]
            raise CheckError("tie_to", f"tie_to {self.tie_to!r} must name a perceiver encoder with embed: tokens; "
                                       f"candidates: {', '.join(found) or 'none'}")
        if enc.embed.width != self.width:
            raise CheckError("width", f"the tied embeddings of {self.tie_to!r} are {enc.embed.width} wide but the "
                                      f"queries are {self.width}; make width {enc.embed.width}")
        return ctx.spec.modalities[enc.input.split(".")[0]].vocab_size

    def channels(self, kv_dim: int) -> tuple[int, int]:
        return attention_channels(self.qk_channels, self.v_channels, self.width, kv_dim, self.heads, self.cross_qk,
                                  ())

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        latents = self._latents(inputs)
        self.channels(latents.width)
        classes = self._classes(ctx)
        batch = latents.shape[0]
        if self.single:
            if self.queries != 1 or classes is None:
                raise CheckError("single", f"single reads the one query's logits: set queries: 1 (now "
                                           f"{self.queries}) and project")
            return {"logits": TensorInfo((batch, classes))}
        if classes is None:
            return {"sequence": TensorInfo((batch, self.queries, self.width))}
        return {"logits": TensorInfo((batch, self.queries, classes))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Queries, the cross-attention layer, and the projection or the tied decoder's bias."""
        from mmspec.components import params as P

        kv = self._latents(inputs).width
        qk, v = self.channels(kv)
        out = P.linear(self.width, self.project) if self.project else 0
        if self.tie_to:
            out = self._classes(ctx)
        return self.queries * self.width + layer_params(self.width, kv, qk, v, self.widening, True) + out

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.perceiver_decoder.module import PerceiverDecoderModule

        latents = self._latents(inputs)
        field = sequence_of(inputs["input"], self.input)[0]
        tied = ctx.modules[self.tie_to].embed.word.weight if self.tie_to else None
        return PerceiverDecoderModule(self, latents.width, field, tied, self._classes(ctx))
