"""Transformer encoder over tokens, image patches or detector regions (BERT, ViT, CLIP towers, ViLBERT streams)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.common import PoolConfig, StackConfig, pooled_width, require
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveInt, Ref, StrictModel
from mmspec.spec.layout import Rule
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo


class TokensEmbed(StrictModel):
    """word + learned position (+ segment) embeddings, then LayerNorm (BERT) or not (CLIP text)."""

    type: Literal["tokens"]
    positions: PositiveInt = 512
    """Size of the learned position table; must cover the modality's max_length."""
    segments: Annotated[int, Field(ge=0)] = 0
    """Segment (token-type) table size; BERT has 2 even when no segment ids are fed."""
    norm: bool = True
    padding_idx: Annotated[int, Field(ge=0)] | None = None
    """RoBERTa's positions: tokens other than this id count from padding_idx + 1, padding tokens sit at
    position padding_idx. null: positions 0..S-1."""


class PatchesEmbed(StrictModel):
    """Non-overlapping conv patches + class token + learned positions (+ pre-LayerNorm, CLIP)."""

    type: Literal["patches"]
    patch_size: PositiveInt = 16
    class_token: bool = True
    bias: bool = True
    norm: bool = False


class RegionsEmbed(StrictModel):
    """Linear(region features) + Linear(box geometry), LayerNorm (ViLBERT visual stream)."""

    type: Literal["regions"]


Embed = Annotated[TokensEmbed | PatchesEmbed | RegionsEmbed, Field(discriminator="type")]
_MODALITY_FIELD = {"tokens": "ids", "patches": "pixels", "regions": "features"}


def _layer(block: str, q: str, k: str, v: str, out: str, norm1: str, fc1: str, fc2: str, norm2: str) -> tuple:
    """Rules for one family's layer `block.{i}`: its names for attention, the two norms and the MLP."""
    names = {
        q: "attn.q",
        k: "attn.k",
        v: "attn.v",
        out: "attn.out",
        norm1: "attn_res.norm",
        fc1: "ffn.fc1",
        fc2: "ffn.fc2",
        norm2: "ffn_res.norm",
    }
    return tuple(Rule(f"{block}.{{i}}.{theirs}.{{p}}", f"layers.{{i}}.{ours}.{{p}}") for theirs, ours in names.items())


_HF_BERT = (  # transformers BertModel, RobertaModel, Data2VecTextModel (post-norm)
    Rule("embeddings.word_embeddings.weight", "embed.word.weight"),
    Rule("embeddings.position_embeddings.weight", "embed.position.weight"),
    Rule("embeddings.token_type_embeddings.weight", "embed.segment.weight"),
    Rule("embeddings.LayerNorm.{p}", "embed.norm.{p}"),
    Rule("embeddings.position_ids", None),
    Rule("embeddings.token_type_ids", None),
    *_layer(
        "encoder.layer",
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "attention.output.LayerNorm",
        "intermediate.dense",
        "output.dense",
        "output.LayerNorm",
    ),
    Rule("pooler.dense.{p}", "pool.dense.{p}"),
)
_HF_VIT = (  # transformers ViTModel (pre-norm, final LayerNorm)
    Rule("embeddings.cls_token", "embed.cls", squeeze=True),
    Rule("embeddings.position_embeddings", "embed.position", squeeze=True),
    Rule("embeddings.patch_embeddings.projection.{p}", "embed.proj.{p}"),
    *_layer(
        "encoder.layer",
        "attention.attention.query",
        "attention.attention.key",
        "attention.attention.value",
        "attention.output.dense",
        "layernorm_before",
        "intermediate.dense",
        "output.dense",
        "layernorm_after",
    ),
    Rule("layernorm.{p}", "final_norm.{p}"),
    Rule("pooler.dense.{p}", "pool.dense.{p}"),
)
_HF_CLIP = (  # transformers CLIPTextTransformer and CLIPVisionTransformer
    Rule("embeddings.token_embedding.weight", "embed.word.weight"),
    Rule("embeddings.class_embedding", "embed.cls"),
    Rule("embeddings.patch_embedding.{p}", "embed.proj.{p}"),
    Rule("embeddings.position_embedding.weight", "embed.position.weight"),  # text: an nn.Embedding
    Rule("embeddings.position_embedding.weight", "embed.position"),  # vision: a parameter
    Rule("embeddings.position_ids", None),
    Rule("pre_layrnorm.{p}", "embed.norm.{p}"),
    *_layer(
        "encoder.layers",
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.out_proj",
        "layer_norm1",
        "mlp.fc1",
        "mlp.fc2",
        "layer_norm2",
    ),
    Rule("final_layer_norm.{p}", "final_norm.{p}"),
    Rule("post_layernorm.{p}", "pool.norm.{p}"),
)
_HF_GPT2 = (  # transformers GPT2Model: Conv1D weights are stored [in, out]; c_attn holds q, k and v
    Rule("wte.weight", "embed.word.weight"),
    Rule("wpe.weight", "embed.position.weight"),
    Rule("h.{i}.ln_1.{p}", "layers.{i}.attn_res.norm.{p}"),
    Rule("h.{i}.attn.c_attn.weight", tuple(f"layers.{{i}}.attn.{x}.weight" for x in "qkv"), transpose=True),
    Rule("h.{i}.attn.c_attn.bias", tuple(f"layers.{{i}}.attn.{x}.bias" for x in "qkv")),
    Rule("h.{i}.attn.c_proj.weight", "layers.{i}.attn.out.weight", transpose=True),
    Rule("h.{i}.attn.c_proj.bias", "layers.{i}.attn.out.bias"),
    Rule("h.{i}.attn.bias", None),
    Rule("h.{i}.attn.masked_bias", None),
    Rule("h.{i}.ln_2.{p}", "layers.{i}.ffn_res.norm.{p}"),
    Rule("h.{i}.mlp.c_fc.weight", "layers.{i}.ffn.fc1.weight", transpose=True),
    Rule("h.{i}.mlp.c_fc.bias", "layers.{i}.ffn.fc1.bias"),
    Rule("h.{i}.mlp.c_proj.weight", "layers.{i}.ffn.fc2.weight", transpose=True),
    Rule("h.{i}.mlp.c_proj.bias", "layers.{i}.ffn.fc2.bias"),
    Rule("ln_f.{p}", "final_norm.{p}"),
)


_STACK = {"width": 8, "layers": 2, "heads": 2, "ffn": 16}
_TEXT = {"type": "tokens", "vocab_size": 40, "length": "seq", "max_length": 12}
TRANSFORMER_EXAMPLES = (
    Example(
        {"text": {**_TEXT, "mask": True, "segments": 2}},  # BERT: post-norm, segments, tanh pooler
        {
            "input": "text",
            "embed": {"type": "tokens", "positions": 12, "segments": 2},
            **_STACK,
            "pool": {"type": "cls", "dense": 8, "activation": "tanh"},
        },
        name="bert",
    ),
    Example(
        {"text": {**_TEXT, "mask": True}},  # RoBERTa positions
        {"input": "text", "embed": {"type": "tokens", "positions": 14, "padding_idx": 1}, **_STACK},
        name="roberta",
    ),
    Example(
        {"text": _TEXT},  # GPT-2 / CLIP text: causal, pre-norm, final norm, eos pooling
        {
            "input": "text",
            "embed": {"type": "tokens", "positions": 12, "norm": False},
            **_STACK,
            "norm": "pre",
            "causal": True,
            "final_norm": True,
            "activation": "gelu_tanh",
            "pool": {"type": "eos"},
        },
        name="gpt2",
    ),
    Example(
        {"image": {"type": "image", "channels": 3, "height": 8, "width": 8}},  # ViT
        {
            "input": "image",
            "embed": {"type": "patches", "patch_size": 4},
            **_STACK,
            "norm": "pre",
            "final_norm": True,
            "pool": {"type": "cls", "dense": 8, "activation": "tanh"},
        },
        name="vit",
    ),
    Example(
        {"image": {"type": "image", "channels": 3, "height": 8, "width": 8}},  # CLIP vision
        {
            "input": "image",
            "embed": {"type": "patches", "patch_size": 4, "bias": False, "norm": True},
            **_STACK,
            "norm": "pre",
            "activation": "quick_gelu",
            "pool": {"type": "cls", "norm": True},
        },
        name="clip_vision",
    ),
    Example(
        {"regions": {"type": "regions", "dim": 5, "count": "regions", "max_count": 6, "boxes": 5, "mask": True}},
        {"input": "regions", "embed": {"type": "regions"}, **_STACK, "pool": {"type": "mean"}},
        name="regions",
    ),
)


@register(
    "encoders",
    examples=TRANSFORMER_EXAMPLES,
    notes="layers may be 0 (embeddings only, e.g. streams that a fusion continues)",
)
class TransformerEncoder(StackConfig, ComponentConfig):
    """Transformer encoder: an embedding, `layers` blocks, optional final LayerNorm and pooling.

    Emits `sequence` [batch, S, width], `mask` when the input has one, `pooled` [batch, D] when `pool` is set.
    """

    type: Literal["transformer"]
    input: Ref
    embed: Embed
    causal: bool = False
    """Causal self-attention (CLIP text, GPT)."""
    final_norm: bool = False
    """LayerNorm on the whole output sequence (CLIP text)."""
    pool: PoolConfig | None = None

    weight_layouts = {"bert": _HF_BERT, "vit": _HF_VIT, "clip": _HF_CLIP, "gpt2": _HF_GPT2}

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        bundle = inputs["input"]
        self.check_heads()
        src = require(
            bundle.get(_MODALITY_FIELD[self.embed.type]),
            _MODALITY_FIELD[self.embed.type],
            4 if self.embed.type == "patches" else (2 if self.embed.type == "tokens" else 3),
            f"{self.embed.type} embedding's",
        )
        batch = src.shape[0]
        if isinstance(self.embed, TokensEmbed):
            modality = ctx.spec.modalities[self.input.split(".")[0]]
            longest = modality.max_length if isinstance(src.shape[1], str) else src.shape[1]
            offset = 0 if self.embed.padding_idx is None else self.embed.padding_idx + 1
            if longest + offset > self.embed.positions:
                shifted = f" plus the offset padding_idx + 1 = {offset}" if offset else ""
                raise CheckError(
                    ("embed", "positions"),
                    f"embed.positions {self.embed.positions} is shorter than the input's length "
                    f"{longest} (modality {self.input!r} max_length){shifted}; raise positions or lower max_length",
                )
            if "segments" in bundle and modality.segments != self.embed.segments:
                raise CheckError(
                    ("embed", "segments"),
                    f"embed.segments {self.embed.segments} differs from modality {self.input!r} "
                    f"segments {modality.segments}; make them equal",
                )
            length = src.shape[1]
        elif isinstance(self.embed, PatchesEmbed):
            _, _, h, w = src.shape
            p = self.embed.patch_size
            if h % p or w % p:
                raise CheckError(
                    ("embed", "patch_size"),
                    f"embed.patch_size {p} does not divide the image size {h}x{w} of {self.input!r}",
                )
            length = (h // p) * (w // p) + int(self.embed.class_token)
        else:
            length = src.shape[1]
        if self.pool and self.pool.type == "eos" and not isinstance(self.embed, TokensEmbed):
            raise CheckError(
                ("pool", "type"),
                f"pool.type 'eos' needs token ids; use 'cls' or 'mean' for embed type {self.embed.type!r}",
            )
        if self.pool and self.pool.eos_id is not None and self.pool.type != "eos":
            raise CheckError(("pool", "eos_id"), f"pool.eos_id applies to pool.type 'eos', not {self.pool.type!r}")
        out: Bundle = {"sequence": TensorInfo((batch, length, self.width))}
        if "mask" in bundle:
            out["mask"] = bundle["mask"]
        if self.pool:
            out["pooled"] = TensorInfo((batch, pooled_width(self.pool, self.width)))
        return out

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Parameters `build` will allocate, by formula (budgets before allocation; mmspec.spec.budget)."""
        from mmspec.components import params as P

        m, w, e = ctx.spec.modalities[self.input.split(".")[0]], self.width, self.embed
        if isinstance(e, TokensEmbed):
            embed = (m.vocab_size + e.positions + e.segments) * w + (P.layer_norm(w) if e.norm else 0)
        elif isinstance(e, PatchesEmbed):
            grid = (m.height // e.patch_size) * (m.width // e.patch_size) + int(e.class_token)
            embed = (m.channels * e.patch_size**2 + int(e.bias) + int(e.class_token) + grid) * w
            embed += P.layer_norm(w) if e.norm else 0
        else:
            embed = P.linear(m.dim, w) + (P.linear(m.boxes, w) if m.boxes else 0) + P.layer_norm(w)
        final = P.layer_norm(w) if self.final_norm else 0
        return embed + P.stack(self) + final + P.pool(self.pool, w)

    def internal_shapes(self, inputs: dict[str, Bundle], ctx) -> list[tuple]:
        """The largest intermediates of one layer: attention scores and the feed-forward hidden layer."""
        batch, length, _ = self.infer(inputs, ctx)["sequence"].shape
        return [(batch, self.heads, length, length), (batch, length, self.ffn)] if self.layers else []

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.transformer.module import TransformerEncoderModule

        return TransformerEncoderModule(self, inputs["input"], ctx.spec.modalities[self.input.split(".")[0]])
