"""The public Python API; the CLI is a thin shell over it.

spec = load_spec("specs/bert.yaml", variant="tiny")
report = compile("specs/bert.yaml", out_dir="build", variant="tiny")
"""

from __future__ import annotations

import gc
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mmspec
from mmspec.errors import CompileError, SpecError, UsageError, VerificationError
from mmspec.spec.budget import DEFAULT_BUDGET, Budget
from mmspec.spec.loader import LoadedSpec
from mmspec.spec.loader import load_spec as _load_spec

Progress = Callable[[str], None]


def spec_model():
    """The root pydantic model for the components registered now (user components included)."""
    from mmspec.registry import spec_model as _spec_model

    return _spec_model()


def load_spec(path: str | Path, variant: str | None = None, sets: Sequence[str] = (),
              budget: Budget | None = DEFAULT_BUDGET) -> LoadedSpec:
    """Load, override, validate and plan a spec (torch-free). Raises SpecError / UsageError.

    The parameter and activation estimates are checked against `budget` (None: no limits) by formula,
    before anything is allocated (mmspec.spec.budget)."""
    return _load_spec(path, spec_model(), variant, sets, budget)


def check_budget_on_meta(loaded: LoadedSpec, budget: Budget | None = DEFAULT_BUDGET) -> None:
    """Count the parameters of components without a formula on the meta device (nothing is allocated);
    raise a located SpecError when the total exceeds `budget.max_params`."""
    from mmspec.spec.budget import params_message

    est = loaded.estimate
    budget = budget and budget.for_spec(loaded.spec)
    if budget is None or budget.max_params is None or not est.unknown:
        return
    counts = param_counts(build(loaded, device="meta"))["by_component"]
    total = est.params + sum(counts.get(name, 0) for name in est.unknown)
    if total <= budget.max_params:
        return
    name = max(est.unknown, key=lambda n: counts.get(n, 0))
    section = loaded.plan.node(name).section
    largest = f"; largest without a formula: {section}.{name} with {counts.get(name, 0):,} (meta device)"
    raise SpecError([loaded.where.diag((section, name), "budget", params_message(total, budget.max_params, largest),
                                       at="key")])


def check_memory(loaded: LoadedSpec, budget: Budget | None = DEFAULT_BUDGET) -> None:
    """Refuse (UsageError) a compile whose fp32 weights, held twice at least (the model and its export), exceed
    this machine's physical memory, unless --max-params was given explicitly (the user insists). A spec's own
    `budget:` lets validate accept a 12B model; this keeps compile from being killed halfway through it."""
    import os

    from mmspec.spec.budget import PARAM_BYTES, fmt_bytes, fmt_count

    if budget is not None and "max_params" in budget.explicit:
        return
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): nothing to compare with
        return
    need = 2 * loaded.estimate.params * PARAM_BYTES
    if need > memory:
        raise UsageError(f"{loaded.path}{f' --variant {loaded.variant}' if loaded.variant else ''}: "
                         f"{fmt_count(loaded.estimate.params)} parameters need at least {fmt_bytes(need)} to compile "
                         f"(the model and its export), and this machine has {fmt_bytes(memory)}; compile a smaller "
                         f"variant, or pass --max-params to try anyway")


def build(loaded: LoadedSpec, device: str = "cpu", weights: str | Path | None = None, allow_torch_load: bool = False):
    """The eval-mode nn.Module of a loaded spec (device "meta" allocates nothing).

    With `weights`, its tensors are then loaded from that checkpoint (`load_weights`; on "meta" only checked),
    and the load report is the model's `weights_report`."""
    from mmspec.graph.builder import build as _build

    try:
        model = _build(loaded.plan, loaded.spec, device).eval()
    except Exception as e:
        raise CompileError(f"building the model failed: {type(e).__name__}: {e}") from e
    if weights is not None:
        model.weights_report = load_weights(model, loaded, weights, allow_torch_load, apply=device != "meta")
    return model


def load_weights(model, loaded: LoadedSpec, path: str | Path, allow_torch_load: bool = False, apply: bool = True):
    """Load a checkpoint (safetensors file or directory; a PyTorch pickle only with `allow_torch_load`, and then
    tensors only) into `model`, strictly, through the spec's `weights:` name map; returns the load report.
    Raises WeightsError (exit 2) listing every problem; with `apply=False` it only checks."""
    from mmspec.weights import load_weights as _load_weights

    return _load_weights(model, loaded, path, allow_torch_load=allow_torch_load, apply=apply)


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


def graph_views(model) -> dict:
    """{graph name: module computing only that graph} for the graphs of a spec's `exports:` (shared weights)."""
    from mmspec.graph.builder import GraphView

    return {g.name: GraphView(model, g) for g in model.plan.graphs}


class EagerGraph:
    """A built model (or a view of one graph of `exports:`) as a `mmspec.runtime.Graph`: numpy arrays in and out,
    run in eval mode without gradients, so the runtime's drivers run the same loop on it as on ONNX Runtime."""

    def __init__(self, module):
        self.module = module
        self.input_names = list(module.input_names)
        self.output_names = list(module.output_names)

    def __call__(self, feeds: dict) -> dict:
        import numpy as np
        import torch

        with torch.no_grad():
            outs = self.module({n: torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.input_names})
        return {n: t.numpy() for n, t in zip(self.output_names, outs, strict=True)}


def eager_graph(model, graph: str | None = None) -> EagerGraph:
    """The eager model, or its view of graph `graph` of `exports:`, as a numpy-in/numpy-out runtime Graph."""
    if graph is None:
        return EagerGraph(model)
    views = graph_views(model)
    if graph not in views:
        raise KeyError(f"no graph {graph!r} in exports:; the spec has {sorted(views)}")
    return EagerGraph(views[graph])


def dynamic_axes(loaded: LoadedSpec, graph=None) -> dict[str, dict[int, str]]:
    """The named axes of each input of the model, or of one graph of `exports:`."""
    inputs = loaded.plan.graph_inputs if graph is None else graph.inputs
    return {gi.name: {i: d for i, d in enumerate(gi.info.shape) if isinstance(d, str)} for gi in inputs}


def output_axes(loaded: LoadedSpec, graph=None) -> dict[str, dict[int, str]]:
    """The symbolic axes the plan declares for each exported output (of the model, or of one graph of `exports:`):
    a named axis or a derived one (`regions + text_len`); the ONNX file's outputs carry them and verification
    evaluates them."""
    plan = loaded.plan
    axes = {
        name: {i: d for i, d in enumerate(plan.bundles[node][fld].shape) if isinstance(d, str)}
        for name, node, fld in (plan.outputs if graph is None else graph.outputs)
    }
    for t in graph.cache_outputs if graph is not None else ():
        axes[t.name] = {i: d for i, d in enumerate(t.info.shape) if isinstance(d, str)}
    return axes


def export(gm, loaded: LoadedSpec, path: Path, opset: int = 20, graph=None, external_data: bool | None = None):
    """Export an (optimized) GraphModule to ONNX at `path` with the spec's named dynamic axes on its inputs and
    the plan's symbolic shapes on its outputs; `graph`: the ExportGraph of `exports:` that `gm` captures.
    `external_data`: as `export_onnx` (None: a sidecar only for weights over 1.5 GiB)."""
    from mmspec.backends import export_onnx
    from mmspec.graph.inputs import fit_positions, make_inputs, trace_sizes

    inputs = None if graph is None else graph.inputs
    sizes = fit_positions(trace_sizes(loaded.plan), graph, floor=2)
    example = make_inputs(loaded.plan, sizes, seed=loaded.spec.seed, inputs=inputs)
    names = list(gm.meta["input_names"])
    return export_onnx(
        gm,
        tuple(example[n] for n in names),
        input_names=names,
        output_names=list(gm.meta["output_names"]),
        dynamic_axes=dynamic_axes(loaded, graph),
        output_axes=output_axes(loaded, graph),
        path=path,
        opset=opset,
        external_data=external_data,
        dim_max=loaded.plan.axes_max,
        dim_min=loaded.plan.axes_min,
        metadata={
            "mmspec_version": mmspec.__version__,
            "spec_sha256": loaded.sha256,
            "spec_name": loaded.spec.name,
            "variant": loaded.variant or "",
        },
    )


def verify(onnx_path: Path, model, loaded: LoadedSpec, device: str = "cpu", graph=None,
           precision: str = "fp32") -> dict:
    """Compare ONNX Runtime with the eager fp32 model (or, with `graph`, its view `model` of that graph of
    `exports:`) on the verification shapes (docs/contracts.md); cases differing only in axes the inputs lack are
    run once. `precision` picks the rule: "fp32" and "fp16" their tolerances, "int8" everything but the values
    (see `precision_delta` for how far they moved)."""
    return verify_expected(onnx_path, expected_outputs(model, loaded, graph), device, precision)


def verify_expected(onnx_path: Path, expected: Expected, device: str = "cpu", precision: str = "fp32") -> dict:
    """`verify` against outputs the eager model gave beforehand (`expected_outputs`), so that the model need not
    be held while ONNX Runtime holds the weights."""
    from mmspec.backends import TOLERANCE_FP16, TOLERANCE_FP32, available_providers, verify_onnx

    rule = {"fp32": TOLERANCE_FP32, "fp16": TOLERANCE_FP16, "int8": {"values": False}}[precision]
    return verify_onnx(onnx_path, expected.lookup, expected.cases, output_names=expected.output_names,
                       providers=available_providers(device), **rule)


def precision_delta(onnx_path: Path, expected: Expected, loaded: LoadedSpec) -> dict:
    """How far a reduced-precision file's outputs are from the eager fp32 model's (`expected_outputs`) on the
    verification inputs (ORT CPU, all optimizations): per output the max abs difference over the cases and, for
    classifier logits, the share of positions whose arg-max agrees."""
    import numpy as np

    from mmspec.backends import accuracy_delta, make_session

    session = make_session(onnx_path, "CPUExecutionProvider", "all")
    classifiers = {name for name, node, _ in loaded.plan.outputs
                   if node in loaded.spec.heads and "classifier" in loaded.spec.heads[node].type}
    got: dict[str, list] = {}
    ref: dict[str, list] = {}
    for case, want in zip(expected.cases, expected.outputs, strict=True):
        for name, value in zip(expected.output_names, session.run(expected.output_names, case), strict=True):
            rows = (-1, value.shape[-1]) if name in classifiers and value.ndim else (-1,)  # positions x classes
            got.setdefault(name, []).append(value.reshape(rows))
            ref.setdefault(name, []).append(want[name].reshape(rows))
    return accuracy_delta({k: np.concatenate(v) for k, v in got.items()},
                          {k: np.concatenate(v) for k, v in ref.items()}, classifiers)


@dataclass
class Expected:
    """The verification cases of one graph (numpy feeds) and the eager model's outputs on each."""

    cases: list[dict]
    outputs: list[dict]
    output_names: list[str]

    def lookup(self, case: dict) -> dict:
        """The outputs for one of `cases` (verify_onnx passes copies: matched by value)."""
        import numpy as np

        for known, out in zip(self.cases, self.outputs, strict=True):
            if known.keys() == case.keys() and all(np.array_equal(known[k], case[k]) for k in case):
                return out
        raise KeyError("not a verification case")


def expected_outputs(model, loaded: LoadedSpec, graph=None) -> Expected:
    """Run the eager model (or a graph's view of it) on its verification cases."""
    cases, reference = _verification(model, loaded, graph)
    outputs = [reference({k: v.copy() for k, v in case.items()}) for case in cases]  # the model may write inputs
    return Expected(cases, outputs, list(model.output_names))


def _verification(model, loaded: LoadedSpec, graph=None):
    """(verification cases as numpy feeds, eager reference function) for the model or one graph's view."""
    import torch

    from mmspec.graph.inputs import make_inputs, verification_shapes

    inputs = loaded.plan.graph_inputs if graph is None else graph.inputs
    axes = {d for gi in inputs for d in gi.info.shape if isinstance(d, str)}
    batch_axes = {m.batch for m in loaded.spec.modalities.values()}
    cases, seen = [], []
    for i, sizes in enumerate(verification_shapes(loaded.plan, batch_axes, graph)):
        key = {k: v for k, v in sizes.items() if k in axes}
        if key in seen:
            continue
        seen.append(key)
        case = make_inputs(loaded.plan, sizes, seed=loaded.spec.seed + i + 1, inputs=graph and graph.inputs)
        cases.append({k: v.numpy() for k, v in case.items()})

    def reference(case):
        with torch.no_grad():
            outs = model({k: torch.from_numpy(v) for k, v in case.items()})
        return {name: t.numpy() for name, t in zip(model.output_names, outs, strict=True)}

    return cases, reference


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
    budget: Budget | None = DEFAULT_BUDGET,
    weights: str | Path | None = None,
    allow_torch_load: bool = False,
    precision: str = "fp32",
    quantize: str | None = None,
    calibration: str | Path | None = None,
) -> dict:
    """Spec -> verified `out_dir/<stem>.onnx` + `out_dir/<stem>.report.json`; returns the report.

    With `weights`, the model's tensors come from that checkpoint (see `load_weights`) and the report gains
    "weights" (the load report) and a "weights" timing. `precision="fp16"` publishes an fp16 file (fp32 inputs
    and outputs) verified with the fp16 rule; `quantize="int8"` an int8 one (dynamic, or static with the
    `calibration` batch file), checked in everything but its values; both report how far the outputs moved
    from fp32 under "precision".

    Nothing is written unless every step passed: the model is exported into a temporary directory
    inside `out_dir` and moved into place only after verification. A spec over `budget` is refused
    (SpecError) before torch is imported.
    """
    timings: dict[str, float] = {}
    mode = _precision_mode(precision, quantize, calibration)
    with _step("load", timings, progress):
        loaded = load_spec(path, variant, sets, budget)
        _check_outputs(Path(out_dir), loaded, device)
        check_budget_on_meta(loaded, budget)
        check_memory(loaded, budget)
        feeds = None if calibration is None else _calibration_feeds(calibration, loaded)
    import torch

    from mmspec.backends import discard, inline_weights, publish_pairs

    with _step("build", timings, progress):
        model = build(loaded)
    if weights is not None:
        with _step("weights", timings, progress):
            weights_report = load_weights(model, loaded, weights, allow_torch_load)
    if loaded.plan.graphs:
        if mode != "fp32":
            raise UsageError(f"--precision/--quantize: {mode} is for single-graph specs; this one has exports:")
        owned = [model]
        del model  # _compile_graphs drops the model before ONNX Runtime loads the exports
        return _compile_graphs(loaded, owned, Path(out_dir), opset, device, verify_export, progress, timings,
                               weights_report if weights is not None else None)
    with _step("capture", timings, progress):
        gm = capture(model)
    with _step("passes", timings, progress):
        gm, records = optimize(gm)
    head = _report_head(loaded, model)
    out = Path(out_dir)
    tmp_dir = _staging(out)
    final = out / f"{loaded.stem}.onnx"
    try:
        tmp = tmp_dir / final.name
        expected = expected_outputs(model, loaded) if verify_export or mode != "fp32" else None
        with _step("export", timings, progress), torch.no_grad():
            result = export(gm, loaded, tmp if mode == "fp32" else tmp_dir / "fp32.onnx", opset, external_data=True)
            release_memory(model)  # from here on the file holds the weights, not torch as well
            del gm, model
            result = inline_weights(result)
        if mode != "fp32":
            with _step("precision", timings, progress):
                result, method = _lower(result, tmp, mode, feeds)
        verification = None
        if verify_export:
            with _step("verify", timings, progress):
                verification = verify_expected(tmp, expected, device, precision=mode)
            if not verification["passed"]:
                from mmspec.backends import first_failure_message

                rule = "" if mode == "fp32" else f" ({mode})"
                raise VerificationError(f"verification failed{rule}: {first_failure_message(verification)}")
        report = {**head, **_graph_section(records, result, final, verification), "timings_s": timings,
                  "peak_rss_bytes": peak_rss()}
        report["precision"] = {"mode": mode}
        if mode != "fp32":
            report["precision"] |= {"method": method, "vs_fp32": precision_delta(tmp, expected, loaded)}
        if weights is not None:
            report["weights"] = weights_report
        report_tmp = tmp_dir / "report.json"
        report_tmp.write_text(json.dumps(report, indent=2) + "\n")
        _publish([*publish_pairs(tmp, final), (report_tmp, out / f"{loaded.stem}.report.json")], tmp_dir)
        return report
    except BaseException:
        discard(tmp_dir / final.name)
        raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _precision_mode(precision: str, quantize: str | None, calibration) -> str:
    """"fp32", "fp16" or "int8" from the options; UsageError for combinations that mean nothing."""
    if precision not in ("fp32", "fp16"):
        raise UsageError(f"--precision {precision}: choose fp32 or fp16")
    if quantize not in (None, "int8"):
        raise UsageError(f"--quantize {quantize}: only int8")
    if quantize and precision != "fp32":
        raise UsageError("--quantize int8 quantizes the fp32 graph; leave out --precision fp16")
    if calibration is not None and not quantize:
        raise UsageError("--calibration is the batch that static --quantize int8 measures ranges on; add it")
    return quantize or precision


def _calibration_feeds(path: str | Path, loaded: LoadedSpec) -> list[dict]:
    """The calibration batch file (the format of `fit --batch-file`) as feeds, one example per feed."""
    from mmspec.spec.files import kind_problem
    from mmspec.train.data import read_batch_file

    if problem := kind_problem(path):
        raise UsageError(f"--calibration {path}: {problem}")

    inputs = read_batch_file(path, loaded, option="--calibration", with_targets=False).inputs
    rows = next(iter(inputs.values())).shape[0] if inputs else 0
    return [{k: v[i:i + 1].numpy() for k, v in inputs.items()} for i in range(rows)]


def _lower(result, dst: Path, mode: str, feeds: list[dict] | None):
    """The fp32 export `result` converted to `mode` at `dst`: (the ExportResult of the new file, how it was
    converted)."""
    import dataclasses

    from mmspec.backends import ExportResult, quantize_int8, to_fp16

    if mode == "fp16":
        to_fp16(result.path, dst)
        method = "float16 conversion (fp32 inputs and outputs)"
    else:
        method = f"{quantize_int8(result.path, dst, feeds)} int8 quantization"
    data = dst.parent / f"{dst.name}.data"
    size = dst.stat().st_size + (data.stat().st_size if data.exists() else 0)
    lowered: ExportResult = dataclasses.replace(result, path=dst, bytes=size, external_data=data.exists())
    return lowered, method


def _compile_graphs(loaded, owned: list, out: Path, opset: int, device: str, verify_export: bool,
                    progress: Progress | None, timings: dict, weights_report: dict | None) -> dict:
    """`compile` of a spec with `exports:`: per graph, capture, passes, the eager outputs on its verification
    cases and export to `<stem>.<graph>.onnx`; then, with the model (`owned`, taken from the caller) released,
    each graph verified on ONNX Runtime; then the report and `<stem>.manifest.json`, all published only after
    every graph verified."""
    import torch

    from mmspec.backends import discard, first_failure_message, inline_weights, publish_pairs

    model = owned.pop()
    tmp_dir = _staging(out)
    graphs = {g.name: g for g in loaded.plan.graphs}
    finals = {name: out / f"{loaded.stem}.{name}.onnx" for name in graphs}
    try:
        exported = {}
        for name, view in graph_views(model).items():
            with _step(f"capture.{name}", timings, progress):
                gm = capture(view)
            with _step(f"passes.{name}", timings, progress):
                gm, records = optimize(gm)
            expected = expected_outputs(view, loaded, graphs[name]) if verify_export else None
            with _step(f"export.{name}", timings, progress), torch.no_grad():
                result = export(gm, loaded, tmp_dir / finals[name].name, opset, graphs[name], external_data=True)
            exported[name] = (records, result, expected)
        head = _report_head(loaded, model)
        release_memory(model)  # from here on the files hold the weights, not torch as well
        del model, view, gm
        sections = {}
        for name, (records, result, expected) in exported.items():
            result = inline_weights(result)
            verification = None
            if verify_export:
                with _step(f"verify.{name}", timings, progress):
                    verification = verify_expected(tmp_dir / finals[name].name, expected, device)
                if not verification["passed"]:
                    raise VerificationError(f"graph {name!r}: verification failed: "
                                            f"{first_failure_message(verification)}")
            sections[name] = _graph_section(records, result, finals[name], verification)
        report = {**head, "graphs": sections, "timings_s": timings, "peak_rss_bytes": peak_rss()}
        if weights_report is not None:
            report["weights"] = weights_report
        (tmp_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp_dir / "manifest.json").write_text(json.dumps(manifest(loaded, sections, finals), indent=2) + "\n")
        pairs = [pair for final in finals.values() for pair in publish_pairs(tmp_dir / final.name, final)]
        pairs += [(tmp_dir / "report.json", out / f"{loaded.stem}.report.json"),
                  (tmp_dir / "manifest.json", out / f"{loaded.stem}.manifest.json")]
        _publish(pairs, tmp_dir)
        return report
    except BaseException:
        for final in finals.values():
            discard(tmp_dir / final.name)
        raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def release_memory(model) -> None:
    """Free the weights of `model`, which must not run again, and give the freed heap back to the system (glibc's
    malloc_trim; a no-op elsewhere), so that the peak of a compile is the larger of export and verification, not
    their sum. Tensors are emptied in place: the exporter's libraries may keep references to them (onnxscript
    0.7's module-level rewrite rules hold the last graph they matched, whose initializers wrap the weights)."""
    import ctypes
    import ctypes.util

    import torch

    tensors = [*model.parameters(), *model.buffers()]
    for tensor in tensors:
        tensor.data = torch.empty(0, dtype=tensor.dtype, device=tensor.device)
    gc.collect()
    if any(t.is_cuda for t in tensors):
        torch.cuda.empty_cache()  # for ONNX Runtime's CUDA session
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def _staging(out: Path) -> Path:
    """A fresh `.mmspec-*` directory inside `out` (made if needed), where outputs wait until they are published
    (same file system, so publishing is a rename); CompileError (exit 1) when `out` cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".mmspec-", dir=out))
    except OSError as e:
        raise CompileError(f"cannot write to {out}: {e.strerror or e}") from e


def _check_outputs(out: Path, loaded: LoadedSpec, device: str) -> None:
    """Before any work: files that compile would replace but must not (read-only, directories), and a CUDA
    device that is not there. UsageError (exit 2)."""
    from mmspec.spec.files import publish_problem

    stem = loaded.stem
    graphs = [f"{stem}.{g.name}.onnx" for g in loaded.plan.graphs] + [f"{stem}.manifest.json"] * bool(
        loaded.plan.graphs)
    names = [*(graphs or [f"{stem}.onnx"]), f"{stem}.report.json"]
    problems = [p for name in names if (p := publish_problem(out / name))]
    if problems:
        raise UsageError(f"-o {out}: {problems[0]}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: this machine has no CUDA device (torch.cuda.is_available() is false)")


def _publish(pairs: list, staging: Path) -> None:
    """Every output of one compile into place as a unit (`publish_files`); CompileError (exit 1) when that fails."""
    from mmspec.spec.files import FileProblem, describe, publish_files

    try:
        publish_files(pairs, staging)
    except FileProblem as e:
        raise CompileError(f"cannot publish: {e}") from None
    except OSError as e:
        raise CompileError(f"cannot publish into {pairs[-1][1].parent}: {describe(e)}") from None


def picture(path: str | Path, variant: str | None = None, sets: Sequence[str] = (), lowered: bool = False,
            budget: Budget | None = DEFAULT_BUDGET):
    """What `mmspec graph` draws (`mmspec.graph.picture.Picture`): the spec's component DAG with shapes and
    parameter counts, or with `lowered` its captured FX graph grouped by component. Built on the meta device, so
    full sizes cost no memory."""
    from mmspec.graph.picture import lowered_picture, spec_picture

    loaded = load_spec(path, variant, sets, budget)
    check_budget_on_meta(loaded, budget)
    model = build(loaded, device="meta")
    if lowered:
        return lowered_picture(loaded, capture(model))
    return spec_picture(loaded, param_counts(model)["by_component"])


def export_triton(
    path: str | Path,
    repo: str | Path,
    variant: str | None = None,
    sets: Sequence[str] = (),
    *,
    max_batch_size: int = 8,
    kind: str = "auto",
    count: int = 1,
    progress: Progress | None = None,
    **compile_options,
) -> dict:
    """Compile a spec (verified, as `compile` does with `compile_options`) into a Triton model repository at
    `repo`: `<model>/config.pbtxt` and `<model>/1/<graph file>` per graph, plus an ensemble for several graphs
    (`mmspec.runtime.triton`). The models' folders are published as one unit after everything verified; other
    folders in `repo` are left alone. Returns the compile report with "triton": {"repository", "models"}."""
    load_spec(path, variant, sets, compile_options.get("budget", DEFAULT_BUDGET))  # a bad spec: refused, torch-free
    from mmspec.backends import publish_pairs
    from mmspec.runtime.triton import plan_repository

    repo = Path(repo)
    staging = _staging(repo)
    made: list[Path] = []
    try:
        report = compile(path, staging / "compiled", variant, sets, progress=progress, **compile_options)
        stem = report["name"] + (f"-{report['variant']}" if report["variant"] else "")
        if "graphs" in report:
            listing = json.loads((staging / "compiled" / f"{stem}.manifest.json").read_text())
            graphs, connections = listing["graphs"], listing["connections"]
        else:
            onnx = report["onnx"]
            graphs = {stem: {"file": Path(onnx["path"]).name, "inputs": onnx["inputs"], "outputs": onnx["outputs"]}}
            connections = []
        try:
            models = plan_repository(stem, graphs, connections, max_batch_size=max_batch_size, kind=kind,
                                     count=count)
        except ValueError as e:
            raise UsageError(str(e)) from None
        pairs = []
        for m in models:
            (staging / m.name).mkdir()
            (staging / m.name / "config.pbtxt").write_text(m.config)
            pairs.append((staging / m.name / "config.pbtxt", repo / m.name / "config.pbtxt"))
            if m.file is not None:
                pairs += publish_pairs(staging / "compiled" / m.file, repo / m.name / "1" / m.file)
        for folder in sorted({dst.parent for _, dst in pairs}):
            for d in (folder.parent, folder):
                if not d.exists():
                    d.mkdir()
                    made.append(d)
        _publish(pairs, staging)
        made.clear()
        report["triton"] = {"repository": str(repo), "models": [m.name for m in models]}
        return report
    finally:
        for d in reversed(made):  # folders made for a publish that did not happen
            shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)


def manifest(loaded: LoadedSpec, sections: dict, finals: dict[str, Path]) -> dict:
    """How a server runs the graphs of `exports:` (docs/contracts.md): each graph's file, inputs (with their
    source) and outputs, in run order; which graph output feeds which graph input; and, for a graph that decodes
    step by step, which present keys/values (next states) become the next step's past ones (states), and which
    graph output a state starts from (`"step": "first"`; without one, the first step takes zeros)."""
    plan = loaded.plan
    made = {(node, fld): (g.name, name) for g in plan.graphs for name, node, fld in g.outputs}
    cross_made = {t.name: g.name for g in plan.graphs for t in g.cache_outputs if t.kind == "cross"}
    graphs, connections = {}, []
    for g in plan.graphs:
        onnx_in = {t["name"]: t for t in sections[g.name]["onnx"]["inputs"]}
        onnx_out = {t["name"]: t for t in sections[g.name]["onnx"]["outputs"]}
        cache_in = {t.name: t for t in g.cache_inputs}
        graphs[g.name] = {
            "file": finals[g.name].name,
            "inputs": [{**onnx_in[gi.name], "source": src} for gi, src in zip(g.inputs, g.sources, strict=True)],
            "outputs": [{**onnx_out[name], "node": node, "field": fld} for name, node, fld in g.outputs]
            + [{**onnx_out[t.name], "cache": _cache_entry(t)} for t in g.cache_outputs],
        }
        if g.cached:
            graphs[g.name]["cache"] = [{"node": c.node, "past_axis": c.past, "length_axis": c.length,
                                        "positions": c.positions} for c in g.cached]
        for gi, src in zip(g.inputs, g.sources, strict=True):
            to = {"graph": g.name, "input": gi.name}
            if gi.name in cache_in:
                t = cache_in[gi.name]
                if t.kind in ("past", "state"):
                    out_kind = "present" if t.kind == "past" else "next_state"
                    present = next(u.name for u in g.cache_outputs
                                   if (u.node, u.kind, u.layer, u.part) == (t.node, out_kind, t.layer, t.part))
                    connections.append({"from": {"graph": g.name, "output": present}, "to": to, "step": "next"})
                    if t.kind == "state" and t.context in made:
                        frm, output = made[t.context]
                        connections.append({"from": {"graph": frm, "output": output}, "to": to, "step": "first"})
                else:
                    connections.append({"from": {"graph": cross_made[t.name], "output": t.name}, "to": to})
            elif src.startswith("node "):
                if (gi.modality, gi.field) in made:
                    frm, output = made[gi.modality, gi.field]
                    connections.append({"from": {"graph": frm, "output": output}, "to": to})
                else:
                    connections.append({"from": None, "to": to,
                                        "note": f"no graph exports {src}; the caller provides it"})
    return {"spec": loaded.path, "name": loaded.spec.name, "variant": loaded.variant, "graphs": graphs,
            "connections": connections}


def _cache_entry(t) -> dict:
    return {"node": t.node, "kind": t.kind, "layer": t.layer, "part": t.part}


def _graph_section(records, result, final: Path, verification) -> dict:
    """One graph's `passes`, `onnx` and `verification`, as a single-graph report has them."""
    return {
        "passes": [r.as_dict() for r in records],
        "onnx": _onnx_section(result, final),
        "verification": verification and {k: v for k, v in verification.items() if k != "failures"},
    }


def _onnx_section(result, final: Path) -> dict:
    def sig(tensors):
        return [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in tensors]

    return {"path": str(final), "opset": result.opset, "bytes": result.bytes, "inputs": sig(result.inputs),
            "outputs": sig(result.outputs)}


def _report_head(loaded, model) -> dict:
    return {
        "spec": loaded.path,
        "name": loaded.spec.name,
        "variant": loaded.variant,
        "mmspec_version": mmspec.__version__,
        "spec_sha256": loaded.sha256,
        "params": param_counts(model),
    }


def peak_rss() -> int:
    """The largest resident memory this process has had, in bytes (the compile's peak, in a CLI run)."""
    import resource
    import sys

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib if sys.platform == "darwin" else kib * 1024  # macOS reports bytes, Linux KiB


def model_summary(loaded: LoadedSpec, weights: str | Path | None = None, allow_torch_load: bool = False) -> dict:
    """Parameter counts and forward FLOPs at the trace shape, on the meta device (nothing allocated).

    With `weights`, the checkpoint is checked against the model as `load_weights` would load it, and its load
    report is under "weights"."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mmspec.graph.inputs import make_inputs, trace_sizes

    model = build(loaded, device="meta", weights=weights, allow_torch_load=allow_torch_load)
    used = {d for gi in loaded.plan.graph_inputs for d in gi.info.shape if isinstance(d, str)}
    sizes = {axis: size for axis, size in trace_sizes(loaded.plan).items() if axis in used}  # no step-graph axes
    inputs = {k: v.to("meta") for k, v in make_inputs(loaded.plan, sizes).items()}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(inputs)
    info = {"params": param_counts(model), "flops": {"forward": int(counter.get_total_flops()), "shape": sizes}}
    if weights is not None:
        info["weights"] = model.weights_report
    return info


def check_fit_args(loaded: LoadedSpec, steps: int, batch: int, lr: float, rows: int | None,
                   out_dir: str | Path | None, json_path: str | Path | None) -> None:
    """Refuse, before torch is imported, what would fail or run away only after training: a non-finite or
    negative learning rate, a synthetic batch (`rows`) whose activations exceed the default budget, and output
    paths that cannot be written. UsageError (exit 2) naming the option."""
    import math

    from mmspec.spec.budget import fmt_bytes

    if steps < 1:
        raise UsageError(f"--steps {steps}: train at least one step")
    if not (math.isfinite(lr) and lr >= 0):
        raise UsageError(f"--lr {lr}: the learning rate must be a finite number >= 0")
    if rows is not None:
        limit = DEFAULT_BUDGET.max_activation_bytes
        need = rows * loaded.estimate.activation_bytes
        if limit is not None and need > limit:
            raise UsageError(f"--batch {rows}: about {fmt_bytes(need)} of activations at the spec's maximum sizes "
                             f"(forward only), over the {fmt_bytes(limit)} budget; lower --batch")
    if out_dir is not None:
        check_writable(Path(out_dir), "--out", directory=True)
    if json_path is not None:
        check_writable(Path(json_path), "--json", directory=False)


def check_writable(path: Path, option: str, directory: bool) -> None:
    """`path` can be created or replaced: what exists there is of the right kind, and a file can be created in
    the directory that will hold the output (probed with a temporary file: permission bits do not bind root)."""
    from mmspec.spec.files import describe, is_dir, kind_problem

    if path.exists() or path.is_symlink():
        if directory != is_dir(path):
            raise UsageError(f"{option} {path}: {'not a directory' if directory else 'it is a directory'}")
        if not directory and kind_problem(path):
            raise UsageError(f"{option} {path}: {kind_problem(path)}")
    home = path if directory else path.parent
    while not home.exists() and home != home.parent and directory:
        home = home.parent
    if not is_dir(home):
        raise UsageError(f"{option} {path}: the directory {home} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=home, prefix=".mmspec-probe-"):
            pass
    except OSError as e:
        raise UsageError(f"{option} {path}: cannot write in {home}: {describe(e)}") from None


def fit(
    path: str | Path,
    steps: int,
    variant: str | None = None,
    sets: Sequence[str] = (),
    batch: int = 8,
    lr: float = 3e-3,
    seed: int = 0,
    batch_file: str | Path | None = None,
    out_dir: str | Path | None = None,
    json_path: str | Path | None = None,
    device: str = "cpu",
    fsdp: bool = False,
    resample: bool = False,
    on_step: Callable[[int, dict], None] | None = None,
    weights: str | Path | None = None,
    resume: str | Path | None = None,
) -> dict:
    """Train a spec through its objectives; returns {"steps", "losses", "objectives"} (docs/training.md).

    Inside torchrun workers (`mmspec fit --nproc K` starts them) the global batch is split over the processes.
    `weights` starts from a checkpoint (pretrained, or written by fit); `resume` continues a fit checkpoint's
    run (model, optimizer state, step count) for `steps` more steps.
    """
    loaded = load_spec(path, variant, sets)
    check_fit_args(loaded, steps, batch, lr, None if batch_file else batch, out_dir, json_path)
    from mmspec.train.run import fit as _fit

    return _fit(loaded, steps, batch, lr, seed, batch_file, out_dir, json_path, device, fsdp, resample, on_step,
                weights, resume)


BENCH_ENGINES = ("reference_eager", "reference_onnx", "eager", "optimized", "ort_cpu", "ort_cuda", "ort_int8")


def bench(
    path: str | Path,
    variant: str | None = None,
    sets: Sequence[str] = (),
    batches: Sequence[int] = (1, 8),
    sizes: dict[str, int] | None = None,
    rounds: int = 10,
    warmup: int = 3,
    threads: int | None = None,
    engines: Sequence[str] | None = None,
    reference: str | Path | None = None,
    opset: int = 20,
    budget: Budget | None = DEFAULT_BUDGET,
    progress: Progress | None = None,
    profile: bool = False,
) -> dict:
    """Latency of the spec's engines side by side (`mmspec bench`; contract in docs/contracts.md).

    With `profile`, "profiles" gives, per ONNX Runtime engine on the CPU and batch, the share of kernel time per
    operator type (ORT's profiler).

    `sizes` fixes named axes (default: every axis but the batch at min(its maximum, 128)); `engines` selects
    among BENCH_ENGINES (default: all that this machine and spec can run; `ort_cuda` needs a GPU, the reference
    engines a transformers class at the spec's size, from `reference` (a config directory) or the class
    default). Every engine's outputs are compared with the eager run of the same model on the timed inputs
    ("max_abs_vs_eager": mmspec's eager model, or for the reference engines the reference's own)."""
    import os

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mmspec import benchmark
    from mmspec.backends import (
        ORT_VERSION,
        available_providers,
        export_plain,
        make_session,
        op_profile,
        quantize_int8,
    )
    from mmspec.graph.inputs import make_inputs

    unknown = sorted(set(engines or ()) - set(BENCH_ENGINES))
    if unknown:
        raise UsageError(f"--engine {unknown[0]}: unknown engine; choose from {', '.join(BENCH_ENGINES)}")
    if not batches or min(batches) < 1:
        raise UsageError("--batch: batch sizes must be positive integers")
    if not 1 <= rounds <= 1000 or not 0 <= warmup <= 100:
        raise UsageError("--rounds must be 1 to 1000 and --warmup 0 to 100")
    if max(batches) > 4096:
        raise UsageError(f"--batch {max(batches)}: at most 4096")
    if threads is not None and not 1 <= threads <= 256:
        raise UsageError(f"--threads {threads}: 1 to 256")
    if reference is not None:
        from mmspec.spec.files import is_dir, kind_problem

        problem = "not a directory" if not is_dir(reference) else kind_problem(Path(reference) / "config.json")
        if problem:
            raise UsageError(f"--reference {reference}: a transformers config directory is needed "
                             f"(config.json): {problem}")
    threads = threads or os.cpu_count() or 1
    loaded = load_spec(path, variant, sets, budget)
    check_budget_on_meta(loaded, budget)
    check_memory(loaded, budget)
    if loaded.plan.graphs:
        raise UsageError(f"{path}: bench times single-graph specs; this spec has exports: "
                         f"{', '.join(g.name for g in loaded.plan.graphs)}")
    plan = loaded.plan
    batch_axes = {m.batch for m in loaded.spec.modalities.values()}
    axis_sizes = {a: min(hi, 128) for a, hi in plan.axes_max.items() if a not in batch_axes}
    for axis, size in (sizes or {}).items():
        if axis not in plan.axes_max:
            raise UsageError(f"--size {axis}={size}: the spec has no axis {axis!r}; it has "
                             f"{', '.join(sorted(plan.axes_max)) or 'none'}")
        if not plan.axes_min.get(axis, 1) <= size <= plan.axes_max[axis]:
            raise UsageError(f"--size {axis}={size}: outside {plan.axes_min.get(axis, 1)}..{plan.axes_max[axis]}")
        axis_sizes[axis] = size
    for b in batches:
        for axis in batch_axes:
            if b > plan.axes_max[axis]:
                raise UsageError(f"--batch {b}: more than the spec's maximum {axis} {plan.axes_max[axis]}")
    wanted = set(engines or BENCH_ENGINES)
    torch.set_num_threads(threads)
    say = progress or (lambda _: None)

    say("build")
    model = build(loaded)
    gm, _ = optimize(capture(model))
    names = list(model.input_names)
    feeds = {b: {k: v.numpy() for k, v in make_inputs(plan, {**axis_sizes, **dict.fromkeys(batch_axes, b)},
                                                        seed=loaded.spec.seed).items()} for b in batches}
    flops = {}
    meta = build(loaded, device="meta")
    for b, feed in feeds.items():
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            meta({k: torch.from_numpy(v).to("meta") for k, v in feed.items()})
        flops[b] = int(counter.get_total_flops())
    del meta

    def torch_engine(name, module, positional):
        def prepare(feed):
            tensors = {k: torch.from_numpy(v) for k, v in feed.items()}
            args = tuple(tensors[n] for n in names)

            def call():
                with torch.no_grad():
                    return module(*args) if positional else module(tensors)
            return call
        return benchmark.Engine(name, prepare)

    def ort_engine(name, file, provider):
        session = make_session(file, provider, "all", threads)

        def prepare(feed):
            return lambda: session.run(None, feed)
        return benchmark.Engine(name, prepare)

    skipped: dict[str, str] = {}
    runs: list[benchmark.Engine] = []
    with tempfile.TemporaryDirectory(prefix="mmspec-bench-") as tmp:
        onnx_path = Path(tmp) / f"{loaded.stem}.onnx"
        ort_wanted = wanted & {"ort_cpu", "ort_cuda", "ort_int8"}
        if ort_wanted:
            say("export")
            with torch.no_grad():
                export(gm, loaded, onnx_path, opset)
        ref_module, ref_inputs, ref_source = None, {}, ""
        if wanted & {"reference_eager", "reference_onnx"}:
            say("reference")
            ref_module, ref_inputs, ref_source = benchmark.reference_model(
                plan, loaded.spec.reference.implementation if loaded.spec.reference else None,
                param_counts(model)["total"], Path(reference) if reference else None)
            if ref_module is None:
                skipped.update(dict.fromkeys(sorted(wanted & {"reference_eager", "reference_onnx"}), ref_source))
        if ref_module is not None and "reference_eager" in wanted:
            runs.append(_reference_engine(benchmark, "reference_eager", ref_module, ref_inputs))
        if ref_module is not None and "reference_onnx" in wanted:
            say("reference export")
            ref_file = Path(tmp) / "reference.onnx"
            try:
                feed = feeds[batches[0]]
                export_plain(ref_module, {ref_inputs[k]: torch.from_numpy(v) for k, v in feed.items()},
                             {ref_inputs[gi.name]: gi.info.shape for gi in plan.graph_inputs}, ref_file)
            except CompileError as e:  # the hand export a user would write fails: a finding, not a crash
                skipped["reference_onnx"] = str(e)
            else:
                runs.append(_reference_ort_engine(benchmark, ref_file, ref_inputs, threads))
        if "eager" in wanted:
            runs.append(torch_engine("eager", model, positional=False))
        if "optimized" in wanted:
            runs.append(torch_engine("optimized", gm, positional=True))
        if "ort_cpu" in wanted:
            runs.append(ort_engine("ort_cpu", onnx_path, "CPUExecutionProvider"))
        if "ort_cuda" in wanted:
            try:
                runs.append(ort_engine("ort_cuda", onnx_path, available_providers("cuda")[0]))
            except CompileError as e:
                skipped["ort_cuda"] = str(e)
        if "ort_int8" in wanted:
            say("quantize")
            int8_path = Path(tmp) / f"{loaded.stem}.int8.onnx"
            quantize_int8(onnx_path, int8_path)
            runs.append(ort_engine("ort_int8", int8_path, "CPUExecutionProvider"))
        say("measure")
        results = benchmark.measure(runs, feeds, rounds, warmup, flops)
        _agreement(results, runs, feeds, model, ref_module, ref_inputs)
        profiles = {}
        if profile:
            say("profile")
            files = {"ort_cpu": (onnx_path, {}), "ort_int8": (Path(tmp) / f"{loaded.stem}.int8.onnx", {}),
                     "reference_onnx": (Path(tmp) / "reference.onnx", ref_inputs)}
            for name, (file, keywords) in files.items():
                if any(e.name == name for e in runs):
                    profiles[name] = {b: op_profile(file, {keywords.get(k, k): v for k, v in feed.items()},
                                                    threads=threads) for b, feed in feeds.items()}
    return {
        "spec": str(path), "name": loaded.spec.name, "variant": loaded.variant, "sizes": axis_sizes,
        "machine": benchmark.machine(threads, ORT_VERSION), "peak_gflops": benchmark.peak_gflops(threads),
        "reference": ref_source if ref_module is not None else None, "skipped": skipped, "results": results,
        **({"profiles": profiles} if profile else {}),
    }


def _agreement(results: list[dict], runs: list, feeds: dict, model, ref_module, ref_inputs: dict) -> None:
    """Add "max_abs_vs_eager" to each result: the engine's largest output difference from the eager run of the
    same model (mmspec's eager model, or the reference implementation's)."""
    import numpy as np
    import torch

    for b, feed in feeds.items():
        with torch.no_grad():
            ours = [t.numpy() for t in model({k: torch.from_numpy(v) for k, v in feed.items()})]
            theirs = [] if ref_module is None else [
                t.numpy() for t in ref_module(**{ref_inputs[k]: torch.from_numpy(v) for k, v in feed.items()})]
        for engine in runs:
            expected = theirs if engine.name.startswith("reference") else ours
            outs = engine.prepare(feed)()
            diff = max(float(np.max(np.abs(np.asarray(o, dtype=np.float64) - r), initial=0.0))
                       for o, r in zip(outs, expected, strict=True))
            for r in results:
                if r["engine"] == engine.name and r["batch"] == b:
                    r["max_abs_vs_eager"] = diff


def _reference_engine(benchmark, name, module, keywords):
    import torch

    def prepare(feed):
        kwargs = {keywords[k]: torch.from_numpy(v) for k, v in feed.items()}

        def call():
            with torch.no_grad():
                return module(**kwargs)
        return call
    return benchmark.Engine(name, prepare)


def _reference_ort_engine(benchmark, file, keywords, threads):
    from mmspec.backends import make_session

    session = make_session(file, "CPUExecutionProvider", "all", threads)
    accepted = {i.name for i in session.get_inputs()}

    def prepare(feed):
        kwargs = {keywords[k]: v for k, v in feed.items() if keywords[k] in accepted}
        return lambda: session.run(None, kwargs)
    return benchmark.Engine("reference_onnx", prepare)
