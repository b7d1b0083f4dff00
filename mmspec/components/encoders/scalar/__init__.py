"""Scalar encoder: one number per example (a diffusion timestep, a survival time, a numeric covariate) -> a vector."""

from __future__ import annotations

from typing import Literal

from mmspec.components.common import Activation
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

SCALAR_EXAMPLES = (
    Example(  # DDPM / diffusers: sinusoid of the timestep, then Linear -> SiLU -> Linear
        {"t": {"type": "scalar", "dtype": "int64", "high": 1000}},
        {"input": "t", "embed": "sinusoidal", "dim": 8, "hidden": [16, 16]},
        name="timestep",
    ),
    Example(  # a bounded float covariate (survival time), Linear(1, dim)
        {"time": {"type": "scalar", "low": 0.0, "high": 10.0}},
        {"input": "time", "embed": "linear", "dim": 6},
        name="linear",
    ),
)


@register("encoders", examples=SCALAR_EXAMPLES)
class ScalarEncoder(ComponentConfig):
    """One number per example [batch] -> `embedding` [batch, D]: a sinusoidal embedding (DDPM/diffusers timestep
    embedding) or Linear(1, dim) on the value, then optionally Linear layers of widths `hidden` with `activation`
    between them; D is the last hidden width, else `dim`."""

    type: Literal["scalar"]
    input: Ref
    embed: Literal["sinusoidal", "linear"] = "sinusoidal"
    """`sinusoidal`: sin/cos features of the value at geometric frequencies (a timestep); `linear`: Linear(1, dim)."""
    dim: PositiveInt
    """Width of the embedding (sinusoid channels, or the Linear's output)."""
    hidden: list[PositiveInt] = []
    """Widths of the Linear layers after the embedding (diffusers' TimestepEmbedding: `dim: 320, hidden: [1280,
    1280]`)."""
    activation: Activation = "silu"
    """Between the hidden layers (not after the last)."""
    flip_sin_to_cos: bool = False
    """sinusoidal: cos first (GLIDE/ADM and diffusers U-Nets) instead of sin first (DDPM)."""
    freq_shift: float = 1.0
    """sinusoidal: frequencies max_period^(-i / (dim/2 - freq_shift)); DDPM 1, GLIDE/ADM 0."""
    max_period: float = 10000.0
    """Longest period of the sinusoidal features (the lowest frequency is 1 / max_period)."""

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        bundle = inputs["input"]
        if len(bundle) != 1:
            raise CheckError("input", f"{self.input!r} is a bundle of {sorted(bundle)}; reference one tensor "
                                      f"[batch] (a scalar modality)")
        (x,) = bundle.values()
        if x.rank != 1:
            raise CheckError("input", f"needs one number per example [batch] (a scalar modality), but {self.input!r} "
                                      f"has shape {list(x.shape)}")
        if self.embed == "sinusoidal" and self.dim // 2 <= self.freq_shift:
            fix = 2 * int(self.freq_shift) + 2
            raise CheckError("dim", f"a sinusoidal embedding of dim {self.dim} has {self.dim // 2} frequencies, "
                                    f"not more than freq_shift {self.freq_shift}; raise dim (e.g. {fix})")
        return {"embedding": TensorInfo((x.shape[0], self.hidden[-1] if self.hidden else self.dim))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        from mmspec.components import params as P

        widths = [self.dim, *self.hidden]
        return (P.linear(1, self.dim) if self.embed == "linear" else 0) + sum(
            P.linear(a, b) for a, b in zip(widths, widths[1:], strict=False))

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.scalar.module import ScalarEmbedding

        return ScalarEmbedding(self.embed, self.dim, self.hidden, self.activation, self.flip_sin_to_cos,
                               self.freq_shift, self.max_period)
