"""Distributional regression head (SSDDR, DeepPAMM, and regression heads in general): one additive predictor per
parameter of a named distribution, mapped through its link; `distribution_nll` trains it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.common import require_float
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, Ref, StrictModel
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

Link = Literal["identity", "exp", "softplus", "sigmoid"]
FAMILIES: dict[str, dict[str, Link]] = {
    "normal": {"loc": "identity", "scale": "softplus"},
    "poisson": {"rate": "exp"},
    "bernoulli": {"probs": "sigmoid"},
    "gamma": {"concentration": "softplus", "rate": "softplus"},
}
"""Family -> its parameters and their default links."""

_TAB = {"tab": {"type": "vector", "dim": 3}}
DISTRIBUTIONAL_EXAMPLES = (
    Example(_TAB, {"family": "normal", "parameters": {"loc": {"terms": ["tab"]}, "scale": {}}}, name="normal"),
    Example(  # a penalised spline term on the rate of a Poisson model
        {**_TAB, "t": {"type": "scalar", "low": 0.0, "high": 2.0}},
        {"family": "poisson", "parameters": {"rate": {"terms": [
            "tab", {"input": "s_t.basis", "penalty": {"kind": "difference", "order": 2, "strength": 0.5}}]}}},
        {"encoders": {"s_t": {"type": "spline", "input": "t", "knots": 4, "range": [0.0, 2.0]}}},
        name="poisson_spline",
    ),
    Example(_TAB, {"family": "gamma", "parameters": {"concentration": {"terms": ["tab"], "link": "exp"},
                                                       "rate": {"terms": [{"input": "tab", "penalty": {
                                                           "kind": "ridge", "strength": 1.0}}]}}}, name="gamma"),
)


class Penalty(StrictModel):
    """Quadratic penalty strength * w^T S w on a term's coefficients w: `difference` (S = D^T D, D the
    `order`-th differences: P-spline smoothness) or `ridge` (S = I: random effects, ridge regression)."""

    kind: Literal["difference", "ridge"] = "difference"
    order: Annotated[int, Field(ge=1, le=3)] = 2
    strength: PositiveFloat = 1.0


class Term(StrictModel):
    """One block of the additive predictor: Linear(width -> 1, no bias) on `input`, optionally penalised."""

    input: Ref
    penalty: Penalty | None = None


class Parameter(StrictModel):
    """A distribution parameter: intercept + sum of its terms, then `link` (null: the family's default)."""

    terms: list[Ref | Term] = []
    link: Link | None = None


@register("heads", examples=DISTRIBUTIONAL_EXAMPLES)
class Distributional(ComponentConfig):
    """Per parameter theta_k of `family`: eta_k = b_k + sum_terms x_t w_t, theta_k = link_k(eta_k) -> one field per
    parameter [batch] (normal: loc, scale; poisson: rate; bernoulli: probs; gamma: concentration, rate). A term
    reads [batch] or [batch, p] (raw columns, spline or random-effect bases, an orthogonalized deep latent); its
    `penalty` enters `distribution_nll`'s loss."""

    type: Literal["distributional"]
    family: Literal["normal", "poisson", "bernoulli", "gamma"]
    """The distribution whose parameters the head predicts."""
    parameters: dict[str, Parameter]
    """Parameter name -> its additive predictor: the terms it sums and the link function."""

    def terms(self) -> list[tuple[str, int, Term]]:
        """(parameter, index, term) for every term, in parameter order."""
        return [(name, i, t if isinstance(t, Term) else Term(input=t))
                for name in FAMILIES[self.family] if name in self.parameters
                for i, t in enumerate(self.parameters[name].terms)]

    def references(self) -> dict[str, str]:
        return {f"{name}_{i}": term.input for name, i, term in self.terms()}

    def _widths(self, inputs: dict[str, Bundle]) -> dict[tuple[str, int], int]:
        want = list(FAMILIES[self.family])
        if sorted(self.parameters) != sorted(want):
            raise CheckError("parameters", f"a {self.family} distribution has the parameters {want}; got "
                                           f"{sorted(self.parameters)}")
        widths, batch = {}, None
        for name, i, term in self.terms():
            where = ("parameters", name, "terms", i)
            bundle = inputs[f"{name}_{i}"]
            if len(bundle) != 1:
                raise CheckError(where, f"{term.input!r} emits {sorted(bundle)}; reference one tensor")
            x = require_float(next(iter(bundle.values())), term.input, where)
            if x.rank not in (1, 2) or not isinstance(x.shape[-1], int) or batch not in (None, x.shape[0]):
                raise CheckError(where, f"{term.input!r} has shape {list(x.shape)}; a term is [batch] or [batch, p] "
                                        f"on the batch axis of the other terms")
            batch = x.shape[0]
            widths[(name, i)] = 1 if x.rank == 1 else x.shape[1]
            if term.penalty and term.penalty.kind == "difference" and widths[(name, i)] <= term.penalty.order:
                raise CheckError(where, f"a difference penalty of order {term.penalty.order} needs more than "
                                        f"{term.penalty.order} coefficients; {term.input!r} has {widths[(name, i)]}")
        return widths

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        self._widths(inputs)
        batch = next((next(iter(b.values())).shape[0] for b in inputs.values()), None)
        if batch is None:
            raise CheckError("parameters", "no parameter has a term: the distribution would not depend on the data")
        return {name: TensorInfo((batch,)) for name in FAMILIES[self.family]}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        return len(self.parameters) + sum(self._widths(inputs).values())

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.distributional.module import DistributionalHead

        widths = self._widths(inputs)
        params = [(name, self.parameters[name].link or link,
                   [(f"{name}_{i}", widths[(name, i)], t.penalty and t.penalty.model_dump())
                    for n, i, t in self.terms() if n == name])
                  for name, link in FAMILIES[self.family].items()]
        return DistributionalHead(params)
