"""Transformer encoder over tokens, image patches or detector regions (BERT, ViT, CLIP towers, ViLBERT streams)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.components._common import PoolConfig, StackConfig, pooled_width, require
from mmspec.registry import register
from mmspec.spec._base import ComponentConfig, PositiveInt, Ref, StrictModel
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo


class TokensEmbed(StrictModel):
    """word + learned position (+ segment) embeddings, then LayerNorm (BERT) or not (CLIP text)."""

    type: Literal["tokens"]
    positions: PositiveInt = 512
    """Size of the learned position table; must cover the modality's max_length."""
    segments: Annotated[int, Field(ge=0)] = 0
    """Segment (token-type) table size; BERT has 2 even when no segment ids are fed."""
    norm: bool = True


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


@register("encoders", notes="layers may be 0 (embeddings only, e.g. streams that a fusion continues)")
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
            if longest > self.embed.positions:
                raise CheckError(
                    ("embed", "positions"),
                    f"embed.positions {self.embed.positions} is shorter than the input's length "
                    f"{longest} (modality {self.input!r} max_length); raise positions or lower max_length",
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
        out: Bundle = {"sequence": TensorInfo((batch, length, self.width))}
        if "mask" in bundle:
            out["mask"] = bundle["mask"]
        if self.pool:
            out["pooled"] = TensorInfo((batch, pooled_width(self.pool, self.width)))
        return out

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.layers.transformer_encoder import TransformerEncoderModule

        return TransformerEncoderModule(self, inputs["input"], ctx.spec.modalities[self.input.split(".")[0]])
