"""Training objectives over head outputs. Training-only: never part of an exported graph.

Each objective's module maps (input bundles, targets) -> scalar loss; the weighted sum of a
spec's objectives is the training loss. The other objective families are in the files beside this one.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from mmspec.components.examples import REGIONS, TEXT, text_encoder
from mmspec.components.objectives.base import LOSS, Objective, Target, input_names, pick_modality
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, Name, PositiveFloat, Probability, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_TEXT_ENCODER = text_encoder()
CROSS_ENTROPY_EXAMPLES = (
    Example(
        {"x": {"type": "vector", "dim": 6}},
        {"input": "cls"},
        {"heads": {"cls": {"type": "classifier", "input": "x", "num_classes": 3}}},
        name="linear",
    ),
    Example(
        {"text": TEXT},
        {"input": "cls", "label_smoothing": 0.1},
        {
            "encoders": {"enc": _TEXT_ENCODER},
            "heads": {"cls": {"type": "classifier", "input": "enc.pooled", "num_classes": 2, "hidden": [8]}},
        },
        name="smoothed",
    ),
    Example(  # Vokenization's voken classification: one class id per token
        {"text": TEXT},
        {"input": "vokens"},
        {
            "encoders": {"enc": _TEXT_ENCODER},
            "heads": {"vokens": {"type": "token_classifier", "input": "enc.sequence", "num_classes": 7}},
        },
        name="per_token",
    ),
)
ALIGNMENT_EXAMPLES = (
    Example(  # ITM: mismatched pairs get another example's image vector
        {"text": TEXT, "image": {"type": "vector", "dim": 6}},
        {"input": "itm", "shuffle": "image", "negative_prob": 0.5},
        {
            "encoders": {"enc": _TEXT_ENCODER},
            "fusion": {"pair": {"type": "concat", "inputs": ["enc.pooled", "image"]}},
            "heads": {"itm": {"type": "classifier", "input": "pair.fused", "num_classes": 2}},
        },
    ),
)
MASKED_LM_EXAMPLES = (
    Example(  # BERT: tied output embedding, 80/10/10 masking that never picks padding
        {"text": TEXT},
        {"input": "lm", "mask_prob": 0.3, "mask_token": 3},
        {
            "encoders": {"enc": _TEXT_ENCODER},
            "heads": {"lm": {"type": "token_classifier", "input": "enc.sequence", "tie_to": "enc"}},
        },
        name="tied",
    ),
    Example(  # every chosen position becomes mask_token; the modality named explicitly
        {"text": TEXT},
        {"input": "lm", "tokens": "text", "mask_prob": 0.5, "mask_token": 1, "random_prob": 0.0, "keep_prob": 0.0},
        {
            "encoders": {"enc": _TEXT_ENCODER},
            "heads": {"lm": {"type": "token_classifier", "input": "enc.sequence", "num_classes": 40,
                             "transform": False}},
        },
        name="all_masked",
    ),
)
MASKED_REGION_KL_EXAMPLES = (
    Example(
        {"regions": REGIONS},
        {"input": "classes", "mask_prob": 0.5, "zero_prob": 0.9},
        {
            "encoders": {
                "enc": {"type": "transformer", "input": "regions", "embed": {"type": "regions"}, "width": 8,
                        "layers": 1, "heads": 2, "ffn": 16}
            },
            "heads": {"classes": {"type": "token_classifier", "input": "enc.sequence", "num_classes": 5}},
        },
    ),
)
_TOWERS = {
    "pa": {"type": "projection", "input": "a", "dim": 4},
    "pb": {"type": "projection", "input": "b", "dim": 4},
    "clip": {"type": "contrastive", "inputs": {"image": "pa", "text": "pb"}},
}
SYMMETRIC_INFONCE_EXAMPLES = (
    Example(
        {"a": {"type": "vector", "dim": 6}, "b": {"type": "vector", "dim": 5}},
        {"input": "clip"},
        {"heads": _TOWERS},
        name="clip",
    ),
    Example(  # the initial temperature 1/0.07 exceeds max_scale: clamped after the first step
        {"a": {"type": "vector", "dim": 6}, "b": {"type": "vector", "dim": 5}},
        {"input": "clip", "max_scale": 5.0},
        {"heads": _TOWERS},
        name="clamped",
    ),
    Example(  # ALIGN: the head divides by a learned temperature; smoothed labels
        {"a": {"type": "vector", "dim": 6}, "b": {"type": "vector", "dim": 5}},
        {"input": "clip", "max_scale": None, "label_smoothing": 0.1},
        {"heads": {**_TOWERS, "clip": {**_TOWERS["clip"], "temperature": 1.0}}},
        name="align",
    ),
)


class _HeadObjective(Objective):
    """An objective on one head's output; subclasses say which head outputs they need and build the loss."""

    input: Ref
    logits_rank: ClassVar[int | None] = None
    """Rank of the head's `logits` the loss needs (None: checked by the subclass)."""
    logits_kind: ClassVar[str] = ""

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        node = self.input.split(".")[0]
        if node not in ctx.spec.heads:
            raise CheckError("input", f"objective input {self.input!r} must be a head (objectives train heads)")
        self.check_head(ctx.spec.heads[node], inputs["input"])
        self.check_more(inputs, ctx)
        return LOSS

    def check_more(self, inputs: dict[str, Bundle], ctx) -> None:
        """Rules beyond the head's logits (which modality to mask, ...)."""

    def check_head(self, head: ComponentConfig, bundle: Bundle) -> None:
        logits = bundle.get("logits")
        if logits is None or logits.rank != self.logits_rank:
            raise CheckError(
                "input",
                f"{self.type} needs {self.logits_kind} `logits` of rank {self.logits_rank} from head "  # type: ignore[attr-defined]
                f"{self.input!r}, which emits {sorted(bundle)}",
            )


@register("objectives", training_only=True, examples=CROSS_ENTROPY_EXAMPLES)
class CrossEntropy(_HeadObjective):
    """Cross-entropy on per-example logits [batch, C] (NSP, classification) or per-token logits [batch, S, C]
    (Vokenization's voken classification) against data labels.

    Batch target `labels` [batch] or [batch, S], class ids; -100 marks a position without a label."""

    type: Literal["cross_entropy"]
    label_smoothing: Probability = 0.0

    def check_head(self, head: ComponentConfig, bundle: Bundle) -> None:
        logits = bundle.get("logits")
        if logits is None or logits.rank not in (2, 3):
            raise CheckError(
                "input",
                f"cross_entropy needs per-example `logits` [batch, C] or per-token `logits` [batch, S, C] from "
                f"head {self.input!r}, which emits {sorted(bundle)}",
            )

    def targets(self, inputs: dict[str, Bundle], spec: Any) -> dict[str, Target]:
        logits = inputs["input"]["logits"]
        return {"labels": Target(TensorInfo(logits.shape[:-1], "int64"), "classes", int(logits.shape[-1]))}

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.supervised.loss import CrossEntropyLoss

        return CrossEntropyLoss(self.label_smoothing)


@register("objectives", training_only=True, examples=ALIGNMENT_EXAMPLES)
class Alignment(_HeadObjective):
    """Image-text alignment / ITM (ViLBERT, LXMERT): mismatched pairs are made by giving a `negative_prob`
    fraction of examples another example's `shuffle` modality; cross-entropy on logits [batch, 2], 1 = matched."""

    type: Literal["alignment"]
    shuffle: Name
    """The modality whose rows are swapped to make negatives (e.g. the image regions)."""
    negative_prob: Probability = 0.5
    """Fraction of examples made mismatched."""
    logits_rank: ClassVar[int] = 2
    logits_kind: ClassVar[str] = "per-example"

    def check_more(self, inputs: dict[str, Bundle], ctx) -> None:
        kinds = ("tokens", "image", "regions", "sequence", "vector")
        pick_modality(ctx.spec, self.shuffle, self.input, kinds, "shuffle", "shuffle")
        if inputs["input"]["logits"].shape[1] != 2:
            raise CheckError("input", f"alignment needs 2 classes (mismatched, matched) from {self.input!r}")

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.supervised.loss import Alignment as Module

        return Module(list(input_names(ctx.spec, self.shuffle).values()), self.negative_prob)


@register("objectives", training_only=True, examples=MASKED_LM_EXAMPLES)
class MaskedLM(_HeadObjective):
    """Masked language modelling: cross-entropy at the masked positions of per-token logits [batch, S, V]
    (BERT: 15 % of tokens; of those 80 % [MASK], 10 % random, 10 % kept)."""

    type: Literal["masked_lm"]
    mask_prob: Probability = 0.15
    """Fraction of the (unpadded) tokens chosen for prediction."""
    mask_token: Annotated[int, Field(ge=0)] = 103
    """Id written at masked positions (BERT's [MASK] is 103)."""
    random_prob: Probability = 0.1
    """Fraction of the chosen positions that get a random id instead."""
    keep_prob: Probability = 0.1
    """Fraction of the chosen positions left unchanged."""
    tokens: Name | None = None
    """The tokens modality to mask; default: the only one the head reads. Padding (mask 0) is never chosen."""
    logits_rank: ClassVar[int] = 3
    logits_kind: ClassVar[str] = "per-token"

    def check_more(self, inputs: dict[str, Bundle], ctx) -> None:
        name = pick_modality(ctx.spec, self.tokens, self.input, ("tokens",), "tokens", "mask")
        vocab = ctx.spec.modalities[name].vocab_size
        if self.mask_token >= vocab:
            raise CheckError("mask_token", f"mask_token {self.mask_token} is not below the vocab_size {vocab} "
                                           f"of {name!r}")
        if self.random_prob + self.keep_prob > 1:
            raise CheckError("keep_prob", "random_prob + keep_prob must be at most 1")
        logits, ids = inputs["input"]["logits"], ctx.bundles[name]["ids"]
        if logits.shape[:2] != ids.shape or logits.width != vocab:
            raise CheckError("input", f"masked_lm needs logits [batch, S, vocab] = {[*ids.shape, vocab]} over the "
                                      f"tokens of {name!r}, but {self.input!r} has {list(logits.shape)}; predict "
                                      f"the tokens' positions over their vocabulary (e.g. `tie_to` their encoder)")

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.supervised.loss import MaskedLM as Module

        name = pick_modality(ctx.spec, self.tokens, self.input, ("tokens",), "tokens", "mask")
        names = input_names(ctx.spec, name)
        return Module(names["ids"], names.get("mask"), self.mask_prob, self.mask_token,
                      ctx.spec.modalities[name].vocab_size, self.random_prob, self.keep_prob)


@register("objectives", training_only=True, examples=MASKED_REGION_KL_EXAMPLES)
class MaskedRegionKL(_HeadObjective):
    """KL(detector class distribution || predicted distribution) at masked regions (ViLBERT): `mask_prob` of
    the regions are chosen, `zero_prob` of those get zero features.

    Batch target `distribution` [batch, regions, C], the detector's class probabilities."""

    type: Literal["masked_region_kl"]
    mask_prob: Probability = 0.15
    """Fraction of the regions chosen for prediction."""
    zero_prob: Annotated[float, Field(ge=0.0, le=1.0)] = 0.9
    """Fraction of the chosen regions whose features are zeroed (the rest stay)."""
    regions: Name | None = None
    """The regions modality to mask; default: the only one the head reads."""
    logits_rank: ClassVar[int] = 3
    logits_kind: ClassVar[str] = "per-region"

    def check_more(self, inputs: dict[str, Bundle], ctx) -> None:
        pick_modality(ctx.spec, self.regions, self.input, ("regions",), "regions", "mask")

    def targets(self, inputs: dict[str, Bundle], spec: Any) -> dict[str, Target]:
        return {"distribution": Target(inputs["input"]["logits"], "simplex")}

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.supervised.loss import MaskedRegionKL as Module

        names = input_names(ctx.spec, pick_modality(ctx.spec, self.regions, self.input, ("regions",), "regions",
                                                    "mask"))
        return Module(names["features"], names.get("mask"), self.mask_prob, self.zero_prob)


@register("objectives", training_only=True, examples=SYMMETRIC_INFONCE_EXAMPLES)
class SymmetricInfoNCE(_HeadObjective):
    """CLIP's symmetric InfoNCE: mean of the cross-entropies of both logit matrices against the diagonal,
    with in-batch negatives from every process and the head's learnable temperature, clamped after each step
    so that exp(logit_scale) <= max_scale (CLIP: 100); ALIGN's head divides by its learned temperature instead."""

    type: Literal["symmetric_infonce"]
    max_scale: PositiveFloat | None = 100.0
    """Upper bound of the learned inverse temperature (exp(logit_scale), or 1 / temperature with the head's
    `temperature`); null: unclamped."""
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    """Label smoothing of both cross-entropies (ALIGN: 0.1)."""

    def check_head(self, head: ComponentConfig, bundle: Bundle) -> None:
        if head.type != "contrastive":  # type: ignore[attr-defined]
            raise CheckError("input", f"symmetric_infonce needs a `contrastive` head; {self.input!r} is not one")

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.supervised.loss import SymmetricInfoNCE as Module

        head = self.input.split(".")[0]
        a, b = ctx.spec.heads[head].inputs
        module = ctx.modules[head]
        divide = ctx.spec.heads[head].temperature is not None
        scale = module.temperature if divide else module.logit_scale
        fixed = not ctx.spec.heads[head].learn_temperature  # a constant: nothing to clamp
        return Module(a, b, scale, None if fixed else self.max_scale, divide, self.label_smoothing)
