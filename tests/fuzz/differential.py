"""Differential oracles: eager PyTorch (fp32, CPU, eval mode, seeded) is the reference for every candidate.

- the captured torch.fx graph: bit for bit, at every verification shape;
- each default pass alone, and the whole pipeline: bit for bit for the pure rewrites (`BIT_EXACT`), at fp32
  round-off for passes that change arithmetic (BatchNorm folding): `|got - ref| <= PASS_RTOL * (|ref| +
  max |ref|) + FLOOR_FACTOR * floor`, where `floor` is how far the output moves when every parameter and
  buffer is perturbed by one ulp (`round_off_floor`: the spec's own sensitivity to fp32 rounding, large for
  deep stacks of BatchNorms with small variances); not at the export gate, which a fold that drops `eps` passes;
- the exported ONNX file on ONNX Runtime with graph optimizations off and on, at the verification
  shapes (trace, batch 1, an odd batch, every other dynamic axis at another size), via `mmspec.api`.

Norm layers are given random affine parameters and BatchNorm random running statistics first (a fresh
module's are the identity, which would hide a wrong fold): for the pass oracles variances 0.01 to 2, so a fold
that drops `eps` moves outputs by up to eps / (2 var) = 5e-4 of their size; for ONNX Runtime, compared at the
export gate, 0.5 to 2. A case whose reference is not finite is not compared (NNSmith: a non-finite reference
proves nothing); crashes, NaN disagreements and numeric mismatches fail with different messages.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch

from mmspec import api
from mmspec.graph.capture import example_call
from mmspec.graph.inputs import make_inputs, verification_shapes
from mmspec.passes import DEFAULT_PIPELINE, PassManager
from mmspec.spec.yaml_safe import dump_spec

BIT_EXACT = {"remove_dropout", "eliminate_dead_code"}
PASS_RTOL = 1e-6
"""Pass-level bound relative to |ref| + max |ref| of the output (an fp32 ulp is 1.2e-7)."""
FLOOR_FACTOR = 16
"""A rewrite's own rounding is a few ulps of its folded constants: at most this many times the one-ulp floor."""
ULP = torch.finfo(torch.float32).eps
EXPORT_VARIANCES = (0.5, 2.0)
"""BatchNorm variances where outputs are compared at the export gate (smaller ones amplify round-off past it)."""


def load(spec: dict, directory: Path, name: str = "spec.yaml"):
    """Write `spec` as a YAML file and load it through the real loader (all checks, budget included)."""
    path = directory / name
    path.write_text(dump_spec(spec))
    return api.load_spec(path)


def randomize_norms(model: torch.nn.Module, seed: int, variances: tuple[float, float] = (0.01, 2.0)) -> None:
    """Random BatchNorm running statistics (means normal, variances log-uniform in `variances`) and norm affines.
    Small variances show a fold that drops `eps`, and amplify round-off through a deep stack: comparisons at the
    export gate take (0.5, 2)."""
    low, high = (torch.tensor(v).log10() for v in variances)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._NormBase) and module.running_mean is not None:
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g))
                log_var = torch.rand(module.running_var.shape, generator=g) * (high - low) + low
                module.running_var.copy_(10.0**log_var)
            if isinstance(module, torch.nn.modules.batchnorm._NormBase | torch.nn.LayerNorm):
                if getattr(module, "weight", None) is not None:
                    module.weight.copy_(torch.rand(module.weight.shape, generator=g) + 0.5)
                if getattr(module, "bias", None) is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)


def cases(loaded) -> list[dict[str, torch.Tensor]]:
    """Inputs at every verification shape (the callers skip a case whose eager outputs are not finite)."""
    batch_axes = {m.batch for m in loaded.spec.modalities.values()}
    return [make_inputs(loaded.plan, sizes, seed=loaded.spec.seed + 7 * i + 1)
            for i, sizes in enumerate(verification_shapes(loaded.plan, batch_axes))]


def eager(model, inputs) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return model({k: v.clone() for k, v in inputs.items()})


def run_graph(gm, inputs) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return example_call(gm, {k: v.clone() for k, v in inputs.items()})


def compare(what: str, names: list[str], ref, got, exact: bool, floor=None) -> None:
    """Bit for bit when `exact`, else at fp32 round-off: PASS_RTOL * (|ref| + max |ref|) + FLOOR_FACTOR * the
    output's `floor` (see `round_off_floor`), wherever ref is finite; NaN positions equal."""
    assert len(ref) == len(got) == len(names), f"{what}: {len(got)} outputs, eager has {len(ref)}"
    for i, (name, r, g) in enumerate(zip(names, ref, got, strict=True)):
        assert r.shape == g.shape and r.dtype == g.dtype, \
            f"{what}: output {name!r} is {g.dtype}{list(g.shape)}, eager {r.dtype}{list(r.shape)}"
        if exact or not r.is_floating_point():
            same = torch.equal(r, g) or (r.is_floating_point() and torch.equal(r.isnan(), g.isnan())
                                         and torch.equal(r.nan_to_num(), g.nan_to_num()))
            assert same, f"{what}: output {name!r} is not bit-exact (max abs diff {_diff(r, g)})"
        else:
            assert torch.equal(r.isnan(), g.isnan()), f"{what}: output {name!r} has NaN where eager differs"
            finite = r.isfinite()
            if not finite.any():
                continue
            scale = r[finite].abs().max()
            bound = PASS_RTOL * (r.abs() + scale) + FLOOR_FACTOR * floor[i]
            ok = (r - g).abs() <= bound
            assert bool(ok[finite].all()), (f"{what}: output {name!r} differs: max abs {_diff(r, g)}, round-off "
                                            f"floor {float(floor[i]):.3g}, max |ref| {float(scale):.3g}")


def round_off_floor(model, inputs, ref) -> list[torch.Tensor]:
    """Per output, the max abs change when every float parameter and buffer of `model` is multiplied by
    1 + u * ULP (u uniform in [-1, 1], seeded): how much one ulp of rounding in the constants moves it."""
    shaken = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in [*shaken.parameters(), *shaken.buffers()]:
            if t.is_floating_point():
                t.mul_(1 + (torch.rand(t.shape, generator=g, dtype=t.dtype) * 2 - 1) * ULP)
    out = eager(shaken, inputs)
    return [(o.double() - r.double()).abs().nan_to_num().max() if r.is_floating_point() and r.numel()
            else torch.tensor(0.0, dtype=torch.float64) for r, o in zip(ref, out, strict=True)]


def _diff(r: torch.Tensor, g: torch.Tensor) -> float:
    if not r.is_floating_point():
        return float((r != g).sum())
    return float((r.double() - g.double()).abs().nan_to_num().max()) if r.numel() else 0.0


def check_eager_graph_passes(loaded) -> dict:
    """Capture (bit-exact), each default pass alone and the whole pipeline, at every verification shape.
    Returns facts for Hypothesis' statistics (which passes changed the graph)."""
    model = api.build(loaded)
    randomize_norms(model, loaded.spec.seed)
    names = list(model.output_names)
    inputs = cases(loaded)
    refs = [eager(model, x) for x in inputs]
    finite = [all(t.isfinite().all() for t in r if t.is_floating_point()) for r in refs]
    floors = [round_off_floor(model, x, r) if ok else None for x, r, ok in zip(inputs, refs, finite, strict=True)]
    gm = api.capture(model)
    for x, r, ok in zip(inputs, refs, finite, strict=True):
        if ok:
            compare(f"captured graph at {_shapes(x)}", names, r, run_graph(gm, x), exact=True)
    fired = []
    for cls in DEFAULT_PIPELINE:
        single, records = PassManager([cls()])(api.capture(model))
        fired += [r.name for r in records if r.modified]
        for x, r, ok, floor in zip(inputs, refs, finite, floors, strict=True):
            if ok:
                compare(f"pass {cls.name} at {_shapes(x)}", names, r, run_graph(single, x), cls.name in BIT_EXACT,
                        floor)
    full, records = api.optimize(api.capture(model))
    exact = not any(r.modified and r.name not in BIT_EXACT for r in records)
    for x, r, ok, floor in zip(inputs, refs, finite, floors, strict=True):
        if ok:
            compare(f"default pipeline at {_shapes(x)}", names, r, run_graph(full, x), exact, floor)
    return {"fired": fired, "finite_cases": sum(finite), "cases": len(finite)}


def check_onnx(loaded, opset: int = 20) -> dict:
    """Export the optimized graph and compare ONNX Runtime (optimizations off and on) with eager."""
    model = api.build(loaded)
    randomize_norms(model, loaded.spec.seed, EXPORT_VARIANCES)
    gm, _ = api.optimize(api.capture(model))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        with torch.no_grad():
            api.export(gm, loaded, path, opset)
        report = api.verify(path, model, loaded)
    assert report["passed"], "ONNX Runtime differs from eager: " + "; ".join(report["failures"][:5])
    return report


def _shapes(inputs: dict[str, torch.Tensor]) -> str:
    return " ".join(f"{k}={list(v.shape)}" for k, v in inputs.items())
