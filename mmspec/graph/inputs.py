"""Example inputs and verification cases generated from the modalities' declared signatures."""

from __future__ import annotations

import torch

from mmspec.spec.modality import GraphInput
from mmspec.spec.model import ExportGraph, Plan
from mmspec.spec.tensors import dim_value

TRACE_SIZES = {"batch": 2}
DEFAULT_TRACE = 8


def trace_sizes(plan: Plan) -> dict[str, int]:
    """Size of every dynamic axis in the trace case: >= 2 (so no axis specialises to 0/1), within its max."""
    return {
        axis: min(TRACE_SIZES.get(axis, DEFAULT_TRACE), hi) if hi >= 2 else hi for axis, hi in plan.axes_max.items()
    }


def fit_positions(sizes: dict[str, int], graph: ExportGraph | None, floor: int = 0) -> dict[str, int]:
    """`sizes` with the past axis of each node a graph decodes step by step (`cache:`) lowered, then the new
    positions, so that past + new positions fit the node's position table; neither below `floor` (2 for a trace,
    so that no axis specialises), and unchanged when they fit. A node without a past axis (recurrent states) has
    nothing to fit."""
    out = dict(sizes)
    for c in graph.cached if graph is not None else ():
        if c.past is not None and c.positions is not None and out[c.past] + out[c.length] > c.positions:
            out[c.past] = max(floor, c.positions - out[c.length])
            out[c.length] = min(out[c.length], c.positions - out[c.past])
    return out


def verification_shapes(plan: Plan, batch_axes: set[str], graph: ExportGraph | None = None) -> list[dict[str, int]]:
    """Trace sizes, batch 1, an odd batch, one case per other dynamic axis at a different size, and sizes 0 and 1
    of an axis that may be empty (the past of a decoding step), one new position per cached node (after its longest
    past); each fitted to position tables (`fit_positions`). Recurrent states are drawn like any float input."""
    base = fit_positions(trace_sizes(plan), graph, floor=2)
    cases = [dict(base)]
    for size in (1, 3):
        cases.append({**base, **{b: min(size, plan.axes_max[b]) for b in batch_axes}})
    for axis in sorted(set(base) - batch_axes):
        other = base[axis] + 5 if base[axis] + 5 <= plan.axes_max[axis] else max(1, base[axis] - 1)
        cases.append({**base, axis: other})
    for axis in sorted(a for a, lo in plan.axes_min.items() if lo == 0 and a in base):
        cases += [{**base, axis: 0}, {**base, axis: 1}]
    for c in graph.cached if graph is not None else ():  # one new token after the longest past
        cases.append({**base, c.length: 1, **({c.past: plan.axes_max[c.past]} if c.past is not None else {})})
    unique = []
    for c in cases:
        c = fit_positions(c, graph)
        if c not in unique:
            unique.append(c)
    return unique


def make_inputs(plan: Plan, sizes: dict[str, int], seed: int = 0,
                inputs: list[GraphInput] | None = None) -> dict[str, torch.Tensor]:
    """Random values of `inputs` (default: the plan's graph inputs; a graph of `exports:` also takes node outputs):
    integers within [low, high) (per last-axis position when high is a tuple), floats within their bounds
    (standard normal when unbounded), masks with padding at the end of the first row (of each of its items)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for gi in plan.graph_inputs if inputs is None else inputs:
        shape = [dim_value(d, sizes) if isinstance(d, str) else d for d in gi.info.shape]  # derived too
        if gi.field == "mask":
            mask = torch.ones(shape, dtype=torch.int64)
            if shape[-1] > 1:
                mask[0, ..., shape[-1] - shape[-1] // 4 :] = 0  # pad the tail of row 0, keep its first position
            out[gi.name] = mask
        elif isinstance(gi.high, tuple):  # categorical columns: column i in [low, high[i])
            columns = [torch.randint(int(gi.low), h, shape[:-1], generator=g) for h in gi.high]
            out[gi.name] = torch.stack(columns, dim=-1)  # B,C
        elif gi.info.dtype == "int64":
            out[gi.name] = torch.randint(int(gi.low), int(gi.high), shape, generator=g)
        elif gi.low is not None and gi.high is not None:
            out[gi.name] = gi.low + (gi.high - gi.low) * torch.rand(shape, generator=g)
        elif gi.low is not None or gi.high is not None:  # one bound: a half-normal away from it
            x = torch.randn(shape, generator=g).abs()
            out[gi.name] = gi.low + x if gi.low is not None else gi.high - x
        else:
            out[gi.name] = torch.randn(shape, generator=g)
    return out
