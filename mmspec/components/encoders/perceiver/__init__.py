"""Perceiver encoder (Jaegle et al. 2021; Perceiver IO, 2022): a learned latent array cross-attends to the input
array, then a latent self-attention stack runs `blocks` times with shared weights. transformers' PerceiverModel
without pre/post-processors; with `embed: tokens`, its text preprocessor in front (the language perceiver)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.common import Activation, require_float, sequence_of
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, PositiveInt, Probability, Ref, StrictModel
from mmspec.spec.layout import Rule
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

QK = Literal["keys", "queries"]
"""Default query/key width of a cross-attention without `qk_channels`: the keys' input width (`keys`) or the
queries' (`queries`); transformers' cross_attention_shape_for_attention "kv" / "q"."""


def attention_channels(
    qk: int | None, v: int | None, q_dim: int, kv_dim: int, heads: int, cross: QK | None, where: tuple
) -> tuple[int, int]:
    """(query/key, value) widths of one Perceiver attention: `qk` or the default of its kind (a cross-attention's
    by `cross`, a self-attention's q_dim), `v` or the query/key width; both divisible by `heads` (CheckError at
    `where` + the field otherwise)."""
    qk = qk or (q_dim if cross in (None, "queries") else kv_dim)
    v = v or qk
    for name, size in (("qk_channels", qk), ("v_channels", v)):
        if size % heads:
            raise CheckError((*where, name), f"{name} {size} is not divisible by the {heads} heads; choose a "
                                             f"multiple of {heads}")
    return qk, v


def layer_params(q_dim: int, kv_dim: int, qk: int, v: int, widening: int, cross: bool) -> int:
    """Parameters of one blocks.perceiver.PerceiverLayer."""
    from mmspec.components import params as P

    attention = P.linear(q_dim, qk) + P.linear(kv_dim, qk) + P.linear(kv_dim, v) + P.linear(v, q_dim)
    norms = P.layer_norm(q_dim) * 2 + (P.layer_norm(kv_dim) if cross else 0)
    return attention + norms + P.feed_forward(q_dim, widening * q_dim)


def layer_rules(theirs: str, ours: str) -> tuple[Rule, ...]:
    """transformers PerceiverLayer names under `theirs` -> blocks.perceiver.PerceiverLayer under `ours`."""
    names = {
        "attention.self.layernorm1": "norm",
        "attention.self.layernorm2": "kv_norm",
        "attention.self.query": "attn.q",
        "attention.self.key": "attn.k",
        "attention.self.value": "attn.v",
        "attention.output.dense": "attn.out",
        "layernorm": "ffn_res.norm",
        "mlp.dense1": "ffn.fc1",
        "mlp.dense2": "ffn.fc2",
    }
    return tuple(Rule(f"{theirs}.{a}.{{p}}", f"{ours}.{b}.{{p}}") for a, b in names.items())


HF_PERCEIVER = (  # transformers PerceiverModel (its text preprocessor when there is one)
    Rule("embeddings.latents", "latents"),
    Rule("input_preprocessor.embeddings.weight", "embed.word.weight"),
    Rule("input_preprocessor.position_embeddings.weight", "embed.position.weight"),
    Rule("input_preprocessor.convnet_1x1.{p}", "embed.conv.{p}"),
    Rule("input_preprocessor.position_embeddings.position_embeddings", "embed.position"),
    Rule("input_preprocessor.positions_projection.{p}", "embed.project.{p}"),
    *layer_rules("encoder.cross_attention", "cross"),
    *layer_rules("encoder.self_attends.{i}", "layers.{i}"),
)


class TokensInput(StrictModel):
    """Token ids -> word + learned position embeddings of width `width` (transformers' PerceiverTextPreprocessor)."""

    type: Literal["tokens"]
    width: PositiveInt = 768
    """The embedding width (transformers' d_model), which the latents' cross-attention reads."""
    positions: PositiveInt = 2048
    """Rows of the position table; must cover the modality's max_length."""


class PixelsInput(StrictModel):
    """Pixels [batch, C, H, W] -> a 1x1 conv to `channels` per pixel, concatenated with a learned position table
    [H*W, positions] (optionally projected to `project` channels): M = H*W inputs of channels + (project or
    positions) features (transformers' PerceiverImagePreprocessor with prep_type conv1x1, trainable positions,
    concat)."""

    type: Literal["pixels"]
    channels: PositiveInt = 256
    positions: PositiveInt = 256
    """Width of the learned position table."""
    project: PositiveInt | None = 256
    """A Linear on the positions to this width (project_pos_dim); null: none."""

    def width(self) -> int:
        return self.channels + (self.project or self.positions)


_SEQ = {"feats": {"type": "sequence", "dim": 6, "length": "seq", "max_length": 10}}
_LATENT = {"latents": 4, "width": 8, "layers": 2, "heads": 2, "cross_heads": 1}
PERCEIVER_EXAMPLES = (
    Example(_SEQ, {"input": "feats", **_LATENT, "pool": "mean"}, name="sequence"),
    Example(  # two passes through one shared self-attention stack, explicit channels, no query residual
        _SEQ,
        {"input": "feats", **_LATENT, "blocks": 2, "qk_channels": 4, "v_channels": 8, "widening": 2,
         "cross_widening": 2, "query_residual": False},
        name="shared_blocks",
    ),
    Example(  # the language perceiver: token + position embeddings, padding masked out of the cross-attention
        {"text": {"type": "tokens", "vocab_size": 20, "length": "seq", "max_length": 12, "mask": True}},
        {"input": "text", "embed": {"type": "tokens", "width": 6, "positions": 12}, **_LATENT, "cross_qk": "queries"},
        name="tokens",
    ),
    Example(  # image classification (learned): 1x1 conv features + projected learned positions per pixel
        {"image": {"type": "image", "channels": 3, "height": 4, "width": 4}},
        {"input": "image", "embed": {"type": "pixels", "channels": 4, "positions": 6, "project": 4}, **_LATENT},
        name="pixels",
    ),
)


@register("encoders", examples=PERCEIVER_EXAMPLES)
class PerceiverEncoder(ComponentConfig):
    """Learned latents [latents, width] cross-attend (once) to the input array [batch, M, C]; then `layers`
    latent self-attention layers, applied `blocks` times with the same weights. Every layer is pre-norm:
    y = x + Attention(LN(x)[, LN(input)]), out = y + MLP(LN(y)).

    Emits `sequence` [batch, latents, width] and, with `pool: mean`, `pooled` [batch, width]. The input is a
    sequence bundle (its `mask` masks the cross-attention's keys) or, with `embed: tokens`, a tokens modality."""

    type: Literal["perceiver"]
    input: Ref
    embed: Annotated[TokensInput | PixelsInput, Field(discriminator="type")] | None = None
    """How the input becomes the byte array: `tokens` (an id embedding plus learned positions) or `pixels`; null:
    the input is already a sequence [batch, M, C]."""
    latents: PositiveInt = 256
    """N, the number of latent vectors (transformers' num_latents)."""
    width: PositiveInt = 1280
    """D, the latents' width (d_latents)."""
    layers: PositiveInt = 26
    """Self-attention layers in one block (num_self_attends_per_block)."""
    blocks: PositiveInt = 1
    """Passes through the block; the passes share its weights (num_blocks)."""
    heads: PositiveInt = 8
    """Heads of the self-attention layers."""
    cross_heads: PositiveInt = 8
    """Heads of the cross-attention."""
    qk_channels: PositiveInt | None = None
    """Query/key width of every attention; null: the cross-attention's by `cross_qk`, the self-attentions' `width`."""
    v_channels: PositiveInt | None = None
    """Value width; null: the query/key width. A self-attention's must equal `width`."""
    cross_qk: QK = "keys"
    """Channels of the cross-attention's queries and keys: those of the `keys` (input) or of the `latents`."""
    widening: PositiveInt = 1
    """Self-attention layers' MLP: width -> widening * width -> width."""
    cross_widening: PositiveInt = 1
    """Width multiplier of the MLP after the cross-attention (its hidden width is widening * width)."""
    query_residual: bool = True
    """The residual around the cross-attention (the latents plus what they read)."""
    activation: Activation = "gelu"
    """Activation of the MLPs."""
    eps: PositiveFloat = 1e-5
    attention_dropout: Probability = 0.1
    pool: Literal["mean"] | None = None
    """`mean`: also emit `pooled`, the latents' mean (the Perceiver's classification read-out)."""

    weight_layouts = {"perceiver": HF_PERCEIVER}

    def _source(self, inputs: dict[str, Bundle], ctx) -> tuple[TensorInfo, int]:
        """The input array's ids or sequence, and its channel count C (what the cross-attention reads)."""
        bundle = inputs["input"]
        if self.embed is None:
            _, src = sequence_of(bundle, self.input)
            return require_float(src, self.input), src.width
        if isinstance(self.embed, PixelsInput):
            pixels = bundle.get("pixels")
            if pixels is None or pixels.rank != 4:
                raise CheckError("input", f"embed: pixels needs an image modality's `pixels` [batch, C, H, W]; "
                                          f"{self.input!r} has {sorted(bundle)}")
            batch, _, h, w = pixels.shape
            return TensorInfo((batch, h * w, self.embed.width())), self.embed.width()
        ids = bundle.get("ids")
        if ids is None or ids.rank != 2:
            raise CheckError("input", f"embed: tokens needs a tokens modality's `ids` [batch, S]; {self.input!r} has "
                                      f"{sorted(bundle)}")
        modality = ctx.spec.modalities[self.input.split(".")[0]]
        longest = modality.max_length if isinstance(ids.shape[1], str) else ids.shape[1]
        if longest > self.embed.positions:
            raise CheckError(("embed", "positions"), f"embed.positions {self.embed.positions} is shorter than the "
                                                     f"input's length {longest}; raise positions or lower max_length")
        return ids, self.embed.width

    def channels(self, kv_dim: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """((qk, v) of the cross-attention, (qk, v) of the self-attentions)."""
        cross = attention_channels(self.qk_channels, self.v_channels, self.width, kv_dim, self.cross_heads,
                                   self.cross_qk, ())
        latent = attention_channels(self.qk_channels, self.v_channels, self.width, self.width, self.heads, None, ())
        if latent[1] != self.width:
            raise CheckError("v_channels", f"the self-attention values ({latent[1]}) are added to the latents, so "
                                           f"they need the latent width {self.width}; set v_channels to {self.width} "
                                           f"or null")
        return cross, latent

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        src, kv_dim = self._source(inputs, ctx)
        self.channels(kv_dim)
        batch = src.shape[0]
        out: Bundle = {"sequence": TensorInfo((batch, self.latents, self.width))}
        if self.pool:
            out["pooled"] = TensorInfo((batch, self.width))
        return out

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Latents, the optional embeddings, the cross-attention layer and one block of self-attention layers."""
        _, kv_dim = self._source(inputs, ctx)
        (cqk, cv), (sqk, sv) = self.channels(kv_dim)
        embed = 0
        if isinstance(self.embed, PixelsInput):
            e, m = self.embed, ctx.spec.modalities[self.input.split(".")[0]]
            embed = m.channels * e.channels + e.channels + m.height * m.width * e.positions
            embed += e.positions * e.project + e.project if e.project else 0
        elif self.embed:
            vocab = ctx.spec.modalities[self.input.split(".")[0]].vocab_size
            embed = (vocab + self.embed.positions) * self.embed.width
        cross = layer_params(self.width, kv_dim, cqk, cv, self.cross_widening, True)
        latent = layer_params(self.width, self.width, sqk, sv, self.widening, False)
        return self.latents * self.width + embed + cross + self.layers * latent

    def internal_shapes(self, inputs: dict[str, Bundle], ctx) -> list[tuple]:
        """The attention scores of the cross- and self-attentions and the widest MLP hidden layer."""
        src, _ = self._source(inputs, ctx)
        batch, length = src.shape[0], src.shape[1]
        widest = max(self.widening, self.cross_widening) * self.width
        return [(batch, self.cross_heads, self.latents, length), (batch, self.heads, self.latents, self.latents),
                (batch, self.latents, widest)]

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.perceiver.module import PerceiverModule

        _, kv_dim = self._source(inputs, ctx)
        modality = ctx.spec.modalities.get(self.input.split(".")[0])
        field = None if self.embed else sequence_of(inputs["input"], self.input)[0]
        return PerceiverModule(self, kv_dim, modality, field)
