"""Bordes et al. 2020's grounding objective: sentence vectors projected into a grounded space are clustered by
image and made to share the images' similarity structure (training-only)."""

from __future__ import annotations

from typing import Literal

from mmspec.components.objectives.base import LOSS, Objective, require_rank, tensor
from mmspec.registry import Example, register
from mmspec.spec.base import PositiveFloat, Ref
from mmspec.spec.tensors import Bundle

GROUNDED_SPACE_EXAMPLES = (
    Example(
        {"text": {"type": "vector", "dim": 6}, "image": {"type": "vector", "dim": 5}},
        {"input": "grounded", "image": "image", "margin": 0.3},
        {"heads": {"grounded": {"type": "mlp", "input": "text", "dim": 4, "hidden": [8]}}},
    ),
)


@register("objectives", training_only=True, examples=GROUNDED_SPACE_EXAMPLES)
class GroundedSpace(Objective):
    """Cluster + perceptual grounding of vectors `input` [batch, D] against the features `image` [batch, Dv] of
    the images they describe; rows 2i and 2i+1 are two captions of the same image.

    Cluster term: mean over rows a and rows n of the other pairs of max(0, margin - cos(a, partner of a) +
    cos(a, n)). Perceptual term: minus the Pearson correlation, over the pairs of rows i < j, between
    cos(input_i, input_j) and cos(image_i, image_j). Needs an even batch of at least 4 rows."""

    type: Literal["grounded_space"]
    input: Ref
    image: Ref
    """The image features of each row (a vector modality or node)."""
    margin: PositiveFloat = 0.5
    """Margin of the cluster hinge."""
    cluster_weight: PositiveFloat = 1.0
    """Weight of the cluster term."""
    perceptual_weight: PositiveFloat = 1.0
    """Weight of the perceptual (correlation) term."""
    ref_fields = ("input", "image")

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        require_rank(tensor(inputs, "input", self.input), 2, "input", "vectors [batch, D]", self.input)
        require_rank(tensor(inputs, "image", self.image, field="image"), 2, "image", "features [batch, D]",
                     self.image)
        return LOSS

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.grounded_space.loss import GroundedSpace as Module

        return Module(self.margin, self.cluster_weight, self.perceptual_weight)
