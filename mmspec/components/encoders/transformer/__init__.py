"""Transformer encoder over tokens, image patches, detector regions or another node's sequence (BERT, ViT, CLIP
towers, ViLBERT streams, MAE encoder/decoder, VisualBERT joint stream), with optional cross-attention."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from mmspec.components.common import (
    Activation,
    PoolConfig,
    StackConfig,
    axis_max,
    layer_shapes,
    pooled_width,
    require,
    sequence_of,
)
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, KVLayout, Name, PositiveFloat, PositiveInt, Ref, StrictModel
from mmspec.spec.layout import Rule
from mmspec.spec.suggest import suggestion_text
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo, dim_product, dim_sum


class TokensEmbed(StrictModel):
    """word (+ segment) + position embeddings, then LayerNorm (BERT) or not (CLIP text, GPT, the Transformer)."""

    type: Literal["tokens"]
    positions: PositiveInt = 512
    """Size of the position table (learned or fixed); must cover the modality's max_length."""
    position_kind: Literal["learned", "sinusoidal", "rotary"] = "learned"
    """`learned`: a trained table (BERT, GPT); `sinusoidal`: the Transformer's fixed sin/cos table, no parameters;
    `rotary`: nothing added here, the (parallel) layers rotate queries and keys (RoPE, PaLM)."""
    scale: bool = False
    """Multiply the word embeddings by sqrt(width) before the positions are added (the Transformer)."""
    share: Name | None = None
    """Use the word table of this other `transformer` encoder with token embeddings (same vocabulary size and
    width) instead of an own one: the Transformer's source/target vocabulary. It must be computed before this
    encoder (this one's `cross` reads it, or it feeds this one's input)."""
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
    mask_token: bool = False
    """A learned [MASK] patch vector (FLAVA's image encoder, for masked image modelling while training)."""
    positions: bool = True
    """Learned absolute positions; false: none (BEiT, data2vec vision, which use `relative_position`)."""


class RegionsEmbed(StrictModel):
    """Linear(region features) + Linear(box geometry) [+ position] [+ segment], LayerNorm (ViLBERT visual stream;
    VisualBERT's visual embeddings: positions 512 with position_ids zero, segments 2, norm false)."""

    type: Literal["regions"]
    norm: bool = True
    positions: PositiveInt | None = None
    """Size of a learned position table added to the regions; null: none."""
    position_ids: Literal["index", "zero"] = "index"
    """`index`: region r takes row r (positions must cover the modality's max_count); `zero`: every region takes
    row 0 (VisualBERT without image-text alignment)."""
    segments: Annotated[int, Field(ge=0)] = 0
    """Size of a segment (token-type) table; every region adds its row `segment`."""
    segment: Annotated[int, Field(ge=0)] = 1
    """The segment row every region takes (VisualBERT: visual token type 1); below `segments`."""
    activation: Activation = "identity"
    """Applied to the projected regions, before positions, segments and the norm (AoANet's ReLU)."""


class SequenceEmbed(StrictModel):
    """Another node's sequence [batch, S, D] (its `sequence`, or its one rank-3 float tensor; its `mask` comes
    along): Linear(D -> width) when D differs from width, optional mask tokens, learned positions, LayerNorm."""

    type: Literal["sequence"]
    positions: PositiveInt | None = None
    """Size of a learned position table added to the sequence (must cover its length); null: none."""
    norm: bool = False
    """LayerNorm (then dropout) on the embedded sequence (VisualBERT's shared embedding LayerNorm)."""
    mask_token: bool = False
    """MAE decoder: the input carries `restore` (a `drop` encoder's output); a learned mask token fills every
    dropped position and the original order is restored, so S = class tokens + restore's length."""
    class_token: bool = False
    """Prepend a learned token (FLAVA's [CLS_M]); a mask gains a leading 1, S grows by one."""
    field: Name | None = None
    """Read this field of the input bundle instead of its sequence (its `mask` still comes along): a tower's
    `hidden` states."""
    project: bool = False
    """The Linear(D -> width) even when D equals width (FLAVA's projections into the multimodal encoder)."""

    def source(self, bundle: Bundle, ref: str) -> tuple[str, TensorInfo]:
        """(field, info) of the sequence this embedding reads from `bundle` (the node `ref`)."""
        if self.field is None:
            return sequence_of(bundle, ref)
        info = bundle.get(self.field)
        if info is None or info.rank != 3 or not isinstance(info.width, int):
            raise CheckError(("embed", "field"), f"embed.field {self.field!r} must name a sequence [batch, S, D] of "
                                                 f"{ref!r}, which emits {sorted(bundle)}")
        return self.field, info


Embed = Annotated[TokensEmbed | PatchesEmbed | RegionsEmbed | SequenceEmbed, Field(discriminator="type")]
_MODALITY_FIELD = {"tokens": "ids", "patches": "pixels", "regions": "features"}


class DropConfig(StrictModel):
    """MAE token dropping: while training, keep a random `1 - ratio` of the patch tokens of each example."""

    ratio: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.75
    """Fraction of patch tokens dropped while training (the class token is always kept); at eval every token
    is kept, so the export is deterministic."""


class CrossConfig(StrictModel):
    """Cross-attention to another node's sequence in every `every`-th layer (decoders, Perceiver latents, Flamingo)."""

    input: Ref
    """The context: a node with a `sequence` (or one rank-3 float tensor); its `mask` masks the keys."""
    every: PositiveInt = 1
    """Layers 0, every, 2*every, ... get a cross-attention sublayer."""
    gated: bool = False
    """Flamingo: tanh(g)-gated (g learned, starting at 0) and placed before the layer's self-attention, so the
    stack starts as the one without cross-attention; false: between self-attention and feed-forward."""
    aoa: bool = False
    """Attention on Attention (Huang et al. 2019) in place of the cross-attention's output projection: the heads'
    result v and the query q give g * i with i = W_i [v; q] + b_i, g = sigmoid(W_g [v; q] + b_g)."""


class AdapterConfig(StrictModel):
    """Residual adapters after chosen layers (Rebuffi et al. 2017; muNet's adapter mutation): x + fc2(act(fc1(x)))
    with fc1 width -> hidden and fc2 hidden -> width, fc2 zero-initialised so the stack starts as the one
    without adapters."""

    hidden: PositiveInt
    """The adapter's inner width."""
    layers: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)] | None = None
    """Indices of the layers whose output passes through an adapter; null: every layer."""
    activation: Activation = "relu"
    """Activation between the adapter's two linear maps."""

    def layers_of(self, layers: int) -> list[int]:
        """The adapted layer indices of a stack of `layers` layers."""
        return list(range(layers)) if self.layers is None else sorted(set(self.layers))


class MoEConfig(StrictModel):
    """Sparsely-gated mixture-of-experts feed-forward (Shazeer 2017, Switch, V-MoE/LIMoE) in place of the dense
    one in layers every-1, 2*every-1, ...: a linear router sends each token to its `top_k` experts (each a
    width -> hidden -> width MLP with the stack's activation); the layer's output is the gate-weighted sum."""

    experts: Annotated[int, Field(ge=2)]
    top_k: PositiveInt = 2
    hidden: PositiveInt | None = None
    """Each expert's hidden width; null: the stack's `ffn`."""
    capacity_factor: PositiveFloat | None = None
    """Each expert takes at most ceil(capacity_factor * tokens * top_k / experts) of the batch's choices; the
    rest are dropped (the residual passes those tokens through). null: no limit."""
    every: PositiveInt = 1
    """Layers every-1, 2*every-1, ... are MoE layers (2: every other layer, as Switch, V-MoE, LIMoE)."""
    noise: bool = False
    """Noisy top-k gating while training: logits + N(0, 1) * softplus(W_noise x) (a second router matrix)."""
    bias: bool = False
    """Biases in the experts' two linear layers."""
    renormalize: bool = True
    """Gates = softmax over the k chosen logits (Shazeer); false: the full softmax's probabilities (Switch,
    V-MoE)."""
    priority: Literal["order", "score"] = "order"
    """Which choices fill a full expert first: token order, or descending top-1 gate (Batch Priority Routing)."""

    def expert_params(self, width: int, ffn: int) -> int:
        """Parameters of one expert in a stack of this width and feed-forward size."""
        hidden = self.hidden or ffn
        return 2 * width * hidden + (hidden + width if self.bias else 0)

    last: PositiveInt | None = None
    """Keep only the last `last` of the layers `every` selects (V-MoE/LIMoE: MoE in the last n even layers)."""

    def layers_of(self, layers: int) -> list[int]:
        """The indices of the MoE layers in a stack of `layers`."""
        chosen = [i for i in range(layers) if (i + 1) % self.every == 0]
        return chosen[-self.last:] if self.last else chosen


SparseKind = Literal["dense", "row", "column", "convolutional", "nearby"]


class SparseConfig(StrictModel):
    """Sparse causal self-attention (mmspec.blocks.sparse) over [`prefix` text tokens, `frames` grids of `rows` x
    `columns` image tokens in raster order]: text causal, image tokens see every text token and a row / column /
    convolutional (DALL-E) or 3-D nearby (NÜWA) neighbourhood of the earlier image tokens. Layer i (from 0) takes
    `pattern[i % len(pattern)]`, the last layer `last` when set. Only masks scores: no parameters."""

    prefix: Annotated[int, Field(ge=0)]
    rows: PositiveInt
    columns: PositiveInt
    frames: PositiveInt = 1
    pattern: list[SparseKind] = Field(default_factory=lambda: ["row", "column", "row", "row"], min_length=1)
    """DALL-E: column attention where (i - 1) % 4 == 0 (the paper's (i - 2) mod 4 with layers from 1), else row."""
    last: SparseKind | None = "convolutional"
    kernel: PositiveInt = 11
    """Width of the convolutional window (odd)."""
    extent: Annotated[list[PositiveInt], Field(min_length=3, max_length=3)] = Field(default_factory=lambda: [3, 3, 3])
    """The `nearby` window in (frames, rows, columns), each odd (NÜWA's 3DNA extents)."""

    def kinds(self, layers: int) -> list[str]:
        """The mask kind of each of `layers` layers."""
        kinds = [self.pattern[i % len(self.pattern)] for i in range(layers)]
        if self.last is not None and kinds:
            kinds[-1] = self.last
        return kinds


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
_VIT_LAYER = (
    "attention.attention.query",
    "attention.attention.key",
    "attention.attention.value",
    "attention.output.dense",
    "layernorm_before",
    "intermediate.dense",
    "output.dense",
    "layernorm_after",
)
"""transformers ViTLayer's names (ViT, ViTMAE encoder and decoder)."""
_HF_VIT = (  # transformers ViTModel (pre-norm, final LayerNorm)
    Rule("embeddings.cls_token", "embed.cls", squeeze=True),
    Rule("embeddings.position_embeddings", "embed.position", squeeze=True),
    Rule("embeddings.patch_embeddings.projection.{p}", "embed.proj.{p}"),
    *_layer("encoder.layer", *_VIT_LAYER),
    Rule("layernorm.{p}", "final_norm.{p}"),
    Rule("pooler.dense.{p}", "pool.dense.{p}"),
)
_HF_DATA2VEC_VISION = (  # transformers Data2VecVisionModel / BeitModel: ViT names, layer scale, relative positions
    Rule("embeddings.cls_token", "embed.cls", squeeze=True),
    Rule("embeddings.mask_token", "embed.mask_token", squeeze=True),
    Rule("embeddings.position_embeddings", "embed.position", squeeze=True),
    Rule("embeddings.patch_embeddings.projection.{p}", "embed.proj.{p}"),
    *_layer("encoder.layer", *_VIT_LAYER),
    Rule("encoder.layer.{i}.lambda_1", "layers.{i}.attn_res.scale"),
    Rule("encoder.layer.{i}.lambda_2", "layers.{i}.ffn_res.scale"),
    Rule("encoder.layer.{i}.attention.attention.relative_position_bias.relative_position_bias_table",
         "layers.{i}.relative.table"),
    Rule("encoder.relative_position_bias.relative_position_bias_table", "relative.table"),
    Rule("layernorm.{p}", "final_norm.{p}"),
    Rule("pooler.layernorm.{p}", "pool.norm.{p}"),
)
_HF_FLAVA_IMAGE = (*_HF_VIT, Rule("embeddings.mask_token", "embed.mask_token", squeeze=True))
"""transformers FlavaImageModel: ViT names plus the [MASK] patch."""
_HF_FLAVA_TEXT = (  # transformers FlavaTextModel: BERT's embeddings, ViT's pre-norm layers, final LayerNorm, pooler
    Rule("embeddings.word_embeddings.weight", "embed.word.weight"),
    Rule("embeddings.position_embeddings.weight", "embed.position.weight"),
    Rule("embeddings.token_type_embeddings.weight", "embed.segment.weight"),
    Rule("embeddings.LayerNorm.{p}", "embed.norm.{p}"),
    *_layer("encoder.layer", *_VIT_LAYER),
    Rule("layernorm.{p}", "final_norm.{p}"),
    Rule("pooler.dense.{p}", "pool.dense.{p}"),
)
_HF_FLAVA_MULTIMODAL = (  # transformers FlavaMultimodalModel: [CLS_M], ViT's layers, final LayerNorm, pooler
    Rule("cls_token", "embed.cls", squeeze=True),
    *_layer("encoder.layer", *_VIT_LAYER),
    Rule("layernorm.{p}", "final_norm.{p}"),
    Rule("pooler.dense.{p}", "pool.dense.{p}"),
)
_HF_VIT_MAE_DECODER = (  # transformers ViTMAEDecoder (pre-norm; its `decoder_pred` is a separate linear head)
    Rule("decoder_embed.{p}", "embed.proj.{p}"),
    Rule("mask_token", "embed.mask_token", squeeze=True),
    Rule("decoder_pos_embed", "embed.position", squeeze=True),
    *_layer("decoder_encoder.layer", *_VIT_LAYER),  # transformers >= 5
    *_layer("decoder_layers", *_VIT_LAYER),  # checkpoints written by transformers 4 (the published MAE weights)
    Rule("decoder_norm.{p}", "final_norm.{p}"),
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
_HF_WAV2VEC2_LAYERS = tuple(  # transformers Data2VecAudioEncoder's `layers` (post-norm), under their own prefix
    Rule(f"{{i}}.{theirs}.{{p}}", f"layers.{{i}}.{ours}.{{p}}")
    for theirs, ours in (("attention.q_proj", "attn.q"), ("attention.k_proj", "attn.k"), ("attention.v_proj", "attn.v"),
                         ("attention.out_proj", "attn.out"), ("layer_norm", "attn_res.norm"),
                         ("feed_forward.intermediate_dense", "ffn.fc1"), ("feed_forward.output_dense", "ffn.fc2"),
                         ("final_layer_norm", "ffn_res.norm"))
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
_HF_OPENAI_GPT = (  # transformers OpenAIGPTModel (GPT-1): GPT-2's Conv1D layout, post-norm, no final norm
    Rule("tokens_embed.weight", "embed.word.weight"),
    Rule("positions_embed.weight", "embed.position.weight"),
    *(r for r in _HF_GPT2 if r.src.startswith("h.")),
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
            "emit_first": True,  # ALIGN's text tower: the raw [CLS] state beside the pooler
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
        {"text": _TEXT},  # GPT-1: causal, post-norm, no embedding or final LayerNorm
        {"input": "text", "embed": {"type": "tokens", "positions": 12, "norm": False}, **_STACK, "causal": True,
         "activation": "gelu_tanh"},
        name="gpt1",
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
    Example(  # VisualBERT's visual embeddings: projection + position row 0 + token type 1, no LayerNorm
        {"regions": {"type": "regions", "dim": 5, "count": "regions", "max_count": 6, "mask": True}},
        {
            "input": "regions",
            "embed": {"type": "regions", "norm": False, "positions": 4, "position_ids": "zero", "segments": 2},
            **_STACK,
            "layers": 0,
        },
        name="regions_visualbert",
    ),
    Example(  # learned region positions 0..R-1
        {"regions": {"type": "regions", "dim": 5, "count": "regions", "max_count": 6}},
        {"input": "regions", "embed": {"type": "regions", "positions": 6, "segments": 1, "segment": 0}, **_STACK},
        name="regions_positions",
    ),
    Example(  # a sequence input of another width: projection, positions, LayerNorm
        {"feats": {"type": "sequence", "dim": 6, "length": "seq", "max_length": 10}},
        {"input": "feats", "embed": {"type": "sequence", "positions": 10, "norm": True}, **_STACK, "norm": "pre"},
        name="sequence",
    ),
    Example(  # data2vec audio's encoder layers over the waveform encoder's frames (same width: no projection)
        {"feats": {"type": "sequence", "dim": 8, "length": "seq", "max_length": 10}},
        {"input": "feats", "embed": {"type": "sequence"}, **_STACK, "eps": 1e-5},
        name="wav2vec2_layers",
    ),
    Example(  # joint stream over another encoder's masked sequence (VisualBERT): shared LayerNorm, cls pooler
        {"text": {**_TEXT, "mask": True}},
        {
            "input": "emb",
            "embed": {"type": "sequence", "norm": True},
            **_STACK,
            "pool": {"type": "cls", "dense": 8, "activation": "tanh"},
        },
        {"encoders": {"emb": {"type": "transformer", "input": "text", "embed": {"type": "tokens", "positions": 12,
                                                                              "norm": False}, **_STACK, "layers": 0}}},
        name="sequence_joint",
    ),
    Example(  # decoder: causal self-attention, cross-attention to a masked memory of another width
        {
            "text": _TEXT,
            "regions": {"type": "regions", "dim": 5, "count": "regions", "max_count": 6, "mask": True},
        },
        {
            "input": "text",
            "embed": {"type": "tokens", "positions": 12},
            **_STACK,
            "causal": True,
            "cross": {"input": "memory"},
        },
        {"encoders": {"memory": {"type": "transformer", "input": "regions", "embed": {"type": "regions"},
                                 "width": 6, "layers": 1, "heads": 2, "ffn": 12}}},
        name="cross_decoder",
    ),
    Example(  # AoANet's refiner: pre-norm AoA self-attention without feed-forward, final LayerNorm, masked mean
        {"regions": {"type": "regions", "dim": 5, "count": "regions", "max_count": 6, "mask": True}},
        {"input": "regions", "embed": {"type": "regions", "norm": False, "activation": "relu"}, **_STACK,
         "norm": "pre", "aoa": True, "feed_forward": False, "final_norm": True, "eps": 1e-6, "pool": {"type": "mean"}},
        name="aoa_refiner",
    ),
    Example(  # a decoder with AoA on its causal self-attention and on its cross-attention to a masked memory
        {
            "text": _TEXT,
            "regions": {"type": "regions", "dim": 5, "count": "regions", "max_count": 6, "mask": True},
        },
        {"input": "text", "embed": {"type": "tokens", "positions": 12}, **_STACK, "causal": True, "aoa": True,
         "cross": {"input": "memory", "aoa": True}},
        {"encoders": {"memory": {"type": "transformer", "input": "regions", "embed": {"type": "regions"},
                                 "width": 6, "layers": 1, "heads": 2, "ffn": 12}}},
        name="aoa_decoder",
    ),
    Example(  # the Transformer's decoder: sinusoidal positions, scaled words, the source encoder's word table
        {"source": {**_TEXT, "length": "src", "mask": True}, "text": _TEXT},
        {
            "input": "text",
            "embed": {"type": "tokens", "positions": 12, "position_kind": "sinusoidal", "scale": True,
                      "norm": False, "share": "src"},
            **_STACK,
            "causal": True,
            "cross": {"input": "src"},
        },
        {"encoders": {"src": {"type": "transformer", "input": "source", **_STACK, "embed": {
            "type": "tokens", "positions": 12, "position_kind": "sinusoidal", "scale": True, "norm": False}}}},
        name="shared_sinusoidal",
    ),
    Example(  # Flamingo: frozen pre-norm LM stack, tanh-gated cross-attention before layers 0 and 2
        {"text": _TEXT, "media": {"type": "sequence", "dim": 6, "length": "media", "max_length": 5}},
        {
            "input": "text",
            "embed": {"type": "tokens", "positions": 12, "norm": False},
            **_STACK,
            "layers": 3,
            "norm": "pre",
            "causal": True,
            "final_norm": True,
            "cross": {"input": "media", "every": 2, "gated": True},
            "stack_trainable": False,
        },
        name="flamingo",
    ),
    Example(  # PaLM: parallel layers, multi-query attention with rotary positions, SwiGLU, no biases
        {"text": _TEXT},
        {"input": "text", "embed": {"type": "tokens", "positions": 12, "position_kind": "rotary", "norm": False},
         **_STACK, "heads": 4, "head_dim": 4, "kv_heads": 1, "activation": "silu", "gated": True, "bias": False,
         "parallel": True, "norm": "pre", "causal": True, "final_norm": True},
        name="palm",
    ),
    Example(  # DALL-E: 4 text tokens then a 2 x 4 image grid; row, column, then convolutional attention
        {"text": {**_TEXT, "max_length": 12}},
        {"input": "text", "embed": {"type": "tokens", "positions": 12, "norm": False}, **_STACK, "layers": 3,
         "norm": "pre", "causal": True, "final_norm": True,
         "sparse": {"prefix": 4, "rows": 2, "columns": 4, "pattern": ["row", "column"], "kernel": 3}},
        name="dalle_sparse",
    ),
    Example(  # NÜWA: a causal decoder over 2 frames of 2 x 3 video tokens, 3-D nearby attention, cross-attention
        {"text": _TEXT, "video": {"type": "tokens", "vocab_size": 16, "length": "frames_len", "max_length": 12}},
        {"input": "video", "embed": {"type": "tokens", "positions": 12, "norm": False}, **_STACK, "norm": "pre",
         "causal": True, "cross": {"input": "caption"},
         "sparse": {"prefix": 0, "frames": 2, "rows": 2, "columns": 3, "pattern": ["nearby"], "last": None,
                    "extent": [1, 3, 3]}},
        {"encoders": {"caption": {"type": "transformer", "input": "text", "embed": {"type": "tokens",
                                                                                  "positions": 12}, **_STACK}}},
        name="nuwa_nearby",
    ),
    Example(  # LIMoE: a text embedding run through an image tower's layers (one stack, two modalities)
        {"text": _TEXT, "image": {"type": "image", "channels": 3, "height": 8, "width": 8}},
        {"input": "text", "embed": {"type": "tokens", "positions": 12}, **_STACK, "norm": "pre",
         "share_stack": "tower", "pool": {"type": "mean"}},
        {"encoders": {"tower": {"type": "transformer", "input": "image", "embed": {"type": "patches", "patch_size": 4},
                                **_STACK, "norm": "pre"}}},
        name="share_stack",
    ),
    Example(  # sparsely-gated MoE feed-forward in every other layer: noisy top-2 of 4 experts, short buffers
        {"text": _TEXT},
        {"input": "text", "embed": {"type": "tokens", "positions": 12}, **_STACK, "layers": 2, "norm": "pre",
         "moe": {"experts": 4, "top_k": 2, "capacity_factor": 0.5, "every": 2, "noise": True, "bias": True}},
        name="moe",
    ),
    Example(  # muNet's adapter mutation: a zero-initialised residual adapter after layer 1 of a ViT
        {"image": {"type": "image", "channels": 3, "height": 8, "width": 8}},
        {"input": "image", "embed": {"type": "patches", "patch_size": 4}, **_STACK, "layers": 2, "norm": "pre",
         "final_norm": True, "pool": {"type": "cls"}, "adapters": {"hidden": 3, "layers": [1], "activation": "gelu"}},
        name="adapters",
    ),
    Example(  # muNet's layer cloning: the child trains layer 1 and the adapter after it; the rest is frozen
        {"image": {"type": "image", "channels": 3, "height": 8, "width": 8}},
        {"input": "image", "embed": {"type": "patches", "patch_size": 4}, **_STACK, "layers": 2, "norm": "pre",
         "final_norm": True, "pool": {"type": "cls"}, "adapters": {"hidden": 3, "layers": [0, 1]},
         "trainable_layers": [1, "adapter.1"]},
        name="layer_clone",
    ),
    Example(  # FLAVA's multimodal encoder: [CLS_M] before a tower's projected pre-final-norm states
        {"image": {"type": "image", "channels": 3, "height": 8, "width": 8}},
        {"input": "proj", "embed": {"type": "sequence", "class_token": True}, **_STACK, "norm": "pre",
         "final_norm": True, "pool": {"type": "cls", "dense": 8, "activation": "tanh"}},
        {"encoders": {
            "tower": {"type": "transformer", "input": "image", "embed": {"type": "patches", "patch_size": 4,
                                                                          "mask_token": True},
                      **_STACK, "norm": "pre", "final_norm": True, "emit_hidden": True},
            "proj": {"type": "transformer", "input": "tower", "embed": {"type": "sequence", "field": "hidden",
                                                                         "project": True}, **_STACK, "layers": 0}}},
        name="flava_multimodal",
    ),
    Example(  # FLAVA's projection into the multimodal width: a text tower's `hidden`, its padding mask along
        {"text": {**_TEXT, "mask": True}},
        {"input": "tower", "embed": {"type": "sequence", "field": "hidden", "project": True}, **_STACK, "layers": 0},
        {"encoders": {"tower": {"type": "transformer", "input": "text", "embed": {"type": "tokens", "positions": 12},
                                **_STACK, "norm": "pre", "final_norm": True, "emit_hidden": True}}},
        name="flava_projection",
    ),
    Example(  # BEiT / data2vec vision: no absolute positions, per-layer 2-D relative biases, layer scale,
        # keys without bias, LayerNorm of the mean patch state
        {"image": {"type": "image", "channels": 3, "height": 8, "width": 12}},
        {"input": "image", "embed": {"type": "patches", "patch_size": 4, "positions": False}, **_STACK,
         "norm": "pre", "layer_scale": 0.1, "key_bias": False, "relative_position": "layer",
         "pool": {"type": "mean", "skip": 1, "norm": True}},
        name="beit",
    ),
    Example(  # one relative position table shared by the stack (use_shared_relative_position_bias)
        {"image": {"type": "image", "channels": 3, "height": 8, "width": 8}},
        {"input": "image", "embed": {"type": "patches", "patch_size": 4}, **_STACK, "norm": "pre",
         "relative_position": "shared", "final_norm": True},
        name="beit_shared_relative",
    ),
    Example(  # MAE encoder: 16 patches, 4 kept while training; at eval every token, restore = identity
        {"image": {"type": "image", "channels": 3, "height": 8, "width": 8}},
        {"input": "image", "embed": {"type": "patches", "patch_size": 2}, **_STACK, "norm": "pre",
         "final_norm": True, "drop": {"ratio": 0.75}},
        name="mae_encoder",
    ),
    Example(  # MAE decoder: projection 8 -> 6, mask tokens, unshuffle, positions for class token + 16 patches
        {"image": {"type": "image", "channels": 3, "height": 8, "width": 8}},
        {
            "input": "encoder",
            "embed": {"type": "sequence", "positions": 17, "mask_token": True},
            "width": 6,
            "layers": 1,
            "heads": 2,
            "ffn": 12,
            "norm": "pre",
            "final_norm": True,
        },
        {"encoders": {"encoder": {"type": "transformer", "input": "image", "embed": {"type": "patches",
                                                                                   "patch_size": 2},
                                  **_STACK, "norm": "pre", "final_norm": True, "drop": {"ratio": 0.75}}}},
        name="mae_decoder",
    ),
)


@register(
    "encoders",
    examples=TRANSFORMER_EXAMPLES,
    notes="layers may be 0 (embeddings only, e.g. streams that a fusion continues)",
)
class TransformerEncoder(StackConfig, ComponentConfig):
    """Transformer encoder: an embedding, `layers` blocks, optional final LayerNorm and pooling.

    Emits `sequence` [batch, S, width], `mask` when the input has one, `pooled` [batch, D] when `pool` is set,
    `restore` and `dropped` [batch, N] with `drop`.
    """

    type: Literal["transformer"]
    input: Ref
    embed: Embed
    """How the input becomes tokens: `tokens` (ids), `patches` (an image), `regions` (region features and boxes)
    or `sequence` (vectors already), with their positions, segments and normalization."""
    causal: bool = False
    """Causal self-attention (CLIP text, GPT)."""
    final_norm: bool = False
    """LayerNorm on the whole output sequence (CLIP text)."""
    pool: PoolConfig | None = None
    """How `pooled` [batch, width] is made from the sequence (`cls`, `mean`, `eos`, ...); null: no `pooled`."""
    cross: CrossConfig | None = None
    """Cross-attention to another node's sequence (a decoder's memory, Flamingo's media, Perceiver's inputs)."""
    drop: DropConfig | None = None
    """MAE: drop a random subset of the patch tokens while training (patches embed only)."""
    share_stack: Name | None = None
    """Run the layer stack (and final_norm) of this other `transformer` encoder, computed before this one: one
    tower encodes two modalities separately (LIMoE). The stack fields must equal the owner's; the shared
    parameters count once, for the owner."""
    parallel: bool = False
    """PaLM's layers: x + Attn(LN(x)) + FFN(LN(x)) with one LayerNorm (norm: pre); `kv_heads`, `head_dim`, `gated`,
    `bias` and rotary positions apply to these layers."""
    kv_heads: PositiveInt | None = None
    """Key/value heads shared by groups of query heads (1: multi-query attention); null: `heads`."""
    head_dim: PositiveInt | None = None
    """Width of one attention head (the attention's inner width is heads * head_dim); null: width / heads."""
    gated: bool = False
    """SwiGLU-style feed-forward fc2(act(gate(x)) * fc1(x)) (activation silu: SwiGLU)."""
    bias: bool = True
    """false: no biases in the layers' linear maps and LayerNorms, nor in `final_norm` (PaLM)."""
    moe: MoEConfig | None = None
    """Mixture-of-experts feed-forward layers; the output bundle gains `router` [batch, n*S, experts], the
    router logits of the n MoE layers one after the other along the sequence axis (for moe_load_balancing)."""
    emit_first: bool = False
    """Also emit `first` [batch, width]: the output sequence's first token as it is, beside any `pool` (ALIGN
    projects BERT's [CLS] state while its checkpoint keeps the unused pooler)."""
    emit_hidden: bool = False
    """Also emit `hidden` [batch, S, width]: the last layer's output before `final_norm` (what FLAVA's towers pass
    to its multimodal encoder)."""
    stack_trainable: bool = True
    """false: the layer stack (every layer's self-attention and feed-forward sublayers) and final_norm are frozen;
    the embedding, the cross-attention sublayers and the pool still train (Flamingo's frozen LM)."""
    trainable_layers: list[Annotated[int, Field(ge=0)] | str] | None = None
    """The parts of this encoder that train; every other part is frozen (no gradients, no optimizer state, eval
    mode while training). Entries: a layer index (the whole layer, cross-attention included), `embed`,
    `final_norm`, `pool`, `adapter.I` (the adapter after layer I). muNet's layer cloning: the child trains its own
    copies of the listed parts and shares the rest, frozen, with its parent; a shared relative position table is
    frozen too. null: everything trains (as `stack_trainable` says)."""
    layer_scale: PositiveFloat | None = None
    """BEiT / data2vec vision (norm: pre): each sublayer's output is multiplied by a learned per-channel vector
    starting at this value (`lambda_1`, `lambda_2`); null: none."""
    key_bias: bool = True
    """false: the self-attention's key projection has no bias while query and value keep theirs (BEiT)."""
    aoa: bool = False
    """Attention on Attention (Huang et al. 2019) in place of the self-attention's output projection: the heads'
    result v and the query q (the sublayer's input) give g * i with i = W_i [v; q] + b_i and the gate
    g = sigmoid(W_g [v; q] + b_g), one Linear(2 width -> 2 width) per layer (AoANet's refiner; `cross.aoa` does the
    same to the cross-attention)."""
    feed_forward: bool = True
    """false: layers of attention sublayers only, no feed-forward sublayer (AoANet's refiner, use_ff 0); `ffn`
    is then unused."""
    sparse: SparseConfig | None = None
    """DALL-E's row / column / convolutional or NÜWA's 3-D nearby attention masks over a text prefix and image or
    video token grids (causal, token ids whose modality's max_length is prefix + frames * rows * columns); null:
    dense."""
    adapters: AdapterConfig | None = None
    """Residual adapters after chosen layers, their second linear map zero-initialised (muNet); null: none."""
    relative_position: Literal["layer", "shared"] | None = None
    """BEiT's 2-D relative position bias over a patches embed with its class token: a learned table of
    (2h-1)(2w-1) + 3 rows x heads, indexed by patch offsets, added to the attention scores; `layer`: one table
    per layer, `shared`: one for the whole stack. null: none."""

    weight_layouts = {
        "bert": _HF_BERT,
        "vit": _HF_VIT,
        "vit_mae_decoder": _HF_VIT_MAE_DECODER,
        "clip": _HF_CLIP,
        "gpt2": _HF_GPT2,
        "openai_gpt": _HF_OPENAI_GPT,
        "wav2vec2_layers": _HF_WAV2VEC2_LAYERS,
        "flava_image": _HF_FLAVA_IMAGE,
        "data2vec_vision": _HF_DATA2VEC_VISION,
        "flava_text": _HF_FLAVA_TEXT,
        "flava_multimodal": _HF_FLAVA_MULTIMODAL,
        "flava_projection": (Rule("{p}", "embed.proj.{p}"),),  # FlavaModel's image/text_to_mm_projection
    }
    ref_fields: ClassVar[tuple[str, ...]] = ("cross",)
    """`cross` is an input port; a bad reference there is located at `cross`."""

    def references(self) -> dict[str, str]:
        return {"input": self.input, **({"cross": self.cross.input} if self.cross else {}),
                **({"stack": self.share_stack} if self.share_stack else {})}

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        bundle = inputs["input"]
        self._check_parallel()
        if isinstance(self.embed, SequenceEmbed):
            src, length = self._sequence_input(bundle, ctx)
        else:
            src, length = self._modality_input(bundle, ctx)
        batch = src.shape[0]
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
            if isinstance(self.embed, SequenceEmbed) and self.embed.class_token:
                out["mask"] = TensorInfo((batch, length), bundle["mask"].dtype)
        if self.emit_hidden:
            out["hidden"] = TensorInfo((batch, length, self.width))
        if self.pool:
            out["pooled"] = TensorInfo((batch, pooled_width(self.pool, self.width)))
        if self.emit_first:
            out["first"] = TensorInfo((batch, self.width))
        if self.drop:
            tokens, _ = self.drop_sizes(src)
            out["restore"] = out["dropped"] = TensorInfo((batch, tokens), "int64")
        if isinstance(self.embed, SequenceEmbed) and self.embed.mask_token and "dropped" in bundle:
            out["dropped"] = bundle["dropped"]
        if self.cross:
            self._context(inputs["cross"], batch)
        if self.share_stack:
            self._check_shared_stack(ctx)
        if self.moe:
            out["router"] = TensorInfo((batch, dim_product(len(self._moe_layers()), length), self.moe.experts))
        self._check_beit("mask" in bundle)
        self._check_sparse(ctx)
        if not self.feed_forward and self.moe:
            raise CheckError(("moe",), "moe replaces the feed-forward sublayer, which feed_forward: false removes; "
                                       "keep one of them")
        self._check_trainable_layers()
        if self.adapters and any(i >= self.layers for i in self.adapters.layers_of(self.layers)):
            raise CheckError(("adapters", "layers"), f"adapters.layers {self.adapters.layers} name a layer the "
                                                     f"stack of {self.layers} layers (0..{self.layers - 1}) lacks")
        return out

    def part_names(self) -> list[str]:
        """What `trainable_layers` may name beside layer indices: `embed`, `final_norm`, `pool` and `adapter.I`,
        those this encoder has."""
        adapters = self.adapters.layers_of(self.layers) if self.adapters else []
        return ["embed", *(["final_norm"] if self.final_norm else []), *(["pool"] if self.pool else []),
                *(f"adapter.{i}" for i in adapters)]

    def _check_trainable_layers(self) -> None:
        """`trainable_layers` names parts of this encoder, each once, in an encoder whose layers are its own and
        not frozen otherwise."""
        if self.trainable_layers is None:
            return
        conflicts = {"trainable: false freezes the whole encoder": not self.trainable,
                     "stack_trainable: false freezes every layer": not self.stack_trainable,
                     f"share_stack runs the layers of {self.share_stack!r} (set trainable_layers there)":
                         self.share_stack}
        for conflict in (text for text, hit in conflicts.items() if hit):
            raise CheckError(("trainable_layers",), f"trainable_layers picks the parts that train, but {conflict}; "
                                                    f"keep one of them")
        names, seen = self.part_names(), set()
        for k, part in enumerate(self.trainable_layers):
            if isinstance(part, int) and part >= self.layers:
                raise CheckError(("trainable_layers", k), f"trainable_layers[{k}] is layer {part}, but the stack "
                                                          f"has {self.layers} layers (0..{self.layers - 1})")
            if isinstance(part, str) and part not in names:
                raise CheckError(("trainable_layers", k), f"trainable_layers[{k}] {part!r} is no part of this "
                                                          f"encoder{suggestion_text(part, names)}; name a layer "
                                                          f"index or one of {names}")
            if part in seen:
                raise CheckError(("trainable_layers", k), f"trainable_layers names {part!r} twice (again at "
                                                          f"[{k}]); list each part once")
            seen.add(part)

    def _check_sparse(self, ctx) -> None:
        """`sparse` masks a causal stack over token ids that fill exactly the text prefix and the image grid."""
        s = self.sparse
        if s is None:
            return
        if not self.causal or not isinstance(self.embed, TokensEmbed) or self.parallel:
            raise CheckError(("sparse",), "sparse masks a causal stack of plain layers over token ids; set causal: "
                                          "true with embed type 'tokens' (not parallel)")
        longest = ctx.spec.modalities[self.input.split(".")[0]].max_length
        grid = s.frames * s.rows * s.columns
        if longest != s.prefix + grid:
            raise CheckError(("sparse",), f"sparse covers {s.prefix} + {s.frames} x {s.rows} x {s.columns} = "
                                          f"{s.prefix + grid} positions but {self.input!r} has max_length "
                                          f"{longest}; make them equal")
        for name, sizes in (("kernel", [s.kernel]), ("extent", s.extent)):
            if any(size % 2 == 0 for size in sizes):
                raise CheckError(("sparse", name), f"sparse.{name} {getattr(s, name)} must be odd (a window "
                                                   f"centred on the token)")

    def _check_beit(self, masked: bool) -> None:
        """BEiT's options: layer scale on pre-norm layers, a relative position bias over patches + class token,
        a mean pool that skips tokens only over an unpadded sequence."""
        if self.layer_scale is not None and (self.norm != "pre" or self.parallel):
            raise CheckError(("layer_scale",), "layer_scale scales pre-norm sublayers; set norm: pre (not parallel)")
        if self.relative_position is not None:
            if not isinstance(self.embed, PatchesEmbed) or not self.embed.class_token:
                raise CheckError(("relative_position",), "relative_position indexes a patch grid with its class "
                                                         "token; use embed type 'patches' with class_token: true")
            if self.parallel or self.drop or self.layers == 0:
                raise CheckError(("relative_position",), "relative_position needs plain layers over every patch "
                                                         "(layers >= 1, no parallel, no drop)")
        if self.pool and self.pool.skip and (self.pool.type != "mean" or masked):
            raise CheckError(("pool", "skip"), "pool.skip applies to pool.type 'mean' over an unpadded sequence")

    _STACK_FIELDS: ClassVar[tuple[str, ...]] = (
        "width", "layers", "heads", "ffn", "activation", "norm", "eps", "final_norm", "moe", "parallel", "kv_heads",
        "head_dim", "gated", "bias", "aoa", "feed_forward")

    def _check_shared_stack(self, ctx) -> None:
        """`share_stack` names another transformer encoder with the same stack fields that owns its layers."""
        other = ctx.spec.encoders.get(self.share_stack)
        if other is None or other.type != "transformer" or other is self or other.share_stack:
            raise CheckError(("share_stack",), f"share_stack {self.share_stack!r} must name another transformer "
                                               f"encoder that owns its layers")
        differ = [f for f in self._STACK_FIELDS if getattr(self, f) != getattr(other, f)]
        if differ:
            raise CheckError(("share_stack",), f"share_stack: the stack of {self.share_stack!r} differs in "
                                               f"{', '.join(differ)}; set them as in {self.share_stack!r}")

    def _check_parallel(self) -> None:
        """Heads divide the width (or head_dim is given); PaLM's options only with `parallel` layers."""
        if self.head_dim is None:
            self.check_heads()
        rotary = isinstance(self.embed, TokensEmbed) and self.embed.position_kind == "rotary"
        if not self.parallel:
            for name in ("kv_heads", "head_dim", "gated", "bias"):
                if getattr(self, name) != type(self).model_fields[name].default:
                    raise CheckError((name,), f"{name} applies to parallel layers; set parallel: true or remove it")
            if rotary:
                raise CheckError(("embed", "position_kind"), "rotary positions live in parallel layers' attention; "
                                                             "set parallel: true or use learned positions")
            return
        if self.norm != "pre":
            raise CheckError(("norm",), "parallel layers normalise their input once (pre-norm); set norm: pre")
        for name in ("aoa", "feed_forward"):
            if getattr(self, name) != type(self).model_fields[name].default:
                raise CheckError((name,), f"{name} applies to plain (not parallel) layers; remove it")
        for name in ("cross", "moe", "drop"):
            if getattr(self, name) is not None:
                raise CheckError((name,), f"{name} is not available with parallel layers; remove it")
        if self.heads % (self.kv_heads or self.heads):
            raise CheckError(("kv_heads",), f"kv_heads {self.kv_heads} does not divide heads {self.heads}; every "
                                            f"key/value head serves the same number of query heads")
        if rotary and (self.head_dim or self.width // self.heads) % 2:
            raise CheckError(("head_dim",), "rotary positions rotate pairs of features; use an even head width")

    def parallel_layer_params(self) -> int:
        """Parameters of one parallel layer: LayerNorm, attention (q, k, v, out), feed-forward."""
        w, inner = self.width, self.heads * (self.head_dim or self.width // self.heads)
        kv = (self.kv_heads or self.heads) * (self.head_dim or self.width // self.heads)
        attn = 2 * w * inner + 2 * w * kv + ((inner + 2 * kv + w) if self.bias else 0)
        ffn = (3 if self.gated else 2) * w * self.ffn + (((2 if self.gated else 1) * self.ffn + w) if self.bias else 0)
        return w * (2 if self.bias else 1) + attn + ffn

    def _moe_layers(self) -> list[int]:
        """The MoE layers' indices; a CheckError when `moe` selects none or cannot route."""
        if self.moe.top_k > self.moe.experts:
            raise CheckError(("moe", "top_k"), f"moe.top_k {self.moe.top_k} exceeds the {self.moe.experts} experts; "
                                               f"choose top_k <= experts")
        chosen = self.moe.layers_of(self.layers)
        if not chosen:
            raise CheckError(("moe", "every"), f"moe.every {self.moe.every} selects none of the {self.layers} layers; "
                                               f"choose every <= layers")
        return chosen

    def idle_params(self) -> int:
        """Parameters a token does not use (total - idle = active per token): in each MoE layer the experts it
        is not routed to (all but top_k) and the noise router, which only acts while training. 0 without moe."""
        if not self.moe:
            return 0
        m = self.moe
        idle = (m.experts - m.top_k) * m.expert_params(self.width, self.ffn)
        return len(self._moe_layers()) * (idle + (self.width * m.experts if m.noise else 0))

    def kv_layout(self, inputs: dict[str, Bundle], ctx) -> KVLayout:
        """Causal self-attention over token ids or a sequence decodes step by step: each layer keeps its keys and
        values, new positions continue after the past ones, cross-attention reads precomputed context keys/values."""
        if not self.causal:
            raise CheckError(("causal",), "a KV cache serves causal self-attention; set causal: true (a "
                                          "bidirectional encoder recomputes every position each step)")
        if not isinstance(self.embed, TokensEmbed | SequenceEmbed):
            raise CheckError(("embed", "type"), f"decoding step by step needs a tokens or sequence embedding, "
                                                f"not {self.embed.type!r}")
        if isinstance(self.embed, TokensEmbed) and self.embed.padding_idx is not None:
            raise CheckError(("embed", "padding_idx"), "positions counted from padding (padding_idx) are not "
                                                       "known one step at a time; remove padding_idx")
        if isinstance(self.embed, SequenceEmbed) and self.embed.mask_token:
            raise CheckError(("embed", "mask_token"), "mask tokens restore a dropped sequence; a decoder step "
                                                      "cannot; remove mask_token")
        batch, length, _ = self.infer(inputs, ctx)["sequence"].shape
        if not isinstance(length, str) or not length.isidentifier():
            raise CheckError(("input",), f"the new positions of a step need a named dynamic length axis; "
                                         f"{self.input!r} has length {length!r}")
        positions = self.embed.positions
        cross = {}
        if self.cross:
            fld, context = sequence_of(inputs["cross"], self.cross.input, "cross")
            cross = {"cross_layers": tuple(range(0, self.layers, self.cross.every)),
                     "context": (self.cross.input.split(".")[0], fld), "context_port": "cross",
                     "context_length": context.shape[1]}
        head_dim = self.head_dim or self.width // self.heads
        if isinstance(self.embed, TokensEmbed) and self.embed.position_kind == "rotary":
            positions = None
        return KVLayout(self.layers, self.kv_heads or self.heads, head_dim, batch, length, positions,
                        ("mask",), **cross)

    def _modality_input(self, bundle: Bundle, ctx) -> tuple[TensorInfo, object]:
        """The modality tensor the token/patch/region embedding reads, and the sequence length it gives."""
        src = require(
            bundle.get(_MODALITY_FIELD[self.embed.type]),
            _MODALITY_FIELD[self.embed.type],
            4 if self.embed.type == "patches" else (2 if self.embed.type == "tokens" else 3),
            f"{self.embed.type} embedding's",
        )
        if self.drop and not isinstance(self.embed, PatchesEmbed):
            raise CheckError(("drop",), f"drop applies to embed type 'patches' (MAE), not {self.embed.type!r}; "
                                        f"remove drop")
        if isinstance(self.embed, TokensEmbed):
            modality = ctx.spec.modalities.get(self.input.split(".")[0])
            if modality is None:
                raise CheckError(("input",), f"a tokens embedding reads a tokens modality (its vocab_size sizes the "
                                             f"table); {self.input!r} is the output of a node: declare the tokens "
                                             f"as a modality, or use embed type sequence for vectors")
            longest = modality.max_length if isinstance(src.shape[1], str) else src.shape[1]
            offset = 0 if self.embed.padding_idx is None else self.embed.padding_idx + 1
            if longest + offset > self.embed.positions:
                shifted = f" plus the offset padding_idx + 1 = {offset}" if offset else ""
                raise CheckError(
                    ("embed", "positions"),
                    f"embed.positions {self.embed.positions} is shorter than the input's length "
                    f"{longest} (modality {self.input!r} max_length){shifted}; raise positions or lower max_length",
                )
            if self.embed.share is not None:
                self._shared_table(ctx, modality.vocab_size)
            if "segments" in bundle and modality.segments != self.embed.segments:
                raise CheckError(
                    ("embed", "segments"),
                    f"embed.segments {self.embed.segments} differs from modality {self.input!r} "
                    f"segments {modality.segments}; make them equal",
                )
            return src, src.shape[1]
        if isinstance(self.embed, PatchesEmbed):
            _, _, h, w = src.shape
            p = self.embed.patch_size
            if h % p or w % p:
                raise CheckError(
                    ("embed", "patch_size"),
                    f"embed.patch_size {p} does not divide the image size {h}x{w} of {self.input!r}",
                )
            return src, (h // p) * (w // p) + int(self.embed.class_token)
        e = self.embed
        longest = axis_max(ctx.spec, src.shape[1])
        if e.positions and e.position_ids == "index" and longest is not None and longest > e.positions:
            raise CheckError(("embed", "positions"), f"embed.positions {e.positions} is shorter than the "
                                                     f"{longest} regions of {self.input!r} (max_count); raise "
                                                     f"positions, lower max_count, or use position_ids: zero")
        if e.segments and e.segment >= e.segments:
            raise CheckError(("embed", "segment"), f"embed.segment {e.segment} is not a row of the {e.segments}-row "
                                                   f"segment table (embed.segments); use 0..{e.segments - 1}")
        return src, src.shape[1]

    def _shared_table(self, ctx, vocab: int) -> None:
        """`embed.share` names a transformer with token embeddings of this vocabulary and width, planned before."""
        name = self.embed.share
        other = ctx.spec.encoders.get(name)
        if other is None or other.type != "transformer" or other.embed.type != "tokens" or other is self:
            tables = [n for n, e in ctx.spec.encoders.items()
                      if e.type == "transformer" and e.embed.type == "tokens" and e is not self]
            raise CheckError(("embed", "share"), f"embed.share {name!r} must name another transformer encoder with "
                                                 f"token embeddings; candidates: {', '.join(tables) or 'none'}")
        if other.embed.share is not None:
            raise CheckError(("embed", "share"), f"{name!r} shares the table of {other.embed.share!r}; name the "
                                                 f"owner {other.embed.share!r}")
        theirs = ctx.spec.modalities[other.input.split(".")[0]].vocab_size
        if (theirs, other.width) != (vocab, self.width):
            raise CheckError(("embed", "share"), f"the word table of {name!r} is [{theirs}, {other.width}] but this "
                                                 f"encoder needs [{vocab}, {self.width}]; make the vocabulary sizes "
                                                 f"and widths equal")
        if name not in ctx.bundles:
            raise CheckError(("embed", "share"), f"{name!r} must be computed before this encoder (reference it, "
                                                 f"e.g. with cross: {{input: {name}}})")

    def _sequence_input(self, bundle: Bundle, ctx) -> tuple[TensorInfo, object]:
        """The sequence an `embed: sequence` reads, and the length after the embedding."""
        if self.drop:
            raise CheckError(("drop",), "drop applies to embed type 'patches' (MAE), not 'sequence'; remove drop")
        _, src = self.embed.source(bundle, self.input)
        length = src.shape[1]
        if self.embed.mask_token:
            self.mask_prefix(bundle, src)
        if self.embed.class_token:
            length = dim_sum(length, 1)
        longest = axis_max(ctx.spec, length)
        if self.embed.positions and longest is not None and longest > self.embed.positions:
            raise CheckError(("embed", "positions"), f"embed.positions {self.embed.positions} is shorter than the "
                                                     f"length {longest} of {self.input!r} ({length}); raise "
                                                     f"positions to at least {longest}")
        return src, length

    def mask_prefix(self, bundle: Bundle, src: TensorInfo) -> int:
        """Tokens in front of the ones `restore` orders (an MAE encoder's class token)."""
        restore = bundle.get("restore")
        if restore is None:
            raise CheckError(("embed", "mask_token"), f"embed.mask_token needs an input that carries `restore` (a "
                                                      f"transformer with `drop:`); {self.input!r} has "
                                                      f"{sorted(bundle)}; add `drop:` to that encoder, or reference "
                                                      f"its whole bundle (not one field)")
        s, n = src.shape[1], restore.shape[1]
        if s == n:
            return 0
        if isinstance(s, int) and isinstance(n, int) and s > n:
            return s - n
        raise CheckError("input", f"{self.input!r}: the sequence length {s} does not cover the {n} tokens of "
                                  f"`restore`; the sequence must be the drop encoder's own")

    def drop_sizes(self, src: TensorInfo) -> tuple[int, int]:
        """(patch tokens N, tokens kept while training)."""
        _, _, h, w = src.shape
        tokens = (h // self.embed.patch_size) * (w // self.embed.patch_size)
        keep = int(tokens * (1 - self.drop.ratio))
        if keep < 1:
            raise CheckError(("drop", "ratio"), f"drop.ratio {self.drop.ratio} keeps no token of {tokens} patches; "
                                                f"lower the ratio below {1 - 1 / tokens:.4g}")
        return tokens, keep

    def _context(self, bundle: Bundle, batch) -> TensorInfo:
        """The sequence the cross-attention reads."""
        _, ctx_seq = sequence_of(bundle, self.cross.input, "cross")
        if self.layers == 0:
            raise CheckError(("cross",), "cross-attention lives in the layers, but layers is 0; set layers >= 1 or "
                                         "remove cross")
        if ctx_seq.shape[0] != batch:
            raise CheckError(("cross",), f"the context {self.cross.input!r} has batch axis {ctx_seq.shape[0]!r} but "
                                         f"the input {self.input!r} has {batch!r}; both must be one batch")
        return ctx_seq

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Parameters `build` will allocate, by formula (budgets before allocation; mmspec.spec.budget)."""
        from mmspec.components import params as P

        w, e = self.width, self.embed
        if isinstance(e, SequenceEmbed):
            _, src = e.source(inputs["input"], self.input)
            embed = (P.linear(src.width, w) if src.width != w or e.project else 0) + (P.layer_norm(w) if e.norm else 0)
            embed += (e.positions or 0) * w + (w if e.mask_token else 0) + (w if e.class_token else 0)
        else:
            m = ctx.spec.modalities[self.input.split(".")[0]]
            if isinstance(e, TokensEmbed):
                words = 0 if e.share else m.vocab_size
                learned = e.positions if e.position_kind == "learned" else 0
                embed = (words + learned + e.segments) * w + (P.layer_norm(w) if e.norm else 0)
            elif isinstance(e, PatchesEmbed):
                grid = (m.height // e.patch_size) * (m.width // e.patch_size) + int(e.class_token)
                embed = (m.channels * e.patch_size**2 + int(e.bias) + int(e.class_token) + grid * e.positions) * w
                embed += (P.layer_norm(w) if e.norm else 0) + (w if e.mask_token else 0)
            else:
                embed = P.linear(m.dim, w) + (P.linear(m.boxes, w) if m.boxes else 0)
                embed += ((e.positions or 0) + e.segments) * w + (P.layer_norm(w) if e.norm else 0)
        cross = 0
        if self.cross:
            _, context = sequence_of(inputs["cross"], self.cross.input, "cross")
            cross = len(range(0, self.layers, self.cross.every)) * P.cross_sublayer(w, context.width, self.cross.gated)
        final = (P.layer_norm(w) if self.bias else w) if self.final_norm else 0
        stack = self.layers * self.parallel_layer_params() if self.parallel else P.stack(self)
        if self.share_stack:
            return embed + cross + P.pool(self.pool, w)
        adapters = 0
        if self.adapters:
            h = self.adapters.hidden
            adapters = len(self.adapters.layers_of(self.layers)) * (P.linear(w, h) + P.linear(h, w))
        return (embed + stack + cross + final + P.pool(self.pool, w) + self._moe_extra() + self._beit_extra(ctx)
                + adapters + self._aoa_extra())

    def _aoa_extra(self) -> int:
        """Parameters AoANet's options change: an AoA Linear(2 width, 2 width) in place of an attention's output
        Linear(width, width); no feed-forward sublayer and its LayerNorm."""
        from mmspec.components import params as P

        w = self.width
        aoa = P.linear(2 * w, 2 * w) - P.linear(w, w)
        crossed = len(range(0, self.layers, self.cross.every)) if self.cross and self.cross.aoa else 0
        dropped = 0 if self.feed_forward else P.feed_forward(w, self.ffn) + P.layer_norm(w)
        return self.layers * (aoa * self.aoa - dropped) + crossed * aoa

    def _beit_extra(self, ctx) -> int:
        """Parameters BEiT's options add: layer-scale vectors, relative position tables, less the key biases."""
        per_layer = (2 * self.width if self.layer_scale is not None else 0) - (0 if self.key_bias else self.width)
        extra = self.layers * per_layer
        if self.relative_position is not None:
            h, w = self.patch_grid(ctx.spec.modalities[self.input.split(".")[0]])
            table = ((2 * h - 1) * (2 * w - 1) + 3) * self.heads
            extra += table * (self.layers if self.relative_position == "layer" else 1)
        return extra

    def patch_grid(self, modality) -> tuple[int, int]:
        """(rows, columns) of the patch grid a patches embed cuts from `modality`."""
        return modality.height // self.embed.patch_size, modality.width // self.embed.patch_size

    def _moe_extra(self) -> int:
        """Parameters the MoE layers add over the dense feed-forwards they replace."""
        if not self.moe:
            return 0
        m, w = self.moe, self.width
        moe = m.experts * (m.expert_params(w, self.ffn) + w) + (w * m.experts if m.noise else 0)
        dense = 2 * w * self.ffn + self.ffn + w
        return len(self._moe_layers()) * (moe - dense)

    def internal_shapes(self, inputs: dict[str, Bundle], ctx) -> list[tuple]:
        return layer_shapes(self, inputs, ctx) if self.layers else []

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.transformer.module import TransformerEncoderModule

        shared = ctx.modules[self.embed.share].embed.word if getattr(self.embed, "share", None) else None
        owner = ctx.modules[self.share_stack] if self.share_stack else None
        return TransformerEncoderModule(self, inputs, ctx.spec.modalities.get(self.input.split(".")[0]), shared,
                                        owner)
