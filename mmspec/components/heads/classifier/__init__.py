"""Classification heads: per-example (NSP, alignment, VQA, ImageNet) and per-token (MLM, region classes)."""

from __future__ import annotations

from typing import Literal

from mmspec.components.common import Activation, require_float
from mmspec.components.examples import TEXT, text_encoder
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, Name, PositiveFloat, PositiveInt, Probability, Ref
from mmspec.spec.layout import ONE_LINEAR, Rule
from mmspec.spec.suggest import suggestion_text
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo


def _one(inputs: dict[str, Bundle], ref: str) -> TensorInfo:
    bundle = inputs["input"]
    if len(bundle) != 1:
        raise CheckError(
            "input", f"{ref!r} emits {sorted(bundle)}; reference one of them, e.g. '{ref}.{sorted(bundle)[-1]}'"
        )
    return require_float(next(iter(bundle.values())), ref)


_TEXT_ENCODER = {"enc": text_encoder()}
CLASSIFIER_EXAMPLES = (
    Example({"x": {"type": "vector", "dim": 6}}, {"input": "x", "num_classes": 3}, name="linear"),
    Example({"x": {"type": "vector", "dim": 6}}, {"input": "x", "num_classes": 3, "bias": False}, name="no_bias"),
    Example(
        {"text": TEXT},
        {"input": "enc.pooled", "num_classes": 2, "hidden": [8], "norm": True, "activation": "gelu", "dropout": 0.1},
        {"encoders": _TEXT_ENCODER},
        name="mlp",
    ),
)
TOKEN_CLASSIFIER_EXAMPLES = (
    Example(
        {"text": TEXT},
        {"input": "enc.sequence", "tie_to": "enc"},
        {"encoders": _TEXT_ENCODER},
        name="tied",
    ),
    Example(
        {"text": TEXT},
        {"input": "enc.sequence", "num_classes": 5, "transform": False, "bias": False},
        {"encoders": _TEXT_ENCODER},
        name="linear",
    ),
)


@register("heads", examples=CLASSIFIER_EXAMPLES)
class Classifier(ComponentConfig):
    """MLP classifier on a vector [batch, D] -> `logits` [batch, num_classes].

    `hidden` adds Linear -> activation (-> LayerNorm) -> dropout layers before the output layer.
    """

    type: Literal["classifier"]
    input: Ref
    num_classes: PositiveInt
    """Number of classes: the width of `logits`."""
    hidden: list[PositiveInt] = []
    """Widths of the hidden layers before the output layer ([]: a linear classifier)."""
    activation: Activation = "relu"
    """Activation of the hidden layers."""
    norm: bool = False
    """true: LayerNorm after each hidden layer's activation."""
    dropout: Probability = 0.0
    eps: PositiveFloat = 1e-12
    bias: bool = True
    """A bias in the output layer (vis-w2v's cluster classifier has none)."""

    weight_layouts = {"linear": ONE_LINEAR}

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        x = _one(inputs, self.input)
        if x.rank != 2 or not isinstance(x.width, int):
            raise CheckError(
                "input",
                f"classifier needs a vector [batch, D] but {self.input!r} has shape "
                f"{list(x.shape)}; pool the sequence first (encoder `pool:`) or reduce its items or positions "
                f"(fusion `reduce`)",
            )
        return {"logits": TensorInfo((x.shape[0], self.num_classes))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Parameters `build` will allocate, by formula (budgets before allocation; mmspec.spec.budget)."""
        from mmspec.components.params import layer_norm, linear

        total, dim = 0, _one(inputs, self.input).width
        for width in self.hidden:
            total += linear(dim, width) + (layer_norm(width) if self.norm else 0)
            dim = width
        return total + linear(dim, self.num_classes, self.bias)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.classifier.module import MLPClassifier

        return MLPClassifier(
            _one(inputs, self.input).width,
            self.hidden,
            self.num_classes,
            self.activation,
            self.norm,
            self.eps,
            self.dropout,
            self.bias,
        )


@register("heads", examples=TOKEN_CLASSIFIER_EXAMPLES)
class TokenClassifier(ComponentConfig):
    """Per-position classifier on a sequence [batch, S, D] -> `logits` [batch, S, classes]: optional
    dense -> activation -> LayerNorm transform, then a decoder, optionally tied to an encoder's token
    embedding (BERT's MLM head: classes = vocabulary, one shared matrix)."""

    type: Literal["token_classifier"]
    input: Ref
    num_classes: PositiveInt | None = None
    """Number of classes; null: the vocabulary of the encoder named in `tie_to`."""
    tie_to: Name | None = None
    """A `transformer` encoder with token embeddings whose word matrix is the decoder weight."""
    transform: bool = True
    """true: dense -> activation -> LayerNorm before the decoder (BERT's prediction-head transform)."""
    activation: Activation = "gelu"
    """Activation of the transform."""
    eps: PositiveFloat = 1e-12
    bias: bool = True
    """A per-class output bias (BERT's MLM head has one, GPT-2's LM head has none)."""

    weight_layouts = {
        "bert_lm_head": (  # transformers BertLMPredictionHead (cls.predictions)
            Rule("transform.dense.{p}", "transform.0.{p}"),
            Rule("transform.LayerNorm.{p}", "transform.2.{p}"),
            Rule("decoder.{p}", "{p}"),
            Rule("bias", "bias"),
        ),
        "roberta_lm_head": (  # transformers RobertaLMHead (lm_head)
            Rule("dense.{p}", "transform.0.{p}"),
            Rule("layer_norm.{p}", "transform.2.{p}"),
            Rule("decoder.{p}", "{p}"),
            Rule("bias", "bias"),
        ),
        "linear": (Rule("{p}", "{p}"),),  # a bare decoder (GPT-2's lm_head)
    }

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

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Parameters `build` will allocate (a tied decoder matrix belongs to its encoder)."""
        from mmspec.components.params import layer_norm, linear

        width, classes = _one(inputs, self.input).width, self.infer(inputs, ctx)["logits"].shape[-1]
        transform = linear(width, width) + layer_norm(width) if self.transform else 0
        return transform + (0 if self.tie_to else classes * width) + (classes if self.bias else 0)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.classifier.module import TokenClassifierModule

        width = _one(inputs, self.input).width
        tied = ctx.modules[self.tie_to].embed.word.weight if self.tie_to else None
        return TokenClassifierModule(
            width, self.num_classes, tied, self.transform, self.activation, self.eps, self.bias
        )
