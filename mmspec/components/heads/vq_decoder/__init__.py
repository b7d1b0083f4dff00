"""Image-token decoders: VQ-VAE / dVAE decoders that turn a grid of codebook ids into pixels (the second stage
of DALL-E-style text-to-image models, whose prior samples the ids)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_IDS = {"type": "tokens", "vocab_size": 12, "length": 6}
VQ_DECODER_EXAMPLES = (
    Example(
        {"codes": _IDS},
        {"input": "codes", "codebook": 12, "dim": 4, "grid": [2, 3], "widths": [8, 4], "blocks": 1, "groups": 2},
        name="two_stages",
    ),
    Example(
        {"codes": {**_IDS, "length": 4, "mask": True}},
        {"input": "codes.ids", "codebook": 12, "dim": 3, "grid": [2, 2], "widths": [4], "blocks": 2, "groups": 2,
         "channels": 1},
        name="one_stage",
    ),
)


def _ids(bundle: Bundle, ref: str) -> TensorInfo:
    """The int64 ids [batch, L] that `ref` provides: a tokens modality's `ids`, or its one tensor."""
    if "ids" in bundle:
        ids = bundle["ids"]
    elif len(bundle) == 1:
        ids = next(iter(bundle.values()))
    else:
        raise CheckError("input", f"{ref!r} emits {sorted(bundle)}; reference the code ids, e.g. "
                                  f"'{ref}.{sorted(bundle)[0]}'")
    if ids.dtype != "int64" or ids.rank != 2:
        raise CheckError("input", f"{ref!r} has {ids.dtype} {list(ids.shape)}; the decoder needs int64 code ids "
                                  f"[batch, h*w] (a tokens modality without `count`, or a node's ids)")
    return ids


def _resnet_block(cin: int, cout: int) -> int:
    """blocks.conv.ResnetBlock without a time embedding: two GroupNorms, two 3x3 convs, a 1x1 shortcut on change."""
    return 2 * cin + _conv(cin, cout, 3) + 2 * cout + _conv(cout, cout, 3) + (_conv(cin, cout, 1) if cin != cout else 0)


def _conv(cin: int, cout: int, kernel: int) -> int:
    return cin * cout * kernel * kernel + cout


@register("heads", examples=VQ_DECODER_EXAMPLES)
class VQDecoder(ComponentConfig):
    """VQ-VAE / dVAE decoder: code ids [batch, h*w] -> `pixels` [batch, channels, h*2^(S-1), w*2^(S-1)].

    The ids index a `codebook` x `dim` embedding, laid out row-major on the `grid` [h, w] -> [batch, dim, h, w];
    then a 3x3 conv to widths[0], and per stage `blocks` ResNet blocks (GroupNorm + SiLU, DDPM style) followed,
    between stages, by a 2x nearest upsample + 3x3 conv; GroupNorm + SiLU + 3x3 conv to `channels` last. With a
    tokens modality as input, its `vocab_size` must be `codebook` and its `length` the fixed h*w."""

    type: Literal["vq_decoder"]
    input: Ref
    codebook: PositiveInt
    """K: the number of codes (ids are in [0, K))."""
    dim: PositiveInt
    """D: the width of a codebook vector."""
    grid: Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]
    """[h, w]: the code grid; code i sits at row i // w, column i % w."""
    widths: Annotated[list[PositiveInt], Field(min_length=1)] = [128, 64]
    """Channels of each stage, one 2x upsample between consecutive stages."""
    blocks: PositiveInt = 1
    """ResNet blocks per stage."""
    channels: PositiveInt = 3
    """Image channels of `pixels`."""
    groups: PositiveInt = 32
    """GroupNorm groups; must divide every width."""
    eps: PositiveFloat = 1e-6

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        ids = _ids(inputs["input"], self.input)
        h, w = self.grid
        root = self.input.split(".")[0]
        modality = ctx.spec.modalities.get(root)
        if modality is not None and modality.type == "tokens" and modality.vocab_size != self.codebook:
            raise CheckError("codebook", f"codebook {self.codebook} differs from the vocab_size "
                                         f"{modality.vocab_size} of {root!r}; the ids index the codebook")
        if ids.shape[1] != h * w:
            raise CheckError("grid", f"grid {h}x{w} holds {h * w} codes but {self.input!r} has length "
                                     f"{ids.shape[1]!r}; give the ids the fixed length {h * w}")
        for i, width in enumerate(self.widths):
            if width % self.groups:
                raise CheckError(("widths", i), f"width {width} is not divisible by groups {self.groups} (GroupNorm)")
        scale = 2 ** (len(self.widths) - 1)
        return {"pixels": TensorInfo((ids.shape[0], self.channels, h * scale, w * scale))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Codebook, conv in, the stages' blocks and upsample convs, GroupNorm and conv out, by formula."""
        total = self.codebook * self.dim + _conv(self.dim, self.widths[0], 3)
        cin = self.widths[0]
        for i, width in enumerate(self.widths):
            total += sum(_resnet_block(cin if j == 0 else width, width) for j in range(self.blocks))
            total += _conv(width, width, 3) if i < len(self.widths) - 1 else 0
            cin = width
        return total + 2 * cin + _conv(cin, self.channels, 3)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.vq_decoder.module import VQDecoderModule

        field = "ids" if "ids" in inputs["input"] else next(iter(inputs["input"]))
        return VQDecoderModule(field, self.codebook, self.dim, tuple(self.grid), self.widths, self.blocks,
                               self.channels, self.groups, self.eps)
