"""Masking noise of denoising autoencoders (Vincent et al. 2008; Silberer & Lapata 2014): a random fraction of
the input's features is set to zero while training; the input passes unchanged otherwise."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.common import require_float
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

MASKING_NOISE_EXAMPLES = (
    Example({"x": {"type": "vector", "dim": 6}}, {"input": "x", "prob": 0.3}, name="vector"),
    Example({"s": {"type": "sequence", "dim": 4, "length": "seq", "max_length": 5}}, {"input": "s"}, name="sequence"),
)


@register("encoders", examples=MASKING_NOISE_EXAMPLES)
class MaskingNoise(ComponentConfig):
    """One float tensor [batch, ...] -> `corrupted` of the same shape: while training each element is zeroed
    with probability `prob` (no rescaling, unlike dropout), in inference the input itself. No parameters.
    The corruption of a denoising autoencoder, whose `reconstruction` target is the clean input."""

    type: Literal["masking_noise"]
    input: Ref
    prob: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.25
    """Probability that an element is zeroed while training."""

    def _tensor(self, inputs: dict[str, Bundle]) -> TensorInfo:
        bundle = inputs["input"]
        if len(bundle) != 1:
            raise CheckError("input", f"{self.input!r} emits {sorted(bundle)}; reference one of them, e.g. "
                                      f"'{self.input}.{sorted(bundle)[-1]}'")
        return require_float(next(iter(bundle.values())), self.input)

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        return {"corrupted": self._tensor(inputs)}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        return 0

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.masking_noise.module import MaskingNoiseModule

        self._tensor(inputs)
        return MaskingNoiseModule(self.prob)
