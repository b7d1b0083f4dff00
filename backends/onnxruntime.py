"""Run an ONNX file on onnxruntime and compare it with an eager reference (docs/contracts.md).

`verify_onnx` never raises on a mismatch or an ORT failure: it returns the report's "verification"
dict plus a "failures" list, and the caller raises `VerificationError(first_failure_message(report))`.

Comparison, per output and case: names and order, dtype and shape must be equal; every symbolic output dim
the file declares (a named axis or an expression such as `regions + text_len`), evaluated at the case's
input sizes, must equal ORT's actual size; NaN, +Inf and -Inf
positions must agree; at every position finite in both, ``|ort - ref| <= atol + rtol * |ref|``.
Reported figures, over those finite positions: ``max_abs = max |ort - ref|`` and
``max_rel = max |ort - ref| / max(|ref|, atol)`` -- relative error with the reference magnitude
floored at `atol`, so values near zero (where the absolute term governs) do not blow it up.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from mmspec.errors import CompileError
from mmspec.spec.tensors import dim_axes, dim_value

from .onnx_export import onnx_signature

ORT_VERSION = ort.__version__
TOLERANCE_FP32 = {"atol": 1e-4, "rtol": 1e-3}
OPTIMIZATIONS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def available_providers(device: str = "cpu") -> list[str]:
    """The ORT providers to verify on: CPU alone, or CUDA then CPU for `device == "cuda"`.

    Raises `CompileError` when CUDA is asked for but torch sees no GPU or ORT has no CUDA provider.
    """
    if device == "cpu":
        return [CPU]
    if device != "cuda":
        raise ValueError(f"unknown device {device!r}")
    if not torch.cuda.is_available():
        raise CompileError("--device cuda: torch sees no CUDA device")
    if CUDA not in ort.get_available_providers():
        raise CompileError(f"--device cuda: onnxruntime {ort.__version__} has no {CUDA}")
    return [CUDA, CPU]


def make_session(path: Path, provider: str, optimization: str, threads: int | None = None) -> ort.InferenceSession:
    """A session on `provider` (CUDA with TF32 off and CPU fallback for unsupported nodes), with graph
    optimizations "disabled" or "all", quiet logging and no thread spinning; `threads` fixes the intra-op thread
    count (inter-op: 1), else ORT chooses."""
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = OPTIMIZATIONS[optimization]
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    providers = [(CUDA, {"use_tf32": "0"}), CPU] if provider == CUDA else [provider]
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


def op_profile(path: Path, feed: dict[str, np.ndarray], runs: int = 10, threads: int | None = None) -> dict[str, float]:
    """Share of ONNX Runtime's kernel time per operator type (CPU, all optimizations) over `runs` runs of `feed`,
    from ORT's own profiler; the shares sum to 1, largest first."""
    import json
    import tempfile

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.enable_profiling = True
    if threads is not None:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with tempfile.TemporaryDirectory(prefix="mmspec-profile-") as tmp:
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), sess_options=options, providers=[CPU])
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] = per_op.get(e["args"]["op_name"], 0.0) + e["dur"]
    total = sum(per_op.values()) or 1.0
    return {op: round(t / total, 4) for op, t in sorted(per_op.items(), key=lambda kv: -kv[1])}


def verify_onnx(
    path: Path,
    reference: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    cases: list[dict[str, np.ndarray]],
    *,
    output_names: list[str],
    providers: list[str],
    atol: float = 1e-4,
    rtol: float = 1e-3,
    cosine: float | None = None,
    values: bool = True,
) -> dict:
    """Run every case on every provider at ORT optimization "disabled" and "all" and compare each
    output with `reference(case)` (computed once per case, on copies of the inputs).

    `cosine` also requires each float output's cosine similarity with the reference to be at least that (the
    fp16 rule); `values=False` checks everything but the values themselves (int8: names, dtypes, shapes,
    symbolic dims and NaN/Inf positions), and the caller reports how far they moved.

    Returns {"passed", "tolerance", "cases": [{"shapes", "provider", "ort_optimization", "outputs":
    {name: {"max_abs", "max_rel"}}}], "failures": [str]}. ORT load and run errors become failures.
    """
    dims = _symbolic_dims(path)
    out_dims = _output_dims(path)
    failures: list[str] = [] if cases else ["no verification cases"]
    expected = [reference({k: v.copy() for k, v in case.items()}) for case in cases]
    combos = [(provider, opt) for provider in providers for opt in OPTIMIZATIONS]
    records: list[list[dict]] = [[] for _ in cases]  # case-major, as reported
    for provider, opt in combos:  # one session at a time: a single copy of the weights in ORT
        session = _session(path, provider, opt, output_names, failures)
        for case, want, case_records in zip(cases, expected, records, strict=True):
            shapes = {k: [int(n) for n in v.shape] for k, v in case.items()}
            record = {"shapes": shapes, "provider": provider, "ort_optimization": opt, "outputs": {}}
            case_records.append(record)
            if session is not None:
                _check_case(session, case, want, record, dims, out_dims, output_names, failures,
                            atol=atol, rtol=rtol, cosine=cosine, values=values)
        del session
    return {
        "passed": not failures,
        "tolerance": {"atol": atol, "rtol": rtol, **({"cosine": cosine} if cosine is not None else {})}
        if values else None,
        "cases": [record for case_records in records for record in case_records],
        "failures": failures,
    }


def _session(path: Path, provider: str, opt: str, output_names: list[str],
             failures: list[str]) -> ort.InferenceSession | None:
    """A verification session, or None (with the reason in `failures`) when it cannot load or does not run on
    `provider`; wrong output names are a failure too."""
    where = f"{provider}, ort_optimization={opt}"
    try:
        session = make_session(path, provider, opt)
    except Exception as e:
        failures.append(f"ORT cannot load the model: {_first_line(e)} ({where})")
        return None
    names = [o.name for o in session.get_outputs()]
    if names != list(output_names):
        failures.append(f"ORT outputs are {names}, expected {list(output_names)} ({where})")
    if provider not in session.get_providers():
        failures.append(f"{provider} did not start; ORT ran on {session.get_providers()} ({where})")
        return None
    return session


def _check_case(session: ort.InferenceSession, case: dict, expected: dict, record: dict, dims: dict, out_dims: dict,
                output_names: list[str], failures: list[str], **rule) -> None:
    """Run one case and compare every output with `expected` under `rule`; stats into `record`."""
    shapes = record["shapes"]
    sizes = {d: shapes[inp][axis] for inp, axes in dims.items() if inp in shapes for axis, d in axes}
    where = f"{_describe(shapes, dims)}, {record['provider']}, ort_optimization={record['ort_optimization']}"
    try:
        got = session.run(None, case)
    except Exception as e:
        failures.append(f"ORT run failed: {_first_line(e)} ({where})")
        return
    names = [o.name for o in session.get_outputs()]
    for name, actual in zip(names, got, strict=True):
        if name not in output_names:
            continue
        if problem := _check_dims(name, actual.shape, out_dims.get(name, []), sizes):
            failures.append(f"{problem} ({where})")
        stats, problem = _compare(name, actual, expected[name], **rule)
        if stats is not None:
            record["outputs"][name] = stats
        if problem:
            failures.append(f"{problem} ({where})")


def first_failure_message(report: dict) -> str:
    """The first failure of a `verify_onnx` report, for `VerificationError`; "" when it passed."""
    failures = report["failures"]
    more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
    return failures[0] + more if failures else ""


def _compare(name: str, actual: np.ndarray, ref: np.ndarray, *, atol: float, rtol: float,
             cosine: float | None = None, values: bool = True) -> tuple[dict | None, str]:
    """(max_abs/max_rel stats or None, problem text or "") for one output."""
    ref = np.asarray(ref)
    if actual.dtype != ref.dtype:
        return None, f"output '{name}' has dtype {actual.dtype}, eager has {ref.dtype}"
    if actual.shape != ref.shape:
        return None, f"output '{name}' has shape {list(actual.shape)}, eager has {list(ref.shape)}"
    if not np.issubdtype(ref.dtype, np.inexact):
        atol = rtol = 0.0  # integers and booleans must be equal
    a, r = actual.astype(np.float64), ref.astype(np.float64)
    bad_special = np.count_nonzero(
        (np.isnan(a) != np.isnan(r)) | (np.isposinf(a) != np.isposinf(r)) | (np.isneginf(a) != np.isneginf(r))
    )
    finite = np.isfinite(a) & np.isfinite(r)
    diff, mag = np.abs(a - r)[finite], np.abs(r)[finite]
    max_abs = float(diff.max(initial=0.0))
    floor = max(atol, np.finfo(np.float64).tiny)
    max_rel = float((diff / np.maximum(mag, floor)).max(initial=0.0))
    stats = {"max_abs": max_abs, "max_rel": max_rel}
    if bad_special:
        return stats, f"output '{name}' has NaN/Inf at {bad_special} positions where eager differs"
    if not values:
        return stats, ""
    if cosine is not None and np.issubdtype(ref.dtype, np.inexact) and diff.size:
        norms = np.linalg.norm(a[finite]) * np.linalg.norm(r[finite])
        similarity = float(a[finite] @ r[finite] / norms) if norms else float(np.array_equal(a[finite], r[finite]))
        stats["cosine"] = similarity
        if similarity < cosine:
            return stats, f"output '{name}' has cosine similarity {similarity:.5f} with eager, below {cosine}"
    if np.any(diff > atol + rtol * mag):
        return stats, f"output '{name}' differs: max_abs {max_abs:.1e} max_rel {max_rel:.1e}"
    return stats, ""


def _check_dims(name: str, shape: tuple[int, ...], declared: list[tuple[int, str]], sizes: dict[str, int]) -> str:
    """"" when every declared symbolic dim of output `name` (named axes and their expressions, evaluated at the
    case's input sizes) equals ORT's actual size; else the first mismatch. Dims of other symbols are skipped."""
    for axis, dim in declared:
        try:
            names = dim_axes(dim)
        except ValueError:  # an exporter symbol such as `u0` or `floor(...)`: nothing to evaluate
            continue
        if axis < len(shape) and names <= sizes.keys() and shape[axis] != dim_value(dim, sizes):
            at = " ".join(f"{n}={sizes[n]}" for n in sorted(names))
            return (f"output '{name}' axis {axis} has size {shape[axis]}, but the file declares '{dim}' = "
                    f"{dim_value(dim, sizes)} at {at}")
    return ""


def _output_dims(path: Path) -> dict[str, list[tuple[int, str]]]:
    """Output name -> [(axis, declared dim)] for the file's symbolic output dims."""
    _, outputs = onnx_signature(path)
    return {s.name: [(i, d) for i, d in enumerate(s.shape) if isinstance(d, str) and d != "?"] for s in outputs}


def _symbolic_dims(path: Path) -> dict[str, list[tuple[int, str]]]:
    """Input name -> [(axis, dim name)] for the file's symbolic input dims."""
    inputs, _ = onnx_signature(path)
    return {s.name: [(i, d) for i, d in enumerate(s.shape) if isinstance(d, str)] for s in inputs}


def _describe(shapes: dict[str, list[int]], dims: dict[str, list[tuple[int, str]]]) -> str:
    """'shapes batch=1 seq=7' from the named dims, or the raw input shapes when none are named."""
    named = {d: shapes[inp][axis] for inp, axes in dims.items() if inp in shapes for axis, d in axes}
    if named:
        return "shapes " + " ".join(f"{d}={n}" for d, n in named.items())
    return "shapes " + " ".join(f"{k}={v}" for k, v in shapes.items())


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
