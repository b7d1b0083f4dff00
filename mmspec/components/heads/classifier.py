"""Classification heads: per-example (NSP, alignment, VQA, ImageNet) and per-token (MLM, region classes)."""

from __future__ import annotations

from typing import Literal

from mmspec.components._common import Activation
from mmspec.registry import register
from mmspec.spec._base import ComponentConfig, Name, PositiveFloat, PositiveInt, Probability, Ref
from mmspec.spec.suggest import suggestion_text
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo


def _one(inputs: dict[str, Bundle], ref: str) -> TensorInfo:
    bundle = inputs["input"]
    if len(bundle) != 1:
        raise CheckError(
            "input", f"{ref!r} emits {sorted(bundle)}; reference one of them, e.g. '{ref}.{sorted(bundle)[-1]}'"
        )
    return next(iter(bundle.values()))


@register("heads")
class Classifier(ComponentConfig):
    """MLP classifier on a vector [batch, D] -> `logits` [batch, num_classes].

    `hidden` adds Linear -> activation (-> LayerNorm) -> dropout layers before the output layer.
    """

    type: Literal["classifier"]
    input: Ref
    num_classes: PositiveInt
    hidden: list[PositiveInt] = []
    activation: Activation = "relu"
    norm: bool = False
    dropout: Probability = 0.0
    eps: PositiveFloat = 1e-12

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        x = _one(inputs, self.input)
        if x.rank != 2 or not isinstance(x.width, int):
            raise CheckError(
                "input",
                f"classifier needs a vector [batch, D] but {self.input!r} has shape "
                f"{list(x.shape)}; pool the sequence first (encoder `pool:`)",
            )
        return {"logits": TensorInfo((x.shape[0], self.num_classes))}

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.layers.heads import MLPClassifier

        return MLPClassifier(
            _one(inputs, self.input).width,
            self.hidden,
            self.num_classes,
            self.activation,
            self.norm,
            self.eps,
            self.dropout,
        )


@register("heads")
class TokenClassifier(ComponentConfig):
    """Per-position classifier on a sequence [batch, S, D] -> `logits` [batch, S, classes]: optional
    dense -> activation -> LayerNorm transform, then a decoder, optionally tied to an encoder's token
    embedding (BERT's MLM head: classes = vocabulary, one shared matrix)."""

    type: Literal["token_classifier"]
    input: Ref
    num_classes: PositiveInt | None = None
    tie_to: Name | None = None
    """A `transformer` encoder with token embeddings whose word matrix is the decoder weight."""
    transform: bool = True
    activation: Activation = "gelu"
    eps: PositiveFloat = 1e-12

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        x = _one(inputs, self.input)
        if x.rank != 3:
            raise CheckError(
                "input", f"token_classifier needs a sequence [batch, S, D]; {self.input!r} has shape {list(x.shape)}"
            )
        if (self.num_classes is None) == (self.tie_to is None):
            raise CheckError(
                "num_classes",
                "set exactly one of num_classes and tie_to (tie_to takes the class count from the tied embedding)",
            )
        classes = self.num_classes
        if self.tie_to is not None:
            enc = ctx.spec.encoders.get(self.tie_to)
            if enc is None or enc.type != "transformer" or enc.embed.type != "tokens":
                tied = [n for n, e in ctx.spec.encoders.items() if e.type == "transformer" and e.embed.type == "tokens"]
                raise CheckError(
                    "tie_to",
                    f"tie_to {self.tie_to!r} must name a transformer encoder with token embeddings"
                    f"{suggestion_text(self.tie_to, tied)}; candidates: {', '.join(tied) or 'none'}",
                )
            if enc.width != x.width:
                raise CheckError(
                    "tie_to",
                    f"the tied embedding of {self.tie_to!r} has width {enc.width} but "
                    f"{self.input!r} has width {x.width}; they must match",
                )
            classes = ctx.spec.modalities[enc.input.split(".")[0]].vocab_size
        return {"logits": TensorInfo((*x.shape[:2], classes))}

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.layers.heads import TokenClassifierModule

        width = _one(inputs, self.input).width
        tied = ctx.modules[self.tie_to].embed.word.weight if self.tie_to else None
        return TokenClassifierModule(width, self.num_classes, tied, self.transform, self.activation, self.eps)
