"""Training objectives over head outputs. Training-only: never part of an exported graph.

Each objective's module maps (head output bundle, targets) -> scalar loss; the weighted sum of a
spec's objectives is the training loss.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from mmspec.registry import register
from mmspec.spec._base import ComponentConfig, PositiveFloat, Probability, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo


class _HeadObjective(ComponentConfig):
    """An objective on one head's output; subclasses say which head outputs they need and build the loss."""

    input: Ref
    weight: PositiveFloat = 1.0
    logits_rank: ClassVar[int | None] = None
    """Rank of the head's `logits` the loss needs (None: checked by the subclass)."""
    logits_kind: ClassVar[str] = ""

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        node = self.input.split(".")[0]
        if node not in ctx.spec.heads:
            raise CheckError("input", f"objective input {self.input!r} must be a head (objectives train heads)")
        self.check_head(ctx.spec.heads[node], inputs["input"])
        return {"loss": TensorInfo(())}

    def check_head(self, head: ComponentConfig, bundle: Bundle) -> None:
        logits = bundle.get("logits")
        if logits is None or logits.rank != self.logits_rank:
            raise CheckError(
                "input",
                f"{self.type} needs {self.logits_kind} `logits` of rank {self.logits_rank} from head "  # type: ignore[attr-defined]
                f"{self.input!r}, which emits {sorted(bundle)}",
            )

    def build(self, inputs: dict[str, Bundle], ctx):
        return self.loss()

    def loss(self):
        raise NotImplementedError


@register("objectives", training_only=True)
class CrossEntropy(_HeadObjective):
    """Cross-entropy on per-example logits [batch, C] (NSP, ITM alignment, classification)."""

    type: Literal["cross_entropy"]
    label_smoothing: Probability = 0.0
    logits_rank: ClassVar[int] = 2
    logits_kind: ClassVar[str] = "per-example"

    def loss(self):
        from mmspec.layers.losses import CrossEntropyLoss

        return CrossEntropyLoss(self.label_smoothing)


@register("objectives", training_only=True)
class MaskedLM(_HeadObjective):
    """Masked language modelling: cross-entropy at the masked positions of per-token logits [batch, S, V]
    (BERT: 15 % of tokens; of those 80 % [MASK], 10 % random, 10 % kept)."""

    type: Literal["masked_lm"]
    mask_prob: Probability = 0.15
    logits_rank: ClassVar[int] = 3
    logits_kind: ClassVar[str] = "per-token"

    def loss(self):
        from mmspec.layers.losses import MaskedCrossEntropyLoss

        return MaskedCrossEntropyLoss()


@register("objectives", training_only=True)
class MaskedRegionKL(_HeadObjective):
    """KL(detector class distribution || predicted distribution) at masked regions (ViLBERT)."""

    type: Literal["masked_region_kl"]
    mask_prob: Probability = 0.15
    logits_rank: ClassVar[int] = 3
    logits_kind: ClassVar[str] = "per-region"

    def loss(self):
        from mmspec.layers.losses import MaskedKLLoss

        return MaskedKLLoss()


@register("objectives", training_only=True)
class SymmetricInfoNCE(_HeadObjective):
    """CLIP's symmetric InfoNCE: mean of the cross-entropies of both logit matrices against the diagonal."""

    type: Literal["symmetric_infonce"]

    def check_head(self, head: ComponentConfig, bundle: Bundle) -> None:
        if head.type != "contrastive":  # type: ignore[attr-defined]
            raise CheckError("input", f"symmetric_infonce needs a `contrastive` head; {self.input!r} is not one")

    def loss(self):
        from mmspec.layers.losses import SymmetricInfoNCELoss

        return SymmetricInfoNCELoss()
