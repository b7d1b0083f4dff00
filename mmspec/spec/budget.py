"""Resource budgets, checked before anything is allocated (torch-free).

A planned spec's parameter count is computed by formula: every component that can says how many
parameters it will allocate (`estimate_params(inputs, ctx) -> int`, next to its `build`). Its
activation memory is estimated per example (batch axes at 1, every other named axis at its declared
maximum) from the plan's bundles plus the largest intermediate tensors a component declares
(`internal_shapes(inputs, ctx)`, e.g. attention scores). Both are exact Python integers, so
`width: 1000000` or a 4,000-digit `layers` costs nothing to estimate.

Over budget is a `budget` diagnostic at the largest component (or at the axis whose maximum makes
the activations too large): ``estimated N params / B bytes exceeds budget ... (use --max-params)``.
A component without `estimate_params` is reported in `Estimate.unknown`; `mmspec compile` counts it
on the meta device before the real build (mmspec.api).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mmspec.errors import UsageError
from mmspec.spec.base import MAX_AMOUNT, amount
from mmspec.spec.model import Plan, PlanContext
from mmspec.spec.tensors import Dim, TensorInfo, dim_value

DEFAULT_MAX_PARAMS = 2_000_000_000
"""2 G parameters, 8 GB of fp32 weights: every canonical spec fits (the largest, ViLBERT, has 239 M) with room
for reference models eight times its size, while a mistyped width or layer count (1e12 parameters) does
not. `compile` holds several copies of the weights at once (eager model, exported file, two ONNX Runtime
sessions), so larger models need a large machine and an explicit --max-params."""
DEFAULT_MAX_ACTIVATION_BYTES = 64 << 30
"""64 GiB of activations for one example at the declared maximum sizes (BERT-base at 512 tokens needs
about 0.02 GiB; a 12-head transformer over 32 Ki positions about 50 GiB)."""
ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4, "bool": 1}
PARAM_BYTES = 4  # fp32 weights
BATCH_SIZE = 1  # activation memory is per example


@dataclass(frozen=True)
class Budget:
    """Limits checked before allocation; `None` disables a limit."""

    max_params: int | None = DEFAULT_MAX_PARAMS
    max_activation_bytes: int | None = DEFAULT_MAX_ACTIVATION_BYTES
    explicit: frozenset[str] = frozenset()
    """The limits given on the command line; the others yield to a spec's own `budget:`."""

    def for_spec(self, spec: Any) -> Budget:
        """These limits with the spec's declared `budget:` in place of each one not given explicitly."""
        declared = getattr(spec, "budget", None)
        if declared is None:
            return self
        limits = {name: getattr(self, name) if name in self.explicit or getattr(declared, name) is None
                  else getattr(declared, name) for name in ("max_params", "max_activation_bytes")}
        return Budget(**limits, explicit=self.explicit)


DEFAULT_BUDGET = Budget()


@dataclass
class Estimate:
    """What a spec will allocate: parameters per node (formula), activation bytes per example."""

    params: int
    """Sum over the nodes with a formula (a tied tensor counts once, for its owner)."""
    by_node: dict[str, int]
    unknown: list[str]
    """Nodes whose component has no `estimate_params`; counted on the meta device by `compile`."""
    activation_bytes: int
    sizes: dict[str, int] = field(default_factory=dict)
    """The size used for every named axis (batch axes 1, others their declared maximum)."""
    peak_tensor: tuple[str, int] = ("", 0)
    """(node, bytes) of the largest single tensor counted."""


def estimate(spec: Any, plan: Plan) -> Estimate:
    """Parameter count and per-example activation memory of a planned spec; never allocates a tensor."""
    ctx = PlanContext(spec, plan.bundles)
    by_node: dict[str, int] = {}
    unknown: list[str] = []
    batch_axes = {m.batch for m in spec.modalities.values()}
    sizes = {axis: (BATCH_SIZE if axis in batch_axes else hi) for axis, hi in plan.axes_max.items()}
    tensors = 0
    peak = ("", 0)
    for gi in plan.graph_inputs:
        n = tensor_bytes(gi.info, sizes)
        tensors += n
        peak = max(peak, (gi.modality, n), key=lambda p: p[1])
    internal = 0
    for node in plan.nodes:
        inputs = plan.node_inputs(node)
        count = getattr(node.config, "estimate_params", None)
        if count is None:
            unknown.append(node.name)
        else:
            by_node[node.name] = int(count(inputs, ctx))
        for info in plan.bundles[node.name].values():
            n = tensor_bytes(info, sizes)
            tensors += n
            peak = max(peak, (node.name, n), key=lambda p: p[1])
        shapes = getattr(node.config, "internal_shapes", None)
        if shapes is not None:
            own = sum(tensor_bytes(TensorInfo(tuple(s)), sizes) for s in shapes(inputs, ctx))
            internal = max(internal, own)
            peak = max(peak, (node.name, own), key=lambda p: p[1])
    return Estimate(sum(by_node.values()), by_node, unknown, tensors + internal, sizes, peak)


def tensor_bytes(info: TensorInfo, sizes: dict[str, int]) -> int:
    return math.prod(_size(d, sizes) for d in info.shape) * ITEMSIZE.get(info.dtype, 4)


def _size(d: Dim, sizes: dict[str, int]) -> int:
    """A dim at `sizes` (an unknown axis counts 1); a derived axis at the maxima is its upper bound."""
    return dim_value(d, sizes, default=1)


def check_budget(spec: Any, plan: Plan, budget: Budget, est: Estimate) -> list[tuple[tuple[str | int, ...], str]]:
    """(path in the spec, message) for every limit that the estimate `est` of `spec` exceeds; [] when it fits."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if budget.max_params is not None and est.params > budget.max_params:
        problems.append((_node_path(plan, est), params_message(est.params, budget.max_params, _largest(plan, est))))
    if budget.max_activation_bytes is not None and est.activation_bytes > budget.max_activation_bytes:
        problems.append((_owner_path(spec, plan, est), activation_message(est, budget.max_activation_bytes)))
    return problems


def params_message(params: int, limit: int, largest: str = "") -> str:
    return (f"estimated {fmt_count(params)} params / {fmt_bytes(params * PARAM_BYTES)} exceeds budget "
            f"{fmt_count(limit)} params (use --max-params){largest}")


def activation_message(est: Estimate, limit: int) -> str:
    dims = ", ".join(f"{k}={fmt_count(v)}" for k, v in sorted(est.sizes.items()))
    node, peak = est.peak_tensor
    return (f"estimated activation memory {fmt_bytes(est.activation_bytes)} per example at the declared maximum "
            f"sizes ({dims}) exceeds budget {fmt_bytes(limit)} (use --max-activation-bytes); largest tensor: "
            f"{node} ({fmt_bytes(peak)})")


def _largest(plan: Plan, est: Estimate) -> str:
    if not est.by_node:
        return ""
    name = max(est.by_node, key=lambda n: est.by_node[n])
    section = plan.node(name).section
    return f"; largest: {section}.{name} with {fmt_count(est.by_node[name])}"


def _node_path(plan: Plan, est: Estimate) -> tuple[str, ...]:
    name = max(est.by_node, key=lambda n: est.by_node[n])
    return (plan.node(name).section, name)


def _owner_path(spec: Any, plan: Plan, est: Estimate) -> tuple[str, ...]:
    """Where the largest tensor comes from: its modality, or its node."""
    owner = est.peak_tensor[0]
    if owner in spec.modalities:
        return ("modalities", owner)
    return (plan.node(owner).section, owner)


# --- numbers for people ---------------------------------------------------------------------------


def fmt_count(n: int) -> str:
    """`1,234,567` up to 15 digits, then `1.23e+18` (exact integers of any size, no float overflow)."""
    if n < 10**15:
        return f"{n:,}"
    mantissa, exponent = _scientific(n)
    return f"{mantissa}e+{exponent}"


def fmt_bytes(n: int) -> str:
    """`512 bytes`, `4.0 GiB`, ... up to EiB, then `1.23e+21 bytes`."""
    for unit, shift in (("EiB", 60), ("PiB", 50), ("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if 1 << shift <= n < 1 << (shift + 10):
            return f"{n / (1 << shift):.1f} {unit}"
    if n < 1024:
        return f"{n} bytes"
    mantissa, exponent = _scientific(n)
    return f"{mantissa}e+{exponent} bytes"


def _scientific(n: int) -> tuple[str, int]:
    """('1.23', 18) for 1_234_567_890_123_456_789, for ints beyond float range and str() limits too."""
    exponent = max(0, int((n.bit_length() - 1) * math.log10(2)) - 1)
    while n >= 10 ** (exponent + 1):
        exponent += 1
    while exponent and n < 10**exponent:
        exponent -= 1
    digits = n // 10 ** max(0, exponent - 2)
    text = str(digits)
    return f"{text[0]}.{text[1:3]}" if len(text) >= 3 else text, exponent


# --- command-line values --------------------------------------------------------------------------

def parse_amount(text: str, flag: str) -> int:
    """A positive count or byte size from the command line: `20000000000`, `2e10`, `20_000`, `64GiB`, `2G`.

    Raises UsageError (exit 2) for anything else, including `inf`, `nan`, zero and negative values."""
    value = amount(text)
    if value is None:
        raise UsageError(f"{flag} {text!r}: expected a positive number such as 20000000000, 2e10 or 64GiB")
    if not 1 <= value <= MAX_AMOUNT:
        raise UsageError(f"{flag} {text!r}: expected a value between 1 and 1e30")
    return value


def budget_from_options(max_params: str | None, max_activation_bytes: str | None) -> Budget:
    """The Budget for `--max-params` / `--max-activation-bytes` (defaults where not given)."""
    return Budget(
        DEFAULT_MAX_PARAMS if max_params is None else parse_amount(max_params, "--max-params"),
        DEFAULT_MAX_ACTIVATION_BYTES if max_activation_bytes is None
        else parse_amount(max_activation_bytes, "--max-activation-bytes"),
        frozenset(name for name, given in (("max_params", max_params), ("max_activation_bytes", max_activation_bytes))
                  if given is not None),
    )
