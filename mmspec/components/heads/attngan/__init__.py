"""AttnGAN's attentional generative network (Xu et al. 2018) and DM-GAN's dynamic-memory refinement (Zhu et al.
2019): an initial stage from noise and the conditioning-augmented sentence code, then refinement stages that read
the previous stage's hidden features and the word features; every stage emits its hidden `features` and an
`image`. Networks are composed from `mmspec.blocks.attngan`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmspec.components.common import require_float, sequence_of
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_INPUTS = {"noise": {"type": "vector", "dim": 4}, "sentence": {"type": "vector", "dim": 6},
           "words": {"type": "sequence", "dim": 6, "length": 3}}
_CA = {"ca": {"type": "conditioning_augmentation", "input": "sentence", "dim": 3, "activation": "glu"}}
_INIT = {"s1": {"type": "attngan_init_stage", "input": "noise", "condition": "ca.code", "widths": [8, 4, 4]}}
INIT_EXAMPLES = (Example(_INPUTS, {"input": "noise", "condition": "ca.code", "widths": [8, 4, 4]}, {"heads": _CA}),)
STAGE_EXAMPLES = (
    Example(_INPUTS, {"input": "s1.features", "words": "words", "blocks": 1}, {"heads": {**_CA, **_INIT}},
            name="attention"),
    Example(_INPUTS, {"input": "s1.features", "words": "words", "blocks": 2, "refine": "memory"},
            {"heads": {**_CA, **_INIT}}, name="memory"),
    Example({**_INPUTS, "caption": {"type": "tokens", "vocab_size": 9, "length": 3, "mask": True}},
            {"input": "s1.features", "words": "words", "mask": "caption.mask", "blocks": 1},
            {"heads": {**_CA, **_INIT}}, name="masked_words"),
)


def _glu_conv(cin: int, cout: int) -> int:
    """3x3 conv (no bias) to 2 * cout and its BatchNorm."""
    return cin * 2 * cout * 9 + 2 * 2 * cout


def _vector(bundle: Bundle, ref: str, field: str) -> TensorInfo:
    x = require_float(next(iter(bundle.values())), ref, field)
    if x.rank != 2 or not isinstance(x.width, int):
        raise CheckError(field, f"{ref!r} has shape {list(x.shape)}; a vector [batch, D] is needed")
    return x


@register("heads", examples=INIT_EXAMPLES)
class AttnGANInitStageConfig(ComponentConfig):
    """AttnGAN's first stage F_0: [condition code, noise] -> Linear (no bias), BatchNorm, GLU -> widths[0] x 4 x 4;
    per further width nearest x2, 3x3 conv to twice the width, BatchNorm, GLU -> `features` [batch, widths[-1], S,
    S], S = 4 * 2^(len(widths) - 1); a 3x3 conv and tanh -> `image` [batch, channels, S, S]."""

    type: Literal["attngan_init_stage"]
    input: Ref
    """The noise vector [batch, nz]."""
    condition: Ref
    """The conditioning augmentation's `code` [batch, c]."""
    widths: list[PositiveInt] = Field(default=[512, 256, 128, 64, 32], min_length=1)
    """Channels of the 4x4 map and of each up-block after it (AttnGAN: 16, 8, 4, 2, 1 times GF_DIM)."""
    channels: PositiveInt = 3
    """Image channels."""

    def references(self) -> dict[str, str]:
        return {"input": self.input, "condition": self.condition}

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        z = _vector(inputs["input"], self.input, "input")
        _vector(inputs["condition"], self.condition, "condition")
        side = 4 * 2 ** (len(self.widths) - 1)
        return {"features": z.with_shape(z.shape[0], self.widths[-1], side, side),
                "image": z.with_shape(z.shape[0], self.channels, side, side)}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        nz = _vector(inputs["input"], self.input, "input").width + _vector(
            inputs["condition"], self.condition, "condition").width
        total = nz * 32 * self.widths[0] + 2 * 32 * self.widths[0]
        total += sum(_glu_conv(a, b) for a, b in zip(self.widths, self.widths[1:], strict=False))
        return total + self.widths[-1] * self.channels * 9

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.blocks.attngan import InitStage
        from mmspec.components.heads.attngan.module import InitStageModule

        z = _vector(inputs["input"], self.input, "input").width
        c = _vector(inputs["condition"], self.condition, "condition").width
        return InitStageModule(InitStage(z, c, self.widths), self.widths[-1], self.channels)


@register("heads", examples=STAGE_EXAMPLES)
class AttnGANStageConfig(ComponentConfig):
    """A refinement stage F_i on the previous stage's `features` [batch, C, h, w] and the `words` [batch, S, E]:
    `refine: attention` (AttnGAN) projects the words to C by a 1x1 conv (no bias) and gives every sub-region the
    softmax-weighted sum of them (h_j . e_i), concatenated with the features; `refine: memory` (DM-GAN) writes a
    memory slot per word through the writing gate sigmoid(A w_i + B mean(h)) mixing ReLU(M_w w_i) and ReLU(M_r
    mean(h)), reads it per pixel through key and value 1x1 convs + ReLU, blends the read-out into the features by
    the response gate sigmoid(1x1 conv [h, o]) and duplicates the result. Then `blocks` GLU residual blocks at 2C
    and a GLU up-block back to C -> `features` [batch, C, 2h, 2w]; a 3x3 conv and tanh -> `image`; `attention`
    [batch, S, h, w] (the word weights of every sub-region). With `mask`, padded words get no weight in either
    attention (the official applyMask)."""

    type: Literal["attngan_stage"]
    input: Ref
    """The previous stage's `features` [batch, C, h, w]."""
    words: Ref
    """Word features [batch, S, E] (the text encoder's `sequence`)."""
    mask: Ref | None = None
    """The words' padding mask [batch, S] (1 = word; the text encoder's `mask`); null: every position is a word."""
    blocks: PositiveInt = 2
    """GLU residual blocks (R_NUM)."""
    refine: Literal["attention", "memory"] = "attention"
    """attention: AttnGAN's word-context attention; memory: DM-GAN's dynamic memory with its gates."""
    channels: PositiveInt = 3
    """Image channels."""

    def references(self) -> dict[str, str]:
        return {"input": self.input, "words": self.words, **({"mask": self.mask} if self.mask else {})}

    def _shapes(self, inputs: dict[str, Bundle]) -> tuple[TensorInfo, TensorInfo]:
        bundle = inputs["input"]
        h = require_float(bundle["features"] if "features" in bundle else next(iter(bundle.values())), self.input,
                          "input")
        if h.rank != 4 or not all(isinstance(d, int) for d in h.shape[1:]):
            raise CheckError("input", f"{self.input!r} has shape {list(h.shape)}; features [batch, C, h, w] of "
                                      f"fixed size are needed")
        _, words = sequence_of(inputs["words"], self.words, "words")
        if self.mask is not None:
            given = inputs["mask"]
            mask = given["mask"] if "mask" in given else next(iter(given.values())) if len(given) == 1 else None
            if mask is None or mask.shape != words.shape[:2] or not mask.dtype.startswith("int"):
                have = {k: list(t.shape) for k, t in sorted(inputs["mask"].items())}
                raise CheckError("mask", f"{self.mask!r} has {have}; an integer mask [batch, {words.shape[1]}] over "
                                         f"the words {self.words!r} is needed")
        return h, words

    def _field(self, inputs: dict[str, Bundle]) -> str:
        return sequence_of(inputs["words"], self.words, "words")[0]

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        h, words = self._shapes(inputs)
        b, c, hh, ww = h.shape
        return {"features": h.with_shape(b, c, 2 * hh, 2 * ww), "image": h.with_shape(b, self.channels, 2 * hh, 2 * ww),
                "attention": h.with_shape(b, words.shape[1], hh, ww)}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        h, words = self._shapes(inputs)
        c, e = h.shape[1], words.width
        if self.refine == "attention":
            refine = e * c
        else:
            refine = e + c + (e * 2 * c + 2 * c) + (c * 2 * c + 2 * c) + 2 * (2 * c * c + c) + (2 * c + 1)
        block = _glu_conv(2 * c, 2 * c) + 2 * c * 2 * c * 9 + 2 * 2 * c
        return refine + self.blocks * block + _glu_conv(2 * c, c) + c * self.channels * 9

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.blocks.attngan import NextStage
        from mmspec.components.heads.attngan.module import StageModule

        h, words = self._shapes(inputs)
        return StageModule(NextStage(h.shape[1], words.width, self.blocks, self.refine == "memory"), h.shape[1],
                           self.channels, self._field(inputs))
