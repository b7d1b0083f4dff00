"""MLP heads: projection/predictor heads (SimCLR, BYOL), regression heads (data2vec), and the MLP
discriminator that GAN objectives read. Heads used only in pre-training are marked `training_only: true`,
which keeps them out of every export."""

from __future__ import annotations

from typing import Literal

from mmspec.components.common import Activation, require_float
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, Name, PositiveFloat, PositiveInt, Ref, StrictModel
from mmspec.spec.layout import ONE_LINEAR
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo


def _single(bundle: Bundle, ref: str, field: str | tuple) -> TensorInfo:
    if len(bundle) != 1:
        raise CheckError(
            field, f"{ref!r} emits {sorted(bundle)}; reference one of them, e.g. '{ref}.{sorted(bundle)[-1]}'"
        )
    x = next(iter(bundle.values()))
    if x.rank not in (2, 3) or not isinstance(x.width, int):
        raise CheckError(
            field, f"{ref!r} has shape {list(x.shape)}; a vector [batch, D] or a sequence [batch, S, D] is needed"
        )
    return require_float(x, ref, field)


MLP_EXAMPLES = (
    Example(
        {"x": {"type": "vector", "dim": 6}}, {"input": "x", "dim": 4, "hidden": [8], "norm": "batch"}, name="vector"
    ),
    Example(
        {"s": {"type": "sequence", "dim": 6, "length": "seq", "max_length": 10}},
        {"input": "s", "dim": 3, "hidden": [5], "norm": "layer", "activation": "gelu"},
        name="sequence",
    ),
    Example({"s": {"type": "sequence", "dim": 6, "length": "seq", "max_length": 10}}, {"input": "s", "dim": 3},
            name="linear"),  # one Linear per position: ViTMAE's pixel head
    Example(  # VATT's video projection: bias-free Dense, BatchNorm, ReLU, bias-free Dense, BatchNorm
        {"x": {"type": "vector", "dim": 6}},
        {"input": "x", "dim": 4, "hidden": [5], "norm": "batch", "hidden_bias": False, "bias": False,
         "output_norm": "batch"},
        name="output_norm",
    ),
    Example(  # VATT's video-text projection: ReLU, bias-free Dense, BatchNorm
        {"x": {"type": "vector", "dim": 6}},
        {"input": "x", "dim": 4, "input_activation": "relu", "bias": False, "output_norm": "batch"},
        name="input_activation",
    ),
    Example({"x": {"type": "vector", "dim": 6}}, {"input": "x", "dim": 4, "output_activation": "gelu"},
            name="output_activation"),  # VATT-MA's post-Transformer projection
    Example(  # a map M into another space and back with M^T (Shahmohammadi et al. 2021's grounded mapping)
        {"s": {"type": "sequence", "dim": 6, "length": "seq", "max_length": 10}},
        {"input": "there", "dim": 6, "bias": False, "transpose_of": "there"},
        {"heads": {"there": {"type": "mlp", "input": "s", "dim": 4, "bias": False}}},
        name="transposed",
    ),
)
DISCRIMINATOR_EXAMPLES = (
    Example(
        {"real": {"type": "vector", "dim": 6}, "z": {"type": "vector", "dim": 3}, "c": {"type": "vector", "dim": 2}},
        {"inputs": {"real": "real", "fake": "gen", "condition": "c"}, "hidden": [8]},
        {"heads": {"gen": {"type": "mlp", "input": "z", "dim": 6, "hidden": [8]}}},
    ),
)


@register("heads", examples=MLP_EXAMPLES)
class MLPHead(ComponentConfig):
    """MLP on vectors [batch, D] or on each position of [batch, S, D] -> `embedding` [..., dim]:
    [input_activation], [Linear -> norm -> activation] per `hidden` width, then Linear(dim) [-> output_norm]
    [-> output_activation].
    BYOL's projector and predictor are `hidden: [4096], norm: batch, dim: 256`."""

    type: Literal["mlp"]
    input: Ref
    dim: PositiveInt
    """Output width."""
    hidden: list[PositiveInt] = []
    """Widths of the hidden layers ([]: one Linear layer)."""
    norm: Literal["none", "batch", "layer"] = "none"
    """Normalization after each hidden Linear layer: `batch`, `layer` or `none`."""
    activation: Activation = "relu"
    """Activation of the hidden layers."""
    eps: PositiveFloat = 1e-5
    bias: bool = True
    """A bias in the output Linear layer."""
    hidden_bias: bool = True
    """A bias in each hidden Linear layer (false before a BatchNorm, as VATT's bridge)."""
    input_activation: Activation = "identity"
    """Activation applied to the input before the first Linear layer (VATT's ReLU -> Dense -> BN)."""
    output_norm: Literal["none", "batch", "layer"] = "none"
    """Normalization after the output Linear layer (VATT's bridge ends in BatchNorm)."""
    output_activation: Activation = "identity"
    """Activation of the output, last (VATT-MA's post-Transformer Dense + GELU)."""
    transpose_of: Name | None = None
    """Another one-layer `mlp` head, planned before this one, whose weight this one-layer head uses transposed: one
    matrix M mapping both ways (x M^T there, y M back; the reversible grounded mapping of Shahmohammadi et al.
    2021). `dim` is then that head's input width and this head's input width its `dim`."""

    weight_layouts = {"linear": ONE_LINEAR}  # ViTMAE's `decoder_pred`

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        x = _single(inputs["input"], self.input, "input")
        if self.transpose_of is not None:
            self.check_transpose(x.width, ctx)
        return {"embedding": x.with_shape(*x.shape[:-1], self.dim)}

    def check_transpose(self, width: int, ctx) -> None:
        """`transpose_of` names a one-layer mlp planned before this one, of the transposed shape."""
        other = ctx.spec.heads.get(self.transpose_of)
        if self.hidden or self.output_norm != "none" or self.output_activation != "identity":
            raise CheckError("transpose_of", "a head with transpose_of is one Linear layer: remove hidden, "
                                             "output_norm and output_activation")
        if other is None or other.type != "mlp" or other.hidden or other.transpose_of:
            raise CheckError("transpose_of", f"transpose_of {self.transpose_of!r} must name a one-layer mlp head "
                                             f"(no hidden, no transpose_of of its own)")
        if self.transpose_of not in ctx.bundles:
            raise CheckError("transpose_of", f"{self.transpose_of!r} must be planned before this head: make this "
                                             f"head read (through its input) what {self.transpose_of!r} computes")
        node, _, fld = other.input.partition(".")
        bundle = {fld: ctx.bundles[node][fld]} if fld else ctx.bundles[node]
        source = _single(bundle, other.input, "transpose_of").width
        if (width, self.dim) != (other.dim, source):
            raise CheckError("transpose_of", f"the transpose of {self.transpose_of!r} maps {other.dim} -> {source}; "
                                             f"this head maps {width} -> {self.dim}")

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Parameters `build` will allocate, by formula (a transposed weight belongs to the head it comes from)."""
        from mmspec.components.params import layer_norm, linear

        dim, total = _single(inputs["input"], self.input, "input").width, 0
        for width in self.hidden:
            total += linear(dim, width, self.hidden_bias) + (2 * width if self.norm == "batch" else 0)
            total += layer_norm(width) if self.norm == "layer" else 0
            dim = width
        weight = 0 if self.transpose_of else dim * self.dim
        out_norm = 2 * self.dim if self.output_norm != "none" else 0  # BatchNorm and LayerNorm: scale and shift
        return total + weight + (self.dim if self.bias else 0) + out_norm

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.mlp.module import MLP, TransposedLinear

        width = _single(inputs["input"], self.input, "input").width
        if self.transpose_of is not None:
            tied = ctx.modules[self.transpose_of].mlp[-1].weight
            return TransposedLinear(tied, self.bias, "embedding")
        return MLP(width, self.hidden, self.dim, self.norm, self.activation, self.eps, "embedding", self.bias,
                   self.hidden_bias, self.input_activation, self.output_norm, self.output_activation)


class DiscriminatorInputs(StrictModel):
    """What the discriminator judges: `real` and `fake` vectors of one width, optionally a `condition`."""

    real: Ref
    fake: Ref
    condition: Ref | None = None


@register("heads", training_only=True, examples=DISCRIMINATOR_EXAMPLES)
class Discriminator(ComponentConfig):
    """MLP discriminator, one network applied to `real` and `fake` vectors [batch, D] (each concatenated with
    `condition` when given) -> `real`, `fake` logits [batch, 1]; with a condition also `mismatched`: real data
    with the next example's condition (matching-aware GAN-CLS). Training-only by default."""

    type: Literal["discriminator"]
    inputs: DiscriminatorInputs
    hidden: list[PositiveInt] = [256]
    """Widths of the discriminator's hidden layers."""
    activation: Activation = "silu"
    """Activation of the hidden layers."""
    training_only: bool = True
    """true (the default): used only while training, never exported."""

    def references(self) -> dict[str, str]:
        return {k: v for k, v in self.inputs.model_dump().items() if v is not None}

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        real = _single(inputs["real"], self.inputs.real, ("inputs", "real"))
        fake = _single(inputs["fake"], self.inputs.fake, ("inputs", "fake"))
        if real.rank != 2 or real.shape != fake.shape:
            raise CheckError(
                ("inputs", "fake"),
                f"real {list(real.shape)} and fake {list(fake.shape)} must be vectors of one shape [batch, D]",
            )
        out = {"real": real.with_shape(real.shape[0], 1), "fake": real.with_shape(real.shape[0], 1)}
        if "condition" in inputs:
            cond = _single(inputs["condition"], self.inputs.condition, ("inputs", "condition"))
            if cond.rank != 2:
                raise CheckError(("inputs", "condition"), "the condition must be a vector [batch, C]")
            out["mismatched"] = out["real"]
        return out

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.mlp.module import MLPDiscriminator

        width = next(iter(inputs["real"].values())).width
        if "condition" in inputs:
            width += next(iter(inputs["condition"].values())).width
        return MLPDiscriminator(width, self.hidden, self.activation)
