"""OFA's unified Transformer stacks (Wang et al. 2022, OFA-Sys/OFA `unify_transformer.py`): pre-LN layers with
NormFormer's extra norms and head scales, absolute positions turned into attention biases, and per-layer bucketed
relative position biases, 1-D over text tokens and 2-D over image patches. An encoder stack over [image patches ;
text tokens], or a decoder stack over target tokens (causal, cross-attention to an `ofa` encoder, its token table
and tied LM head)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from mmspec.components.common import layer_shapes, require, sequence_of
from mmspec.registry import Example, register
from mmspec.spec.base import (
    ComponentConfig,
    KVLayout,
    Name,
    PositiveFloat,
    PositiveInt,
    Probability,
    Ref,
    StrictModel,
)
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo, dim_sum


class OFACross(StrictModel):
    """Cross-attention to an `ofa` encoder in every layer: makes the stack a decoder that shares the encoder's token
    table (OFA's share_all_embeddings) and reads its position embeddings for the cross-attention position bias."""

    input: Ref
    """The `ofa` encoder node (its `sequence`; its `mask` masks the keys)."""


_TEXT = {"type": "tokens", "vocab_size": 40, "length": "src", "max_length": 8, "mask": True}
_TARGET = {"type": "tokens", "vocab_size": 40, "length": "tgt", "max_length": 8}
_IMAGE = {"type": "image", "channels": 3, "height": 32, "width": 32}
_STACK = {"width": 8, "layers": 2, "heads": 2, "ffn": 16, "token_buckets": 8, "image_buckets": 3, "max_positions": 16}
_RESNET = {"type": "resnet", "input": "image", "depths": [1, 1, 1], "widths": [8, 12, 16], "stem": 4}
OFA_EXAMPLES = (
    Example(  # image patches (a 2x2 feature map) before the text tokens
        {"image": _IMAGE, "text": _TEXT}, {"input": "text", "image": "cnn.features", **_STACK},
        {"encoders": {"cnn": _RESNET}}, name="encoder",
    ),
    Example({"text": {**_TEXT, "mask": False}}, {"input": "text", **_STACK, "normformer": False}, name="text_encoder"),
    Example(
        {"image": _IMAGE, "source": _TEXT, "target": _TARGET},
        {"input": "target", **_STACK, "cross": {"input": "enc"}},
        {"encoders": {"cnn": _RESNET, "enc": {"type": "ofa", "input": "source", "image": "cnn.features", **_STACK}}},
        name="decoder",
    ),
    Example(  # text-to-image: a text-only encoder and an image-code decoder, both using the others' parameters
        {"image": _IMAGE, "source": _TEXT, "target": _TARGET, "codes": {**_TARGET, "length": "code", "max_length": 5}},
        {"input": "codes", **_STACK, "cross": {"input": "txt"}, "codes": True, "code_grid": 2, "share": "dec"},
        {"encoders": {"cnn": _RESNET, "enc": {"type": "ofa", "input": "source", "image": "cnn.features", **_STACK},
                      "dec": {"type": "ofa", "input": "target", **_STACK, "cross": {"input": "enc"}},
                      "txt": {"type": "ofa", "input": "source", **_STACK, "share": "enc"}}},
        name="image_codes",
    ),
)


@register("encoders", examples=OFA_EXAMPLES)
class OFAStack(ComponentConfig):
    """OFA stack over token ids [batch, S]. Encoder: image patches (a feature map [batch, C, h, w] flattened, Linear
    to width, type embedding 1, LayerNorm) before the text tokens (table, type embedding 0, LayerNorm); emits
    `sequence` [batch, h*w + S, width] after the final LayerNorm and `mask` when the text has one. Decoder (`cross`):
    emits `sequence` and `logits` [batch, S, vocab] over the encoder's tied table. Every attention adds
    q_pos(LN(p_i)) . k_pos(LN(p_j)) of learned absolute position embeddings (scaled like the heads), and
    self-attention adds a per-layer learned bias per relative bucket and head: text tokens 1-D log buckets, image
    patches a 2-D offset table (BEiT's), nothing between image and text."""

    type: Literal["ofa"]
    input: Ref
    image: Ref | None = None
    """Encoders only: a feature map [batch, C, h, w] (e.g. a `resnet`'s `features`) whose h*w cells become the
    patch tokens in front of the text."""
    cross: OFACross | None = None
    """Cross-attention to an `ofa` encoder: the decoder stack; null: an encoder stack."""
    width: PositiveInt = 768
    """d_model (encoder_embed_dim / decoder_embed_dim)."""
    layers: PositiveInt = 6
    """Transformer layers in the stack."""
    heads: PositiveInt = 12
    ffn: PositiveInt = 3072
    """Feed-forward hidden width."""
    activation: Literal["gelu", "relu"] = "gelu"
    """Feed-forward activation (OFA: exact GELU)."""
    normformer: bool = True
    """NormFormer's additions (OFA's --scale-attn --scale-fc --scale-heads): a LayerNorm after every attention,
    one on the feed-forward's hidden layer, and a learned scale per attention head."""
    attention_scale: PositiveFloat = 2.0
    """Scores are divided by sqrt(head_dim * attention_scale) (OFA's attn_scale_factor), the position bias too."""
    token_buckets: Annotated[int, Field(ge=2)] = 256
    """Text relative distances below half of this are exact; beyond, log-spaced up to max_positions."""
    image_buckets: PositiveInt = 42
    """Side of the image position grid: patch (r, c) takes position r * image_buckets + c + 1; feature maps up to
    this size per side."""
    max_positions: Annotated[int, Field(ge=3)] = 1024
    """Text positions (the table has 2 more rows, as fairseq's)."""
    codes: bool = False
    """Decoders only: the targets are image codes (OFA's text-to-image generation, code_masks everywhere): the code
    LayerNorm, image-grid positions (a start token, then a code_grid x code_grid window read row by row) and the
    2-D relative tables instead of the text ones; targets up to 1 + code_grid**2 long."""
    code_grid: PositiveInt = 16
    """Side of the code window (OFA: code_image_size 128 / 8)."""
    share: Name | None = None
    """Use every parameter of this other `ofa` stack (same role and sizes), planned before: OFA's one model run
    in another mode, e.g. a text-only encoder sharing the image encoder, an image-code decoder sharing the text
    decoder. Its parameters count once, with the owner."""
    eps: PositiveFloat = 1e-5
    dropout: Probability = 0.1
    """After the embeddings, after each sublayer (stochastic depth, training-only, is not expressed)."""
    attention_dropout: Probability = 0.0

    ref_fields: ClassVar[tuple[str, ...]] = ("cross",)

    @property
    def decoder(self) -> bool:
        return self.cross is not None

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    def planned_after(self) -> tuple[str, ...]:
        return (self.share,) if self.share else ()

    def references(self) -> dict[str, str]:
        refs = {"input": self.input}
        if self.image is not None:
            refs["image"] = self.image
        if self.cross is not None:
            refs["cross"] = self.cross.input
        return refs

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        ids = require(inputs["input"].get("ids"), "ids", 2, "token ids")
        if self.width % self.heads:
            raise CheckError(("heads",), f"width {self.width} is not divisible by heads {self.heads}")
        if self.token_buckets // 2 >= self.max_positions - 1:
            raise CheckError(("token_buckets",), f"half of token_buckets ({self.token_buckets // 2}) must stay below "
                                                 f"max_positions - 1 ({self.max_positions - 1})")
        vocab = self._vocab(ctx)
        batch, length = ids.shape
        if self.decoder and self.image is not None:
            raise CheckError(("image",), "image patches enter the encoder; remove image from the decoder stack")
        if self.codes and not self.decoder:
            raise CheckError(("codes",), "image-code targets belong to a decoder stack; set cross or remove codes")
        if self.codes and self.code_grid > self.image_buckets:
            raise CheckError(("code_grid",), f"the {self.code_grid}x{self.code_grid} code window exceeds the "
                                             f"{self.image_buckets}x{self.image_buckets} position grid")
        if self.codes and ctx.spec.modalities[self.input.split(".")[0]].max_length > 1 + self.code_grid**2:
            raise CheckError(("code_grid",), f"image-code targets are at most 1 + code_grid**2 = "
                                             f"{1 + self.code_grid**2} long; lower the max_length of "
                                             f"{self.input!r}")
        if self.image is not None:
            length = dim_sum(self._patches(inputs), length)
        if self.share is not None:
            self._owner(inputs, ctx)
        out: Bundle = {"sequence": TensorInfo((batch, length, self.width))}
        if "mask" in inputs["input"]:
            out["mask"] = TensorInfo((batch, length), inputs["input"]["mask"].dtype)
        if self.cross is not None:
            self._encoder(inputs, ctx, vocab)
            out["logits"] = TensorInfo((batch, length, vocab))
        return out

    def _vocab(self, ctx) -> int:
        modality = ctx.spec.modalities.get(self.input.split(".")[0])
        if modality is None or modality.type != "tokens":
            raise CheckError("input", f"an ofa stack reads a tokens modality; {self.input!r} is not one")
        if modality.max_length is None or modality.max_length > self.max_positions:
            raise CheckError(("max_positions",), f"the tokens of {self.input!r} may be {modality.max_length} long; "
                                                 f"give them a max_length of at most max_positions "
                                                 f"{self.max_positions}")
        return modality.vocab_size

    def _patches(self, inputs: dict[str, Bundle]) -> int:
        """h * w of the image feature map, checked against the position grid."""
        bundle = inputs["image"]
        maps = [t for t in bundle.values() if t.rank == 4]
        if len(maps) != 1:
            raise CheckError(("image",), f"image {self.image!r} must be one feature map [batch, C, h, w]; reference "
                                         f"its field, e.g. '{self.image.split('.')[0]}.features'")
        _, channels, h, w = maps[0].shape
        if not all(isinstance(d, int) for d in (channels, h, w)):
            raise CheckError(("image",), f"the feature map of {self.image!r} needs fixed C, h, w; it has "
                                         f"{list(maps[0].shape)}")
        if max(h, w) > self.image_buckets:
            raise CheckError(("image_buckets",), f"the {h}x{w} feature map of {self.image!r} exceeds the "
                                                 f"{self.image_buckets}x{self.image_buckets} position grid; raise "
                                                 f"image_buckets or use smaller images")
        return h * w

    def _owner(self, inputs: dict[str, Bundle], ctx) -> None:
        """`share` names another ofa stack of the same role and sizes, owning its parameters, planned before."""
        other = ctx.spec.encoders.get(self.share)
        if other is None or other.type != "ofa" or other is self or other.decoder != self.decoder:
            role = "decoder" if self.decoder else "encoder"
            owners = [n for n, e in ctx.spec.encoders.items() if e.type == "ofa" and e is not self
                      and e.decoder == self.decoder]
            raise CheckError(("share",), f"share {self.share!r} must name another ofa {role} stack; candidates: "
                                         f"{', '.join(owners) or 'none'}")
        if other.share is not None:
            raise CheckError(("share",), f"{self.share!r} shares the parameters of {other.share!r}; name the owner")
        sizes = ("width", "layers", "heads", "ffn", "activation", "normformer", "attention_scale", "token_buckets",
                 "image_buckets", "max_positions", "eps")
        differ = [f for f in sizes if getattr(self, f) != getattr(other, f)]
        if differ:
            raise CheckError((differ[0],), f"{differ[0]} {getattr(self, differ[0])!r} differs from the "
                                           f"{getattr(other, differ[0])!r} of {self.share!r}, whose parameters this "
                                           f"stack uses")
        if self._vocab(ctx) != ctx.spec.modalities[other.input.split(".")[0]].vocab_size:
            raise CheckError(("input",), f"the vocabulary of {self.input!r} differs from the one of {self.share!r}")
        if self.image is not None:
            mine = next(t for t in inputs["image"].values() if t.rank == 4).shape[1]
            theirs = None
            if other.image is not None:
                bundle = ctx.bundles.get(other.image.split(".")[0], {})
                theirs = next((t.shape[1] for t in bundle.values() if t.rank == 4), None)
            if theirs != mine:
                raise CheckError(("image",), f"this stack's feature map has {mine} channels; {self.share!r} must "
                                             f"read one of the same channels (it has {theirs})")
        if self.share not in ctx.bundles:
            raise CheckError(("share",), f"{self.share!r} could not be planned, so its parameters are not there")

    def _encoder(self, inputs: dict[str, Bundle], ctx, vocab: int) -> OFAStack:
        """The `ofa` encoder this decoder cross-attends to: same width and vocabulary, planned before."""
        name = self.cross.input.split(".")[0]
        other = ctx.spec.encoders.get(name)
        if other is None or other.type != "ofa" or other.decoder:
            raise CheckError(("cross", "input"), f"cross {self.cross.input!r} must name an ofa encoder stack")
        theirs = ctx.spec.modalities[other.input.split(".")[0]].vocab_size
        if (theirs, other.width, other.max_positions) != (vocab, self.width, self.max_positions):
            raise CheckError(("cross", "input"), f"the encoder {name!r} has vocabulary {theirs}, width {other.width} "
                                                 f"and max_positions {other.max_positions}; this decoder shares its "
                                                 f"table and positions, so needs the same, not {vocab}, {self.width}, "
                                                 f"{self.max_positions}")
        sequence_of(inputs["cross"], self.cross.input, "cross")
        return other

    def kv_layout(self, inputs: dict[str, Bundle], ctx) -> KVLayout:
        """A decoder steps with per-layer self-attention caches; cross-attention reads the encoder's precomputed
        keys/values. Text positions come from a table: past + new positions stay within max_positions."""
        if not self.decoder:
            raise CheckError(("cross",), "a KV cache serves the decoder stack (with cross); an encoder is "
                                         "bidirectional")
        batch, length, _ = self.infer(inputs, ctx)["sequence"].shape
        if not isinstance(length, str):
            raise CheckError(("input",), f"the new positions of a step need a named dynamic length axis; "
                                         f"{self.input!r} has length {length!r}")
        fld, context = sequence_of(inputs["cross"], self.cross.input, "cross")
        positions = 1 + self.code_grid**2 if self.codes else self.max_positions
        return KVLayout(self.layers, self.heads, self.head_dim, batch, length, positions, ("mask",),
                        cross_layers=tuple(range(self.layers)), context=(self.cross.input.split(".")[0], fld),
                        context_port="cross", context_length=context.shape[1])

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Parameters `build` will allocate, by formula (the decoder's token table is the encoder's; a sharing
        stack has none of its own)."""
        if self.share is not None:
            return 0
        d, h, f = self.width, self.heads, self.ffn
        norm = 2 * d
        attention = 4 * (d * d + d) + (norm + h if self.normformer else 0)
        layer = attention + norm + 2 * d * f + f + d + norm + (2 * f if self.normformer else 0)
        tokens_rel = (2 * self.token_buckets - 1) * h
        image_rel = ((2 * self.image_buckets - 1) ** 2 + 3) * h
        positions = (self.max_positions + 2) * d + norm
        image_positions = (self.image_buckets**2 + 1) * d + norm
        if self.decoder:
            layer += attention + norm
            total = self.layers * (layer + tokens_rel + image_rel) + positions + image_positions
            return total + 4 * (d * d + d) + 2 * norm + norm  # position q/k (self, cross); embedding, code norms
        total = self._vocab(ctx) * d + 2 * d + norm + self.layers * (layer + tokens_rel) + positions
        total += 2 * (d * d + d) + norm  # position q/k, final norm
        if self.image is not None:
            channels = next(t for t in inputs["image"].values() if t.rank == 4).shape[1]
            total += channels * d + d + norm + self.layers * image_rel + image_positions
        return total

    def internal_shapes(self, inputs: dict[str, Bundle], ctx) -> list[tuple]:
        return layer_shapes(self, inputs, ctx)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.ofa.module import OFADecoder, OFAEncoder

        shared = ctx.modules[self.share] if self.share else None
        if self.decoder:
            encoder = ctx.modules[self.cross.input.split(".")[0]]
            return OFADecoder(self, self._vocab(ctx), encoder, shared)
        if self.image is None:
            return OFAEncoder(self, self._vocab(ctx), None, shared)
        fld, info = next((k, t) for k, t in inputs["image"].items() if t.rank == 4)
        return OFAEncoder(self, self._vocab(ctx), (fld, *info.shape[1:]), shared)
