"""LIMoE's entropy auxiliary losses on one modality's router probabilities (training-only)."""

from __future__ import annotations

from typing import Literal

from mmspec.components.objectives.base import LOSS, Objective, require_rank, tensor
from mmspec.registry import Example, register
from mmspec.spec.base import PositiveFloat, Ref
from mmspec.spec.tensors import Bundle

_MOE_STACK = {"type": "transformer", "input": "text", "embed": {"type": "tokens", "positions": 8}, "width": 8,
              "layers": 2, "heads": 2, "ffn": 16, "norm": "pre", "moe": {"experts": 4, "top_k": 1, "every": 2}}
_TEXT = {"text": {"type": "tokens", "vocab_size": 20, "length": "seq", "max_length": 8}}
MOE_ENTROPY_EXAMPLES = (
    Example(_TEXT, {"input": "tower.router", "kind": "local"}, {"encoders": {"tower": _MOE_STACK}},
            outputs=["tower.sequence"], name="local"),
    Example(_TEXT, {"input": "tower.router", "kind": "global", "threshold": 0.5}, {"encoders": {"tower": _MOE_STACK}},
            outputs=["tower.sequence"], name="global_threshold"),
)


@register("objectives", training_only=True, examples=MOE_ENTROPY_EXAMPLES)
class MoEEntropy(Objective):
    """Entropy losses on router logits [..., experts] of one modality (Mustafa et al. 2022, LIMoE): `local`, the
    mean over tokens of the entropy of each token's routing distribution (minimised: each token commits to few
    experts); `global`, minus the entropy of the mean routing distribution (minimised: the modality uses many
    experts), with `threshold` t as max(0, t - H(mean)): no pressure once the entropy exceeds t."""

    type: Literal["moe_entropy"]
    input: Ref
    kind: Literal["local", "global"] = "local"
    """`local`: each token's routing entropy; `global`: minus the entropy of the mean routing distribution."""
    threshold: PositiveFloat | None = None
    """For `global`: no loss once the entropy exceeds this; null: no threshold."""

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        require_rank(tensor(inputs, "input", self.input, "logits"), (2, 3), "input", "router logits", self.input)
        return LOSS

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.moe_entropy.loss import MoEEntropy as Module

        return Module(self.kind, self.threshold)
