"""iACE's imagination classifier (LanguageAndVisionConcat): late fusion of two pretrained-feature vectors."""

from __future__ import annotations

from typing import Literal

from mmspec.components.common import require_float
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveInt, Probability, Ref, StrictModel
from mmspec.spec.layout import Rule
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo


class ConcatInputs(StrictModel):
    """The two vectors [batch, D] that are fused, in the order they are concatenated."""

    image: Ref
    text: Ref


CONCAT_CLASSIFIER_EXAMPLES = (
    Example(  # iACE: CLIP embeddings of the imagined image and of the text, both orders averaged
        {"image": {"type": "vector", "dim": 6}, "text": {"type": "vector", "dim": 6}},
        {"inputs": {"image": "image", "text": "text"}, "hidden": 8, "num_classes": 3},
        name="symmetric",
    ),
    Example(
        {"image": {"type": "vector", "dim": 6}, "text": {"type": "vector", "dim": 4}},
        {"inputs": {"image": "image", "text": "text"}, "hidden": 5, "num_classes": 2, "symmetric": False,
         "dropout": 0.0},
        name="one_order",
    ),
)


@register("heads", examples=CONCAT_CLASSIFIER_EXAMPLES)
class ConcatClassifier(ComponentConfig):
    """iACE's classifier over two feature vectors [batch, D]: ReLU on both, concatenated, Linear to `hidden` ->
    ReLU -> dropout -> Linear (`hidden`) -> dropout -> Linear to `num_classes` -> tanh = `logits`
    [batch, num_classes]. `symmetric` (two inputs of one width) also runs the same layers on the swapped
    concatenation [text; image] and averages the two logits, as iACE's fine-tuning does."""

    type: Literal["concat_classifier"]
    inputs: ConcatInputs
    hidden: PositiveInt = 512
    """Width of the hidden layer on the concatenated inputs."""
    num_classes: PositiveInt
    """Number of classes: the width of `logits`."""
    dropout: Probability = 0.1
    symmetric: bool = True
    """true: also classify the swapped concatenation and average the two logits."""

    weight_layouts = {"langvis": (Rule("{layer}.{p}", "{layer}.{p}"),)}  # LanguageAndVisionConcat: fusion, dense, fc

    def references(self) -> dict[str, str]:
        return {"image": self.inputs.image, "text": self.inputs.text}

    def widths(self, inputs: dict[str, Bundle]) -> tuple[int, int]:
        """(image width, text width); both inputs [batch, D] (the planner checks that they share the batch)."""
        out = []
        for port in ("image", "text"):
            bundle, ref = inputs[port], getattr(self.inputs, port)
            if len(bundle) != 1:
                raise CheckError(("inputs", port), f"{ref!r} emits {sorted(bundle)}; reference one of them")
            x = require_float(next(iter(bundle.values())), ref, ("inputs", port))
            if x.rank != 2 or not isinstance(x.width, int):
                raise CheckError(("inputs", port), f"{ref!r} has shape {list(x.shape)}; a vector [batch, D] is needed")
            out.append(x.width)
        return out[0], out[1]

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        image, text = self.widths(inputs)
        if self.symmetric and image != text:
            raise CheckError("symmetric", f"swapping the inputs needs one width, but image is {image} and text "
                                          f"{text} wide; set symmetric: false")
        batch = next(iter(inputs["image"].values())).shape[0]
        return {"logits": TensorInfo((batch, self.num_classes))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Parameters `build` will allocate, by formula (budgets before allocation; mmspec.spec.budget)."""
        from mmspec.components.params import linear

        h = self.hidden
        return linear(sum(self.widths(inputs)), h) + linear(h, h) + linear(h, self.num_classes)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.concat_classifier.module import ConcatClassifierModule

        return ConcatClassifierModule(sum(self.widths(inputs)), self.hidden, self.num_classes, self.dropout,
                                      self.symmetric)
