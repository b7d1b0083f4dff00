"""DAMSM, the Deep Attentional Multimodal Similarity Model's matching loss (Xu et al. 2018, AttnGAN; DM-GAN trains
with it too): image sub-regions attended by each word, and whole-image vs sentence cosine scores, each turned into
a symmetric cross-entropy over the batch (the matching caption of each image, the matching image of each caption)."""

from __future__ import annotations

from typing import Any, Literal

from mmspec.components.objectives.base import LOSS, Objective, Target, require_rank, tensor
from mmspec.registry import Example, register
from mmspec.spec.base import PositiveFloat, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

DAMSM_EXAMPLES = (
    Example(  # region and image features of a picture, word and sentence features of a padded caption, all in 4-d
        {"regions": {"type": "sequence", "dim": 6, "length": 5}, "picture": {"type": "vector", "dim": 7},
         "words": {"type": "sequence", "dim": 6, "length": 4}, "sentence": {"type": "vector", "dim": 5},
         "caption": {"type": "tokens", "vocab_size": 10, "length": 4, "mask": True}},
        {"regions": "r", "image": "i", "words": "w", "sentence": "s", "mask": "caption.mask", "classes": 3},
        {"heads": {"r": {"type": "mlp", "input": "regions", "dim": 4, "bias": False},
                   "i": {"type": "mlp", "input": "picture", "dim": 4},
                   "w": {"type": "mlp", "input": "words", "dim": 4}, "s": {"type": "mlp", "input": "sentence",
                                                                          "dim": 4}}},
    ),
)


@register("objectives", training_only=True, examples=DAMSM_EXAMPLES)
class DAMSM(Objective):
    """L = L_w + L_s over a batch of B images and their captions (AttnGAN's words_loss + sent_loss, labels the
    diagonal). Words: each word e_i of caption c attends to the regions v_q of image j through
    two softmaxes (s_iq = e_i . v_q normalised over the caption's words, then gamma1 * s_iq over the regions),
    giving a region context c_i; R(c, j) = log sum_i exp(gamma2 * cos(c_i, e_i)) over the caption's words;
    L_w = CE_images(gamma3 * R) + CE_captions(gamma3 * R^T). Sentences: L_s the same two cross-entropies of
    gamma3 * cos(image vector, sentence vector). `mask` (1 = word, 0 = padding) removes padded words from both
    the word softmax and the sum; without it every position is a word. With `classes`, the batch carries each
    example's class (target `classes`) and the other examples of its class are no negatives (the official
    class_ids mask); without it, no data targets."""

    type: Literal["damsm"]
    regions: Ref
    """Image sub-region features [batch, R, D] (DAMSM: Inception-v3's Mixed_6e, 17 x 17, projected to D)."""
    image: Ref
    """Whole-image vectors [batch, D] (the pooled Mixed_7c, projected to D)."""
    words: Ref
    """Word features [batch, S, D] of each image's caption."""
    sentence: Ref
    """Sentence vectors [batch, D]."""
    mask: Ref | None = None
    """The caption's padding mask [batch, S] (a tokens modality's or its encoder's `mask`); null: no padding."""
    gamma1: PositiveFloat = 4.0
    """Sharpness of the attention over the regions (AttnGAN birds: 4)."""
    gamma2: PositiveFloat = 5.0
    """Weight of the most relevant word-context pairs in R (5)."""
    gamma3: PositiveFloat = 10.0
    """Smoothing factor of the posterior over the batch (10)."""
    eps: PositiveFloat = 1e-8
    """Lower bound of the norm products in the cosines."""
    classes: PositiveInt | None = None
    """Number of classes of the examples (CUB birds: 200): pairs of one class are left out of the cross-entropies'
    negatives; null: every other example is a negative."""
    ref_fields = ("regions", "image", "words", "sentence", "mask")

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        r = require_rank(tensor(inputs, "regions", self.regions), 3, "regions", "region features [batch, R, D]",
                         self.regions)
        v = require_rank(tensor(inputs, "image", self.image), 2, "image", "image vectors [batch, D]", self.image)
        w = require_rank(tensor(inputs, "words", self.words, "sequence"), 3, "words", "word features [batch, S, D]",
                         self.words)
        s = require_rank(tensor(inputs, "sentence", self.sentence, "final"), 2, "sentence",
                         "sentence vectors [batch, D]", self.sentence)
        for field, ref, info in (("image", self.image, v), ("words", self.words, w), ("sentence", self.sentence, s)):
            if info.shape[-1] != r.shape[-1]:
                raise CheckError(field, f"{ref!r} has width {info.shape[-1]} but the regions {self.regions!r} have "
                                        f"{r.shape[-1]}; DAMSM compares them in one space")
        if self.mask is not None:
            m = require_rank(tensor(inputs, "mask", self.mask, "mask"), 2, "mask", "a padding mask [batch, S]",
                             self.mask)
            if m.shape[1] != w.shape[1] or not m.dtype.startswith("int"):
                raise CheckError("mask", f"{self.mask!r} is {m.dtype} {list(m.shape)}; the words {self.words!r} need "
                                         f"an integer mask [batch, {w.shape[1]}]")
        return LOSS

    def targets(self, inputs: dict[str, Bundle], spec: Any) -> dict[str, Target]:
        if self.classes is None:
            return {}
        batch = tensor(inputs, "sentence", self.sentence, "final").shape[0]
        return {"classes": Target(TensorInfo((batch,), "int64"), "classes", self.classes)}

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.damsm.loss import DAMSMLoss

        fields = {"words": "sequence", "sentence": "final", "mask": "mask"}
        picked = {p: f if f in inputs[p] else next(iter(inputs[p])) for p, f in fields.items() if p in inputs}
        return DAMSMLoss(self.gamma1, self.gamma2, self.gamma3, self.eps, picked)


