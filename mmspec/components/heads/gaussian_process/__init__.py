"""Gaussian-process head on deep features (You et al. 2017, deep Gaussian process crop-yield model): the network's
linear output is the GP's mean, a spatio-temporal kernel models the residuals, and the posterior over the training
set is a stored, exportable correction."""

from __future__ import annotations

from typing import Literal

from mmspec.components.common import require_float
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_GP_MODALITIES = {"h": {"type": "vector", "dim": 5}, "where": {"type": "vector", "dim": 2},
                  "year": {"type": "scalar", "low": 0.0, "high": 1.0}}
GP_EXAMPLES = (
    Example(_GP_MODALITIES, {"input": "h", "location": "where", "time": "year", "points": 6}),
)


@register("heads", examples=GP_EXAMPLES)
class GaussianProcess(ComponentConfig):
    """Features h [batch, D], locations g [batch, L] and times t [batch] -> `mean` [batch] = h w + b (the network's
    own prediction) and `prediction` [batch] = [h, 1] beta + k(x*, X) alpha, the GP posterior mean with a linear
    mean function (Rasmussen & Williams 2.7): kernel k = sigma exp(-|g - g'|^2 / l_g^2 - (t - t')^2 / l_t^2), noise
    on the training points only, Gaussian prior N([w, b], prior_variance I) on beta. The `points` training examples
    (X, beta, alpha) are buffers that `condition()` fills after training; before it, prediction == mean."""

    type: Literal["gaussian_process"]
    input: Ref
    location: Ref
    """The locations g [batch, L] of the examples (e.g. coordinates)."""
    time: Ref
    """The times t [batch] of the examples (e.g. years)."""
    points: PositiveInt
    """Training examples the posterior is conditioned on (stored in the exported graph)."""
    sigma: PositiveFloat = 1.0
    """Kernel variance sigma."""
    length_location: PositiveFloat = 0.5
    """Kernel length scale l_g of the locations."""
    length_time: PositiveFloat = 1.5
    """Kernel length scale l_t of the times."""
    noise: PositiveFloat = 0.1
    """Observation noise variance on the training points."""
    prior_variance: PositiveFloat = 0.01
    """Variance of the Gaussian prior on the linear mean's coefficients beta."""

    def references(self) -> dict[str, str]:
        return {"input": self.input, "location": self.location, "time": self.time}

    def _shapes(self, inputs: dict[str, Bundle]) -> tuple[int, int]:
        shapes = {}
        for port, rank in (("input", 2), ("location", 2), ("time", 1)):
            ref = getattr(self, port)
            bundle = inputs[port]
            if len(bundle) != 1:
                raise CheckError(port, f"{ref!r} emits {sorted(bundle)}; reference one tensor")
            x = require_float(next(iter(bundle.values())), ref, port)
            if x.rank != rank or (rank == 2 and not isinstance(x.width, int)):
                want = "[batch, D]" if rank == 2 else "[batch]"
                raise CheckError(port, f"{port} must be {want}; {ref!r} is {list(x.shape)}")
            shapes[port] = x.shape
        if len({s[0] for s in shapes.values()}) != 1:
            raise CheckError("time", f"features, locations and times need one batch axis; got {shapes}")
        return shapes["input"][1], shapes["location"][1]

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        self._shapes(inputs)
        batch = next(iter(inputs["input"].values())).shape[0]
        return {"mean": TensorInfo((batch,)), "prediction": TensorInfo((batch,))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        return self._shapes(inputs)[0] + 1

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.gaussian_process.module import GaussianProcessHead

        dim, loc = self._shapes(inputs)
        return GaussianProcessHead(dim, loc, self.points, self.sigma, self.length_location, self.length_time,
                                   self.noise, self.prior_variance)
