"""Training objectives over head outputs. Training-only: never part of an exported graph.

Each objective's module maps (head output bundle, targets) -> scalar loss; the weighted sum of a
spec's objectives is the training loss.
"""

from __future__ import annotations

from typing import Literal

from mmspec.registry import register
from mmspec.spec._base import ComponentConfig, PositiveFloat, Probability, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_SCALAR = {"loss": TensorInfo(())}


def _head_logits(cfg: ComponentConfig, inputs: dict[str, Bundle], ctx, rank: int, what: str) -> TensorInfo:
    node = cfg.input.split(".")[0]
    if node not in ctx.spec.heads:
        raise CheckError("input", f"objective input {cfg.input!r} must be a head (objectives train heads)")
    logits = inputs["input"].get("logits")
    if logits is None or logits.rank != rank:
        raise CheckError(
            "input",
            f"{cfg.type} needs {what} `logits` of rank {rank} from head {node!r}, "
            f"which emits {sorted(inputs['input'])}",
        )
    return logits


@register("objectives", training_only=True)
class CrossEntropy(ComponentConfig):
    """Cross-entropy on per-example logits [batch, C] (NSP, ITM alignment, classification)."""

    type: Literal["cross_entropy"]
    input: Ref
    weight: PositiveFloat = 1.0
    label_smoothing: Probability = 0.0

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        _head_logits(self, inputs, ctx, 2, "per-example")
        return _SCALAR

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.layers.losses import CrossEntropyLoss

        return CrossEntropyLoss(self.label_smoothing)


@register("objectives", training_only=True)
class MaskedLM(ComponentConfig):
    """Masked language modelling: cross-entropy at the masked positions of per-token logits [batch, S, V]
    (BERT: 15 % of tokens; of those 80 % [MASK], 10 % random, 10 % kept)."""

    type: Literal["masked_lm"]
    input: Ref
    weight: PositiveFloat = 1.0
    mask_prob: Probability = 0.15

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        _head_logits(self, inputs, ctx, 3, "per-token")
        return _SCALAR

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.layers.losses import MaskedCrossEntropyLoss

        return MaskedCrossEntropyLoss()


@register("objectives", training_only=True)
class MaskedRegionKL(ComponentConfig):
    """KL(detector class distribution || predicted distribution) at masked regions (ViLBERT)."""

    type: Literal["masked_region_kl"]
    input: Ref
    weight: PositiveFloat = 1.0
    mask_prob: Probability = 0.15

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        _head_logits(self, inputs, ctx, 3, "per-region")
        return _SCALAR

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.layers.losses import MaskedKLLoss

        return MaskedKLLoss()


@register("objectives", training_only=True)
class SymmetricInfoNCE(ComponentConfig):
    """CLIP's symmetric InfoNCE: mean of the cross-entropies of both logit matrices against the diagonal."""

    type: Literal["symmetric_infonce"]
    input: Ref
    weight: PositiveFloat = 1.0

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        node = self.input.split(".")[0]
        head = ctx.spec.heads.get(node)
        if head is None or head.type != "contrastive":
            raise CheckError("input", f"symmetric_infonce needs a `contrastive` head; {self.input!r} is not one")
        return _SCALAR

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.layers.losses import SymmetricInfoNCELoss

        return SymmetricInfoNCELoss()
