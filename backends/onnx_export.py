"""Export a captured module to ONNX with the dynamo exporter, named symbolic dims and a full check.

Contract of `export_onnx`: it either returns an `ExportResult` for a file that passed
`onnx.checker.check_model(full_check=True)`, declares exactly the requested opset, has exactly the
requested input/output names and carries the spec's dim names on exactly the declared dynamic input
axes (and the declared symbolic output dims, named axes or derived ones such as `regions + text_len`,
on the outputs); or it raises `CompileError` with a one-line message and leaves no file at `path`. The exporter's
stdout progress lines, warnings and log records never reach the terminal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import logging
import math
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import onnx
import onnx_ir
import onnx_ir.passes.common as ir_passes
import onnxscript.rewriter
import torch
from onnxscript.optimizer import constant_folding
from onnxscript.rewriter.rules.common import slice_split_rule
from torch.export import Dim

from mmspec.errors import CompileError
from mmspec.spec.files import publish_files

EXTERNAL_DATA_THRESHOLD = 3 << 29  # 1.5 GiB of initializers: beyond it, weights go to a sidecar
QUIET_LOGGERS = ("torch", "torch.onnx", "onnxscript", "onnx_ir")  # torch.onnx does not propagate to torch
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class TensorSig:
    """One graph input or output. `shape` holds ints, dim names, or "?" for an unnamed dynamic dim;
    `dtype` is the numpy name ("float32", "int64", "bool")."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str


@dataclass(frozen=True)
class ExportResult:
    """A checked ONNX file. `bytes` counts the .onnx plus its external-data sidecar, if any."""

    path: Path
    opset: int
    bytes: int
    inputs: list[TensorSig]
    outputs: list[TensorSig]
    external_data: bool


def sidecar(path: Path) -> Path:
    """The external-data file that belongs to `path`: `<name>.data` next to it."""
    return path.with_name(path.name + ".data")


def _strip_stack_traces(graph: onnx.GraphProto) -> None:
    """Drop the exporter's per-node source locations (`pkg.torch.onnx.stack_trace`), in subgraphs too: they name
    code generated in this process (`<eval_with_key>.N`, a process-wide counter), so the same spec would give
    other bytes in another process."""
    for node in graph.node:
        kept = [p for p in node.metadata_props if "stack_trace" not in p.key]
        if len(kept) != len(node.metadata_props):
            del node.metadata_props[:]
            node.metadata_props.extend(kept)
        for attr in node.attribute:
            for sub in [attr.g, *attr.graphs] if attr.type in (onnx.AttributeProto.GRAPH,
                                                                 onnx.AttributeProto.GRAPHS) else ():
                _strip_stack_traces(sub)


def export_onnx(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    *,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
    path: Path,
    opset: int = 20,
    metadata: dict[str, str] | None = None,
    external_data: bool | None = None,
    dim_max: dict[str, int] | None = None,
    output_axes: dict[str, dict[int, str]] | None = None,
    dim_min: dict[str, int] | None = None,
) -> ExportResult:
    """Export `module(*example_inputs)` (outputs in `output_names` order) to `path`.

    `dynamic_axes` maps an input name to {axis: dim name}; one name used on several inputs is one
    shared dim. `dim_max` optionally bounds a dim (default: unbounded), `dim_min` lowers its minimum
    below the default 1 (a past axis of a decoding step may be 0).
    `external_data=None` writes a single file unless the initializers exceed 1.5 GiB; external data
    goes to `sidecar(path)` with a relative location. The module is exported in its current mode.
    `output_axes` maps an output name to {axis: dim} (a dim name or an expression of dim names) that the file
    declares instead of the exporter's symbols; `verify_onnx` checks them at every case.
    """
    path = Path(path)
    _check_request(input_names, dynamic_axes, opset)
    with _quiet_exporter() as records:
        try:
            dims = _export_dims(dynamic_axes, dim_min or {}, dim_max or {})
            dynamic_shapes = tuple(
                {axis: dims[name] for axis, name in dynamic_axes[inp].items()} if inp in dynamic_axes else None
                for inp in input_names
            )
            program = torch.onnx.export(
                module,
                tuple(example_inputs),
                dynamo=True,
                opset_version=opset,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=dynamic_shapes,
                optimize=False,
            )
            keep_near_identity_constants(program.model)
            optimize(program.model)
            name_outputs(program.model.graph, output_names)
            restore_input_names(program.model.graph, input_names)
        except Exception as e:
            raise CompileError(f"ONNX export failed: {_one_line(e)}") from e
        if external_data is None:
            external_data = _initializer_bytes(program) > EXTERNAL_DATA_THRESHOLD
        try:
            discard(path)  # a stale sidecar must not be mistaken for this export's
            program.save(str(path), external_data=external_data)
        except Exception as e:
            discard(path)
            raise CompileError(f"cannot write {path}: {_one_line(e)}") from e
        finally:
            release_initializers(program.model)
    try:
        model = onnx.load(str(path), load_external_data=False)
        _check_opset(model, opset, records)
        _check_names(model, input_names, output_names)
        name_dims(model, dynamic_axes, output_axes)
        expand_attention_masks(model.graph)
        _strip_stack_traces(model.graph)
        props = {p.key: p.value for p in model.metadata_props} | dict(metadata or {})
        del model.metadata_props[:]
        for key, value in props.items():
            model.metadata_props.add(key=key, value=value)
        model.producer_name = "mmspec"
        model.producer_version = _mmspec_version()
        onnx.save_model(model, str(path))
        onnx.checker.check_model(str(path), full_check=True)
    except CompileError:
        discard(path)
        raise
    except Exception as e:
        discard(path)
        raise CompileError(f"ONNX checker: {_one_line(e)}") from e
    inputs, outputs = _signature(model)
    data = sidecar(path)
    size = path.stat().st_size + (data.stat().st_size if data.exists() else 0)
    return ExportResult(path, opset, size, inputs, outputs, data.exists())


def inline_weights(result: ExportResult) -> ExportResult:
    """`result`'s file as one file when its external data is at most EXTERNAL_DATA_THRESHOLD (else unchanged).

    For exporting with `external_data=True` (the weights streamed to the sidecar while the module is alive), then
    inlining once the module is freed: the peak memory of a compile is then one copy of the weights less."""
    data = sidecar(result.path)
    if not result.external_data or not data.exists() or data.stat().st_size > EXTERNAL_DATA_THRESHOLD:
        return result
    try:
        model = onnx.load(str(result.path))  # the weights, from the sidecar
        onnx.save_model(model, str(result.path))
        del model
        data.unlink()
    except Exception as e:
        discard(result.path)
        raise CompileError(f"cannot write {result.path}: {_one_line(e)}") from e
    return dataclasses.replace(result, bytes=result.path.stat().st_size, external_data=False)


REWRITE_RULES = tuple(r for r in onnxscript.rewriter._DEFAULT_REWRITE_RULES if r is not slice_split_rule)
"""onnxscript's default rewrite rules less SlicesSplit (two Slices of one tensor -> Split): its matcher walks the
whole graph for every Slice node, a quadratic cost that was 40 % of a tiny GLIDE compile, and it fires on none of
the graphs mmspec exports (the golden graphs would show a Split)."""


def optimize(model: onnx_ir.Model) -> None:
    """In place, what torch's `ONNXProgram.optimize` does (onnxscript's `optimize_ir`: inline, then constant folding
    and the rewrite rules to a fixed point of at most two rounds, then the clean-up passes), with `REWRITE_RULES`."""
    onnx_ir.passes.Sequential(
        ir_passes.InlinePass(),
        onnx_ir.passes.PassManager(
            [constant_folding.FoldConstantsPass(
                shape_inference=True, input_size_limit=constant_folding.DEFAULT_CONSTANT_FOLD_INPUT_SIZE_LIMIT,
                output_size_limit=constant_folding.DEFAULT_CONSTANT_FOLD_OUTPUT_SIZE_LIMIT),
             onnxscript.rewriter.RewritePass(REWRITE_RULES), ir_passes.RemoveUnusedNodesPass(),
             ir_passes.RemoveUnusedFunctionsPass(), ir_passes.RemoveUnusedOpsetsPass()],
            steps=2, early_stop=True),
        ir_passes.RemoveUnusedNodesPass(),
        ir_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        ir_passes.LiftSubgraphInitializersToMainGraphPass(),
        ir_passes.DeduplicateInitializersPass(),
        ir_passes.CommonSubexpressionEliminationPass(),
        ir_passes.OutputFixPass(),
        ir_passes.NameFixPass(),
    )(model)


def release_initializers(model: onnx_ir.Model) -> None:
    """Drop the exported graph's initializer data once it is written: the module's tensors it wraps and the
    optimizer's folded copies (transposed weights, about one more copy of the linear layers). onnxscript 0.7's
    module-level rewrite rules keep the last graph they matched, so the graph itself outlives the export."""
    for value in model.graph.initializers.values():
        value.const_value = None


def restore_input_names(graph: onnx_ir.Graph, input_names: list[str]) -> None:
    """Give the graph inputs their requested names back, in place. An input returned unchanged as an output (a
    padding mask passed through) is named after that output by the exporter, and the optimizer's OutputFixPass
    (onnx-ir >= 1.1) then puts an Identity in front of the output and renames the input `<output>_orig`."""
    inputs = [v for v in graph.inputs if v.name not in graph.initializers]
    if len(inputs) == len(input_names):  # otherwise _check_names reports the difference
        for value, name in zip(inputs, input_names, strict=True):
            value.name = name


_NEUTRAL = {"Add": 0.0, "Sub": 0.0, "Mul": 1.0, "Div": 1.0}
"""The value of the second input that makes each binary op a no-op (Add and Mul also take it first)."""


def keep_near_identity_constants(model: onnx_ir.Model) -> int:
    """Protect, in place, the scalar constants that onnxscript's optimizer would take for its no-op rules' 0 or 1
    (they match within an absolute 1e-8 and a relative 1e-5, so the `+ 1e-8` of `x * rsqrt(mean(x^2) + 1e-8)`
    vanished and an all-zero input gave NaN): each near-neutral scalar becomes a one-element 1-D constant, which
    those rules do not match and which broadcasts the same against an input of rank >= 1. Returns how many."""
    changed = 0
    for node in list(model.graph.all_nodes()):
        neutral = _NEUTRAL.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if neutral is None or len(node.inputs) != 2:
            continue
        slots = (1, 0) if node.op_type in ("Add", "Mul") else (1,)
        for slot in slots:
            value, other = node.inputs[slot], node.inputs[1 - slot]
            scalar = _float_scalar(value)
            if (scalar is None or scalar.item() == neutral or other is None or other.shape is None
                    or len(other.shape) == 0
                    or not math.isclose(scalar.item(), neutral, rel_tol=1e-4, abs_tol=1e-6)):
                continue
            const = onnx_ir.Node("", "Constant", [], attributes=[onnx_ir.AttrTensor("value", onnx_ir.tensor(
                scalar.reshape(1)))], graph=None)  # fmt: skip
            node.graph.insert_before(node, const)
            node.replace_input_with(slot, const.outputs[0])
            changed += 1
    return changed


def name_outputs(graph: onnx_ir.Graph, names: list[str]) -> None:
    """Give the graph's outputs `names`, in order, after the optimizer ran (it may leave one value as two outputs,
    where two outputs of the module were one tensor): a value already named, or a graph input, gets an Identity."""
    named: set[int] = set()
    for i, (value, name) in enumerate(zip(list(graph.outputs), names, strict=True)):
        if id(value) in named or value.is_graph_input() or value.is_initializer():
            node = onnx_ir.Node("", "Identity", [value], num_outputs=1)
            graph.append(node)
            out = node.outputs[0]
            out.shape, out.type = value.shape, value.type
            graph.outputs[i] = value = out
        value.name = name
        named.add(id(value))


def _float_scalar(value: onnx_ir.Value | None) -> np.ndarray | None:
    """The value's float scalar, when it is a rank-0 constant (an initializer or a Constant node's tensor)."""
    if value is None:
        return None
    tensor = value.const_value
    producer = value.producer()
    if tensor is None and producer is not None and producer.op_type == "Constant" and "value" in producer.attributes:
        tensor = producer.attributes["value"].as_tensor()
    if tensor is None:
        return None
    array = tensor.numpy()
    return array if array.ndim == 0 and array.dtype.kind == "f" else None


def export_plain(module: torch.nn.Module, kwargs: dict[str, torch.Tensor], shapes: dict[str, tuple],
                 path: Path, opset: int = 23) -> None:
    """The export a user writes by hand (the baseline `mmspec bench` times as reference_onnx):
    `torch.onnx.export(module, kwargs=..., dynamo=True)` with the named dims of `shapes` (keyword -> shape with
    str for a named axis) dynamic; CompileError when it fails."""
    dims: dict[str, Dim] = {}
    dynamic = {k: {i: dims.setdefault(d, Dim(d)) for i, d in enumerate(shapes[k]) if isinstance(d, str)}
               for k in kwargs}
    with _quiet_exporter(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(module, (), kwargs=kwargs, dynamo=True, opset_version=opset,
                                        dynamic_shapes=dynamic, verbose=False)
            program.save(str(path))
        except Exception as e:
            raise CompileError(f"torch.onnx.export failed: {_one_line(e)}") from e


def name_dims(model: onnx.ModelProto, dynamic_axes: dict[str, dict[int, str]],
              output_axes: dict[str, dict[int, str]] | None = None) -> None:
    """Rename the exporter's symbols (e.g. `s72`) to the spec's dim names, in place.

    The mapping is read off the declared input axes and applied, token by token, to every dim_param
    of the inputs, outputs and value_info (so `s72*s70` becomes `batch*seq` and `s72 + s70` `batch + seq`,
    in the exporter's term order). Then each axis in `output_axes` gets the declared dim (a name, or an
    expression in the spec's canonical order, e.g. `regions + text_len`); a wrong declaration is left for
    verification to catch, which evaluates it at every case's sizes. Raises `CompileError`
    when a declared axis is a fixed number (the exporter specialised it), when the exporter merged two
    differently named dims, or when an undeclared input axis is symbolic.
    """
    inputs = {vi.name: vi for vi in model.graph.input}
    mapping: dict[str, str] = {}
    for inp, vi in inputs.items():
        declared = dynamic_axes.get(inp, {})
        dims = vi.type.tensor_type.shape.dim
        for axis, want in declared.items():
            if axis >= len(dims):
                raise CompileError(f"input '{inp}' has rank {len(dims)}, no dynamic axis {axis} ('{want}')")
            dim = dims[axis]
            if dim.HasField("dim_value"):
                raise CompileError(
                    f"input '{inp}' axis {axis} ('{want}') was frozen to {dim.dim_value} by the exporter"
                )
            if dim.dim_param and mapping.setdefault(dim.dim_param, want) != want:
                raise CompileError(
                    f"the exporter made dims '{mapping[dim.dim_param]}' and '{want}' one "
                    f"(input '{inp}' axis {axis}); the model forces them equal"
                )
        for axis, dim in enumerate(dims):
            if axis not in declared and not dim.HasField("dim_value"):
                raise CompileError(f"input '{inp}' axis {axis} is dynamic but not declared dynamic")
    for vi in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        for dim in vi.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = _SYMBOL.sub(lambda m: mapping.get(m[0], m[0]), dim.dim_param)
    for inp, declared in dynamic_axes.items():
        for axis, want in declared.items():
            inputs[inp].type.tensor_type.shape.dim[axis].dim_param = want
    outputs = {vi.name: vi for vi in model.graph.output}
    for out, declared in (output_axes or {}).items():
        dims = outputs[out].type.tensor_type.shape.dim if out in outputs else []
        for axis, want in declared.items():
            if axis < len(dims):
                dims[axis].dim_param = want  # replaces a dim_value too: the file declares what the spec says


def expand_attention_masks(graph: onnx.GraphProto) -> int:
    """Give every native `Attention` mask (opset 23 and later) its query and key lengths as its last two dims,
    in place (subgraphs too); returns how many masks were expanded.

    The exporter passes SDPA's mask as it is, broadcastable to [B, H, T, S] (a padding mask is [B, 1, 1, S]),
    which the ONNX operator allows but ONNX Runtime's kernel refuses: it requires the mask's dims -2 and -1
    to be exactly T and S. `Expand(mask, [T, S])`, with T and S read from Q and K at run time, broadcasts the
    mask to [..., T, S] (a [B, 1, 1, S] mask becomes [B, 1, T, S]) and keeps its values, so the kernel's
    result is the same attention."""
    return _expand_masks(graph, itertools.count())


def _expand_masks(graph: onnx.GraphProto, counter: Iterator[int]) -> int:
    done = 0
    nodes = []
    for node in graph.node:
        for attr in node.attribute:
            for sub in [attr.g, *attr.graphs] if attr.type in (onnx.AttributeProto.GRAPH,
                                                               onnx.AttributeProto.GRAPHS) else ():
                done += _expand_masks(sub, counter)
        if node.op_type == "Attention" and node.domain in ("", "ai.onnx") and len(node.input) > 3 and node.input[3]:
            base = f"mmspec_attn_mask_{next(counter)}"
            q, k, mask = node.input[0], node.input[1], node.input[3]
            make = onnx.helper.make_node
            nodes += [
                make("Shape", [q], [f"{base}_t"], name=f"{base}_t", start=-2, end=-1),  # [T]
                make("Shape", [k], [f"{base}_s"], name=f"{base}_s", start=-2, end=-1),  # [S]
                make("Concat", [f"{base}_t", f"{base}_s"], [f"{base}_ts"], name=f"{base}_ts", axis=0),  # [T, S]
                make("Expand", [mask, f"{base}_ts"], [f"{base}_mask"], name=f"{base}_mask"),  # ...,T,S
            ]
            node.input[3] = f"{base}_mask"
            done += 1
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return done


def onnx_signature(path: Path) -> tuple[list[TensorSig], list[TensorSig]]:
    """Names, shapes and dtypes of the graph inputs (initializers excluded) and outputs of a file."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise CompileError(f"cannot read ONNX file {path}: {_one_line(e)}") from e
    return _signature(model)


def publish_pairs(tmp_path: Path, final_path: Path) -> list[tuple[Path | None, Path]]:
    """The moves that put an export (and its sidecar) in place, for `mmspec.spec.files.publish_files`: the
    sidecar first, so the final `.onnx` never names data that is not there yet; a stale sidecar at the destination
    is deleted when the new file has none. A sidecar's location is stored relative and by name, so it requires
    `tmp_path.name == final_path.name` (export into a temporary directory, not to a temporary name)."""
    tmp_path, final_path = Path(tmp_path), Path(final_path)
    if not sidecar(tmp_path).exists():
        return [(None, sidecar(final_path)), (tmp_path, final_path)]
    if tmp_path.name != final_path.name:
        raise ValueError(f"external data pins the file name: cannot publish {tmp_path.name} as {final_path.name}")
    return [(sidecar(tmp_path), sidecar(final_path)), (tmp_path, final_path)]


def publish(tmp_path: Path, final_path: Path) -> Path:
    """Move one verified export (and its sidecar) into place as a unit; returns `final_path`."""
    publish_files(publish_pairs(tmp_path, final_path), Path(tmp_path).parent)
    return Path(final_path)


def discard(tmp_path: Path) -> None:
    """Remove an export and its sidecar, if present."""
    Path(tmp_path).unlink(missing_ok=True)
    sidecar(Path(tmp_path)).unlink(missing_ok=True)


_DERIVED = re.compile(r"(?:(\d+)\*)?([A-Za-z_][A-Za-z0-9_]*)(?: \+ (\d+))?")
"""A derived input dim the exporter takes: `c*axis + k` of one named axis (mmspec's canonical text)."""


def _export_dims(dynamic_axes: dict[str, dict[int, str]], dim_min: dict[str, int], dim_max: dict[str, int]) -> dict:
    """torch.export dims by dim name: a `Dim` per named axis (bounded by `dim_min`/`dim_max`), and for a derived
    name (`src_len + 576`) the `c*Dim + k` of its axis, which then needs no input of its own."""
    roots: dict[str, Dim] = {}
    dims = {}
    for name in (n for axes in dynamic_axes.values() for n in axes.values()):
        coef, root, const = _DERIVED.fullmatch(name).groups()
        if root not in roots:
            roots[root] = Dim(root, min=dim_min.get(root, 1), **({"max": dim_max[root]} if root in dim_max else {}))
        dims[name] = roots[root] if name == root else roots[root] * int(coef or 1) + int(const or 0)
    return dims


def _check_request(input_names: list[str], dynamic_axes: dict[str, dict[int, str]], opset: int) -> None:
    newest = onnx.defs.onnx_opset_version()
    if not 1 <= opset <= newest:
        raise CompileError(f"opset {opset} is not supported: onnx {onnx.__version__} knows opsets 1..{newest}")
    for inp, axes in dynamic_axes.items():
        if inp not in input_names:
            raise CompileError(f"dynamic axes given for unknown input '{inp}'")
        for name in axes.values():
            if not name.isidentifier() and not _DERIVED.fullmatch(name):
                raise CompileError(f"dynamic dim name {name!r} of input '{inp}' is not an identifier (or `c*name + k` "
                                   f"of one)")


def _check_opset(model: onnx.ModelProto, opset: int, records: list[logging.LogRecord]) -> None:
    wrote = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if wrote != opset:
        errors = [r for r in records if r.exc_info and r.exc_info[1] is not None]
        cause = f" ({_one_line(errors[-1].exc_info[1])})" if errors else ""
        raise CompileError(f"exporter wrote opset {wrote}, asked for {opset}{cause}")


def _check_names(model: onnx.ModelProto, input_names: list[str], output_names: list[str]) -> None:
    initializers = {t.name for t in model.graph.initializer}
    got_in = [vi.name for vi in model.graph.input if vi.name not in initializers]
    got_out = [vi.name for vi in model.graph.output]
    if got_in != list(input_names):
        raise CompileError(f"exported inputs are {got_in}, expected {list(input_names)}")
    if got_out != list(output_names):
        raise CompileError(f"exported outputs are {got_out}, expected {list(output_names)}")


def _signature(model: onnx.ModelProto) -> tuple[list[TensorSig], list[TensorSig]]:
    initializers = {t.name for t in model.graph.initializer}

    def sig(vi: onnx.ValueInfoProto) -> TensorSig:
        t = vi.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim)
        return TensorSig(vi.name, shape, onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name)

    inputs = [sig(vi) for vi in model.graph.input if vi.name not in initializers]
    return inputs, [sig(vi) for vi in model.graph.output]


def _initializer_bytes(program: torch.onnx.ONNXProgram) -> int:
    values = program.model.graph.initializers.values()
    return sum(v.const_value.nbytes for v in values if v.const_value is not None)


def _mmspec_version() -> str:
    try:
        return importlib_metadata.version("mmspec")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


class _Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]):
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[list[logging.LogRecord]]:
    """Swallow the exporter's stdout, warnings and log output; yield the log records it emitted."""
    records: list[logging.LogRecord] = []
    handler = _Collect(records)
    saved = [(lg, lg.handlers[:], lg.propagate) for lg in map(logging.getLogger, QUIET_LOGGERS)]
    for lg, _, _ in saved:
        lg.handlers, lg.propagate = [handler], False
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield records
    finally:
        for lg, handlers, propagate in saved:
            lg.handlers, lg.propagate = handlers, propagate


def _one_line(exc: BaseException) -> str:
    """The first meaningful line of the innermost cause, without ANSI colours or assert prefixes."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [ln.strip() for ln in _ANSI.sub("", str(exc)).splitlines() if ln.strip()]
    line = lines[0] if lines else type(exc).__name__
    line = re.sub(r"^<class '[\w.]+'>: ", "", line)
    return re.sub(r"^.*?Assertion `.*?` failed: ", "", line)
