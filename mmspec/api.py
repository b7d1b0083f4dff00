"""The public Python API; the CLI is a thin shell over it.

spec = load_spec("specs/bert.yaml", variant="tiny")
report = compile("specs/bert.yaml", out_dir="build", variant="tiny")
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import mmspec
from mmspec.errors import CompileError, VerificationError
from mmspec.spec.loader import LoadedSpec
from mmspec.spec.loader import load_spec as _load_spec
from mmspec.spec.model import SECTIONS, make_spec_model

Progress = Callable[[str], None]


def spec_model():
    """The root pydantic model for the components registered now (user components included)."""
    from mmspec.registry import version

    return _spec_model(version())


@cache
def _spec_model(registry_version: int):
    from mmspec.registry import components

    return make_spec_model({s: {n: c.config for n, c in components(s).items()} for s in SECTIONS})


def load_spec(path: str | Path, variant: str | None = None, sets: Sequence[str] = ()) -> LoadedSpec:
    """Load, override, validate and plan a spec (torch-free). Raises SpecError / UsageError."""
    return _load_spec(path, spec_model(), variant, sets)


def build(loaded: LoadedSpec, device: str = "cpu"):
    """The eval-mode nn.Module of a loaded spec (device "meta" allocates nothing)."""
    from mmspec.graph.builder import build as _build

    try:
        return _build(loaded.plan, loaded.spec, device).eval()
    except Exception as e:
        raise CompileError(f"building the model failed: {type(e).__name__}: {e}") from e


def capture(model):
    """torch.fx GraphModule of a built model; its outputs equal the eager outputs bit for bit."""
    from mmspec.graph.capture import capture as _capture

    return _capture(model)


def optimize(gm):
    """Run the default pass pipeline; returns (GraphModule, [PassRecord])."""
    from mmspec.passes import run_default_pipeline

    return run_default_pipeline(gm)


def param_counts(model) -> dict:
    """Total, trainable and per-component parameter counts; a tied tensor counts once, for its first owner."""
    seen: set[int] = set()
    by_component: dict[str, int] = {}
    trainable = 0
    for name, module in [*model.components.items(), *model.objectives.items()]:
        count = 0
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                count += p.numel()
                trainable += p.numel() if p.requires_grad else 0
        by_component[name] = count
    return {"total": sum(by_component.values()), "trainable": trainable, "by_component": by_component}


def dynamic_axes(loaded: LoadedSpec) -> dict[str, dict[int, str]]:
    return {
        gi.name: {i: d for i, d in enumerate(gi.info.shape) if isinstance(d, str)} for gi in loaded.plan.graph_inputs
    }


def export(gm, loaded: LoadedSpec, path: Path, opset: int = 20):
    """Export an (optimized) GraphModule to ONNX at `path` with the spec's named dynamic axes."""
    from mmspec.backends import export_onnx
    from mmspec.graph.inputs import make_inputs, trace_sizes

    example = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=loaded.spec.seed)
    names = [gi.name for gi in loaded.plan.graph_inputs]
    return export_onnx(
        gm,
        tuple(example[n] for n in names),
        input_names=names,
        output_names=list(gm.meta["output_names"]),
        dynamic_axes=dynamic_axes(loaded),
        path=path,
        opset=opset,
        dim_max=loaded.plan.axes_max,
        metadata={
            "mmspec_version": mmspec.__version__,
            "spec_sha256": loaded.sha256,
            "spec_name": loaded.spec.name,
            "variant": loaded.variant or "",
        },
    )


def verify(onnx_path: Path, model, loaded: LoadedSpec, device: str = "cpu") -> dict:
    """Compare ONNX Runtime with the eager model on the verification shapes (DESIGN.md policy)."""
    import torch

    from mmspec.backends import TOLERANCE_FP32, available_providers, verify_onnx
    from mmspec.graph.inputs import make_inputs, verification_shapes

    batch_axes = {m.batch for m in loaded.spec.modalities.values()}
    cases = [
        {k: v.numpy() for k, v in make_inputs(loaded.plan, sizes, seed=loaded.spec.seed + i + 1).items()}
        for i, sizes in enumerate(verification_shapes(loaded.plan, batch_axes))
    ]

    def reference(case):
        with torch.no_grad():
            outs = model({k: torch.from_numpy(v) for k, v in case.items()})
        return {name: t.numpy() for name, t in zip(model.output_names, outs, strict=True)}

    return verify_onnx(
        onnx_path,
        reference,
        cases,
        output_names=model.output_names,
        providers=available_providers(device),
        **TOLERANCE_FP32,
    )


@contextmanager
def _step(name: str, timings: dict, progress: Progress | None):
    if progress:
        progress(name)
    start = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - start, 4)


def compile(  # noqa: A001  (the verb users expect)
    path: str | Path,
    out_dir: str | Path = "build",
    variant: str | None = None,
    sets: Sequence[str] = (),
    opset: int = 20,
    device: str = "cpu",
    verify_export: bool = True,
    progress: Progress | None = None,
) -> dict:
    """Spec -> verified `out_dir/<stem>.onnx` + `out_dir/<stem>.report.json`; returns the report.

    Nothing is written unless every step passed: the model is exported into a temporary directory
    inside `out_dir` and moved into place only after verification.
    """
    timings: dict[str, float] = {}
    with _step("load", timings, progress):
        loaded = load_spec(path, variant, sets)
    import torch

    from mmspec.backends import discard, publish

    with _step("build", timings, progress):
        model = build(loaded)
    with _step("capture", timings, progress):
        gm = capture(model)
    with _step("passes", timings, progress):
        gm, records = optimize(gm)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp_dir = Path(tempfile.mkdtemp(prefix=".mmspec-", dir=out))
    except OSError as e:
        raise CompileError(f"cannot write to {out}: {e.strerror or e}") from e
    final = out / f"{loaded.stem}.onnx"
    try:
        tmp = tmp_dir / final.name
        with _step("export", timings, progress), torch.no_grad():
            result = export(gm, loaded, tmp, opset)
        verification = None
        if verify_export:
            with _step("verify", timings, progress):
                verification = verify(tmp, model, loaded, device)
            if not verification["passed"]:
                from mmspec.backends import first_failure_message

                raise VerificationError(f"verification failed: {first_failure_message(verification)}")
        report = _report(loaded, model, records, result, final, verification, timings)
        report_tmp = tmp_dir / "report.json"
        report_tmp.write_text(json.dumps(report, indent=2) + "\n")
        publish(tmp, final)
        os.replace(report_tmp, out / f"{loaded.stem}.report.json")
        return report
    except BaseException:
        discard(tmp_dir / final.name)
        raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _report(loaded, model, records, result, final: Path, verification, timings) -> dict:
    def sig(tensors):
        return [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in tensors]

    return {
        "spec": loaded.path,
        "name": loaded.spec.name,
        "variant": loaded.variant,
        "mmspec_version": mmspec.__version__,
        "spec_sha256": loaded.sha256,
        "params": param_counts(model),
        "passes": [r.as_dict() for r in records],
        "onnx": {
            "path": str(final),
            "opset": result.opset,
            "bytes": result.bytes,
            "inputs": sig(result.inputs),
            "outputs": sig(result.outputs),
        },
        "verification": verification and {k: v for k, v in verification.items() if k != "failures"},
        "timings_s": timings,
    }


def model_summary(loaded: LoadedSpec) -> dict:
    """Parameter counts and forward FLOPs at the trace shape, on the meta device (nothing allocated)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mmspec.graph.inputs import make_inputs, trace_sizes

    model = build(loaded, device="meta")
    sizes = trace_sizes(loaded.plan)
    inputs = {k: v.to("meta") for k, v in make_inputs(loaded.plan, sizes).items()}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(inputs)
    return {"params": param_counts(model), "flops": {"forward": int(counter.get_total_flops()), "shape": sizes}}
