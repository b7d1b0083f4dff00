"""Training batches: synthetic ones drawn from the modalities' signatures and the objectives' declared
targets, or one read from a safetensors batch file (no pickle)."""

from __future__ import annotations

from pathlib import Path

import torch

from mmspec.components.objectives.base import Target
from mmspec.components.objectives.runtime import Batch
from mmspec.errors import UsageError
from mmspec.graph.inputs import make_inputs, trace_sizes
from mmspec.spec.loader import LoadedSpec
from mmspec.spec.tensors import dim_value


def batch_axes(loaded: LoadedSpec) -> set[str]:
    return {m.batch for m in loaded.spec.modalities.values()}


def data_targets(loaded: LoadedSpec) -> dict[str, dict[str, Target]]:
    """Objective -> target name -> Target, for every objective that needs data targets."""
    plan = loaded.plan
    out = {}
    for node in plan.nodes:
        if node.section == "objectives":
            inputs = {p: plan.bundles[t] if f is None else {f: plan.bundles[t][f]} for p, (t, f) in node.inputs.items()}
            if found := node.config.targets(inputs, loaded.spec):
                out[node.name] = found
    return out


def _draw(target: Target, shape: list[int], g: torch.Generator) -> torch.Tensor:
    if target.kind == "classes":
        return torch.randint(0, target.high, shape, generator=g)
    if target.kind == "binary":
        return torch.randint(0, 2, shape, generator=g)
    if target.kind == "positive":
        return 0.1 + 9.9 * torch.rand(shape, generator=g)
    x = torch.randn(shape, generator=g)
    return x.softmax(-1) if target.kind == "simplex" else x


def synthetic_batch(loaded: LoadedSpec, batch: int, seed: int, axes: dict[str, int] | None = None) -> Batch:
    """Random graph inputs (ids in range, masks padding the tail of row 0) and random data targets; every
    batch axis has `batch` rows, other dynamic axes their trace size, except the sizes `axes` gives."""
    sizes = trace_sizes(loaded.plan)
    sizes.update({axis: batch for axis in batch_axes(loaded)})
    for axis, size in (axes or {}).items():
        if axis not in sizes:
            raise UsageError(f"datasets: {axis!r} is not a dynamic axis of the spec (axes: {', '.join(sorted(sizes))})")
        if size > loaded.plan.axes_max.get(axis, size):
            raise UsageError(f"datasets: {axis}={size} exceeds its maximum {loaded.plan.axes_max[axis]}")
        sizes[axis] = size
    inputs = make_inputs(loaded.plan, sizes, seed=seed)
    g = torch.Generator().manual_seed(seed + 7919)
    targets = {
        obj: {
            name: _draw(t, [dim_value(d, sizes) for d in t.info.shape], g) for name, t in ts.items()
        }
        for obj, ts in sorted(data_targets(loaded).items())
    }
    return Batch(inputs, targets)


def dataset_seed(seed: int, index: int) -> int:
    """The seed of the `index`-th dataset of a mixture: apart from the others' by a prime stride."""
    return seed + 104_729 * index


def mixture_batches(loaded: LoadedSpec, batch: int, seed: int) -> dict[str, Batch]:
    """One synthetic batch per dataset of the spec's `datasets:` (their `sizes`), each drawn from its own seed."""
    return {name: synthetic_batch(loaded, batch, dataset_seed(seed, i), ds.sizes)
            for i, (name, ds) in enumerate(loaded.spec.datasets.items())}


def read_batch_file(path: str | Path, loaded: LoadedSpec, option: str = "--batch-file",
                    with_targets: bool = True) -> Batch:
    """A safetensors file holding every graph input by its ONNX name and (`with_targets`) every data target as
    `<objective>.<target>`; names, dtypes, ranks, fixed sizes and shared axis sizes are checked, and problems are
    UsageErrors naming `option`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise UsageError(f"{option} {path}: cannot read it as safetensors: {e}") from None
    expected = {gi.name: (gi.info, gi.info.dtype) for gi in loaded.plan.graph_inputs}
    for obj, ts in data_targets(loaded).items() if with_targets else ():
        for name, t in ts.items():
            expected[f"{obj}.{name}"] = (t.info, "int64" if t.kind in ("classes", "binary") else "float32")
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(extra)}"] if extra else []
        )
        raise UsageError(f"{option} {path}: {'; '.join(parts)} (expected: {', '.join(sorted(expected))})")
    axes: dict[str, int] = {}
    for axis in batch_axes(loaded):
        axes[axis] = -1
    for name in sorted(expected):
        info, dtype = expected[name]
        t = tensors[name]
        if str(t.dtype).removeprefix("torch.") != dtype or t.dim() != info.rank:
            raise UsageError(
                f"{option} {path}: {name} is {str(t.dtype).removeprefix('torch.')} "
                f"{list(t.shape)}; expected {dtype} {list(info.shape)}"
            )
        for dim, size in zip(info.shape, t.shape, strict=True):
            if isinstance(dim, int) and dim != size:
                raise UsageError(f"{option} {path}: {name} has size {size} where the spec fixes {dim}")
            if isinstance(dim, str):
                if axes.get(dim, -1) not in (-1, size):
                    raise UsageError(
                        f"{option} {path}: {name} has {dim}={size} but another tensor has {dim}={axes[dim]}"
                    )
                axes[dim] = size
    if len({axes[a] for a in batch_axes(loaded)}) != 1:
        raise UsageError(f"{option} {path}: the batch axes {sorted(batch_axes(loaded))} differ in size")
    targets: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        if "." in key:
            obj, name = key.split(".", 1)
            targets.setdefault(obj, {})[name] = t
    return Batch({gi.name: tensors[gi.name] for gi in loaded.plan.graph_inputs}, targets)
