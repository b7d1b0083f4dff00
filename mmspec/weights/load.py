"""Load a checkpoint into a built model, strictly, and report what happened.

Every model tensor (parameter or persistent buffer) is filled from the checkpoint unless the spec's
`weights.new` names it; every checkpoint tensor fills one unless its layout marks it as holding nothing
or `weights.ignore` matches it. A checkpoint written by `mmspec fit` holds the model's own names instead:
the layouts, `new` and `ignore` do not apply, and its optimizer state is left to `fit --resume`.
Shapes must match exactly after the layout's transforms, values must be finite, tied tensors must agree,
and floating tensors are cast to the model's dtype (counted in the report); integer and floating kinds
never mix. All problems are raised together as one WeightsError
(exit 2), and nothing is loaded unless there are none. Then `load_state_dict(strict=True)`.
"""

from __future__ import annotations

import difflib
import fnmatch
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mmspec.errors import MAX_PRINTED_DIAGNOSTICS, Diagnostic, WeightsError
from mmspec.weights.checkpoint import Checkpoint, open_checkpoint
from mmspec.weights.keymap import KeyMap, NativeKeyMap, Target

_OWNERS = ("components.", "objectives.")
_SUGGEST_AMONG = 10_000
"""Did-you-mean searches at most this many unexpected names (difflib's cost grows with each one)."""
OPTIMIZER_PREFIX = "optimizer."
"""Names of the optimizer state in an `mmspec fit` checkpoint (`optimizer.<group>.<node tensor>.<state>`)."""


def load_weights(model, loaded, path: str | Path, *, allow_torch_load: bool = False, apply: bool = True) -> dict:
    """Check `path` against `model` (built from `loaded`) and, with `apply`, load it; returns the load report.

    `apply=False` checks everything (names, shapes, dtypes, finite values) without touching the model, which
    may then live on the meta device.
    """
    start = time.perf_counter()
    tensors, owner = model_tensors(model)
    weights = loaded.spec.weights
    with open_checkpoint(path, allow_torch_load) as ckpt:  # tensors may map the files: load before closing
        if ckpt.native:  # every tensor by mmspec's own name; the optimizer state is `fit --resume`'s business
            keymap = NativeKeyMap({_local(full): full for full in model.state_dict() if _local(full) is not None})
            new, ignore = [], [f"{OPTIMIZER_PREFIX}*"]
        else:
            keymap = KeyMap(loaded.spec, {n.name: n.config for n in loaded.plan.nodes})
            new, ignore = (weights.new, weights.ignore) if weights else ([], [])
        plan = _plan(ckpt, keymap, tensors, owner, new, ignore)
        values, cast, nbytes = _read(ckpt, plan, tensors, owner)
        if apply:
            state = model.state_dict()
            for full in state:
                name = _local(full)
                if name is not None and owner[name] in values:
                    state[full] = values[owner[name]]
            model.load_state_dict(state, strict=True)
        del values
    return {
        "path": str(path),
        "format": "mmspec-fit" if ckpt.native else ckpt.format,
        "files": [f.name for f in ckpt.files],
        "tensors": len(plan.by_key),
        "loaded": len(plan.filled),
        "bytes": nbytes,
        "cast": dict(sorted(cast.items())),
        "new": plan.new,
        "ignored": [k for k in plan.ignored if not (ckpt.native and k.startswith(OPTIMIZER_PREFIX))],
        "seconds": round(time.perf_counter() - start, 3),
    }


def model_tensors(model) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Node-qualified name -> tensor for every parameter and persistent buffer, and name -> the first name of
    the same tensor (tied parameters share one owner)."""
    tensors: dict[str, torch.Tensor] = {}
    owner: dict[str, str] = {}
    first: dict[int, str] = {}
    for full, t in model.state_dict(keep_vars=True).items():
        name = _local(full)
        if name is not None:
            tensors[name] = t
            owner[name] = first.setdefault(id(t), name)
    return tensors, owner


def _local(full: str) -> str | None:
    return next((full[len(p) :] for p in _OWNERS if full.startswith(p)), None)


@dataclass
class _Plan:
    by_key: dict[str, list[Target]] = field(default_factory=dict)
    """checkpoint tensor -> the model tensors it fills."""
    filled: set[str] = field(default_factory=set)
    """Model tensors (first names) that get a value."""
    new: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def _plan(ckpt: Checkpoint, keymap: KeyMap, tensors: dict, owner: dict, new: list[str], ignore: list[str]) -> _Plan:
    """Match names and check shapes and dtype kinds from the headers alone; raise every problem at once."""
    plan = _Plan()
    problems: list[Diagnostic] = []
    unexpected: list[str] = []  # checkpoint names, sorted; a hostile file may hold millions
    unexpected_where: dict[str, str] = {}  # the few that map to a model name the model lacks
    rejected: set[str] = set()  # model tensors whose checkpoint tensor was reported already
    for key in sorted(ckpt.entries):
        entry = ckpt.entries[key]
        targets = [] if _matches(key, ignore) else keymap.targets(key, tensors.__contains__)
        if targets is None:
            unexpected.append(key)
            continue
        targets = [t for t in targets if not _is_new(t.param, new)]
        if not targets:  # ignored, holding nothing to load, or only for new tensors
            plan.ignored.append(key)
            continue
        for t in targets:
            if t.param not in tensors:
                unexpected.append(key)
                if t.param != key:
                    unexpected_where[key] = f"{t.param!r}, which this model does not have"
                break
            param = tensors[t.param]
            got = t.shape(entry.shape, param.dim())
            how = _transforms(t)
            if isinstance(got, str) or got != tuple(param.shape):
                rejected.add(owner[t.param])
                detail = (
                    got
                    if isinstance(got, str)
                    else (
                        f"expected {_shape(param.shape)} got {_shape(got)}"
                        + (f" (checkpoint shape {_shape(entry.shape)}, {how} by the layout)" if how else "")
                    )
                )
                problems.append(Diagnostic(str(entry.file), 0, 0, "shape-mismatch", f"{_pair(key, t.param)}: {detail}"))
                continue
            if _kind(entry.dtype) != _kind(str(param.dtype).removeprefix("torch.")):
                rejected.add(owner[t.param])
                problems.append(
                    Diagnostic(
                        str(entry.file),
                        0,
                        0,
                        "dtype",
                        f"{_pair(key, t.param)}: the checkpoint holds {entry.dtype}, the model "
                        f"{str(param.dtype).removeprefix('torch.')}; integers and floats do not mix",
                    )
                )
                continue
            plan.by_key.setdefault(key, []).append(t)
            plan.filled.add(owner[t.param])
    aliases: dict[str, list[str]] = {}
    for name, first in owner.items():
        aliases.setdefault(first, []).append(name)
    missing: dict[str, str | None] = {}
    for first, names in aliases.items():
        if first in plan.filled or first in rejected:
            continue
        if any(_is_new(n, new) for n in names):
            plan.new.append(first)
        else:
            missing[first] = next((s for n in names if (s := keymap.source(n))), None)
    # Did-you-mean pairs a missing tensor with an unexpected one; with none missing, any model tensor may be meant.
    expected = [s for s in missing.values() if s] or [s for name in tensors if (s := keymap.source(name))]
    for key in unexpected[:MAX_PRINTED_DIAGNOSTICS]:  # the rest are counted: their messages would never show
        entry = ckpt.entries[key]
        matches = unexpected_where.get(key, "no model tensor")
        message = f"checkpoint tensor {key!r} {_shape(entry.shape)} matches {matches}"
        problems.append(Diagnostic(str(entry.file), 0, 0, "unexpected-tensor", message + _suggest(key, expected)))
    extra = len(unexpected) - MAX_PRINTED_DIAGNOSTICS
    hidden = {"unexpected-tensor": extra} if extra > 0 else {}
    candidates = unexpected if len(unexpected) <= _SUGGEST_AMONG else []  # did-you-mean costs time per candidate
    for name, source in missing.items():
        where = (
            f"the checkpoint has no {source!r}{_suggest(source, candidates)}"
            if source
            else "no rule of its node's layout names it"
        )
        problems.append(
            Diagnostic(
                str(ckpt.path),
                0,
                0,
                "missing-tensor",
                f"model tensor {name!r} {_shape(tensors[name].shape)} is not loaded: {where}",
            )
        )
    if problems:
        raise WeightsError(problems, _summary(ckpt.path, problems, hidden), hidden)
    return plan


def _read(ckpt: Checkpoint, plan: _Plan, tensors: dict, owner: dict) -> tuple[dict, Counter, int]:
    """Read each tensor once, check it is finite, transform and cast it; tied tensors must agree."""
    values: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    cast: Counter = Counter()
    nbytes = 0
    problems: list[Diagnostic] = []
    for key, targets in plan.by_key.items():
        raw = ckpt.read(key)
        nbytes += raw.numel() * raw.element_size()
        file = str(ckpt.entries[key].file)
        if bad := _non_finite(raw):
            problems.append(
                Diagnostic(
                    file, 0, 0, "non-finite", f"{key!r} {_shape(raw.shape)} has {bad} non-finite value(s) (NaN or Inf)"
                )
            )
            continue
        for t in targets:
            first = owner[t.param]
            param = tensors[first]
            value = t.apply(raw, param.dim())
            if value.dtype != param.dtype:
                if raw.is_floating_point() and t is targets[0]:
                    cast[f"{str(raw.dtype).removeprefix('torch.')}->{str(param.dtype).removeprefix('torch.')}"] += 1
                value = value.to(param.dtype)
            if first not in values:
                values[first], source[first] = value, key
            elif not torch.equal(values[first], value):
                problems.append(
                    Diagnostic(
                        file,
                        0,
                        0,
                        "tied-mismatch",
                        f"{key!r} and {source[first]!r} both fill the tied tensor {first!r} but hold different values",
                    )
                )
    if problems:
        raise WeightsError(problems, _summary(ckpt.path, problems))
    return values, cast, nbytes


def _non_finite(t: torch.Tensor) -> int:
    """How many NaN/Inf values `t` holds. A finite sum proves there are none in one cheap pass; only otherwise
    are they counted. 1-byte floats (float8) are upcast first: torch has no sum or isfinite for them."""
    if not t.is_floating_point():
        return 0
    t = t if t.element_size() > 1 else t.float()
    return 0 if t.sum().isfinite() else int((~torch.isfinite(t)).sum())


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _is_new(param: str, new: list[str]) -> bool:
    """`weights.new` entries: a node (all of its tensors) or a glob over node-qualified names."""
    return any(param.startswith(p + ".") or fnmatch.fnmatchcase(param, p) for p in new)


def _pair(key: str, param: str) -> str:
    """How a checkpoint tensor and the model tensor it fills are named in messages (once when equal)."""
    return repr(key) if key == param else f"{key!r} -> {param!r}"


def _kind(dtype: str) -> str:
    return "float" if "float" in dtype else "bool" if dtype == "bool" else "int"


def _shape(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _transforms(t: Target) -> str:
    done = [w for w, on in (("transposed", t.transpose), ("squeezed", t.squeeze), ("split", t.parts > 1)) if on]
    return ", ".join(done)


def _suggest(name: str, candidates) -> str:
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _summary(path: Path, problems: list[Diagnostic], hidden: dict[str, int] | None = None) -> str:
    counts = Counter(d.code for d in problems) + Counter(hidden or {})
    parts = ", ".join(f"{n} {code.replace('-tensor', '')}" for code, n in sorted(counts.items()))
    hint = ""
    if counts.keys() & {"missing-tensor", "unexpected-tensor"}:
        hint = "; the spec's weights.new / weights.ignore allow missing / unused tensors on purpose"
    return f"cannot load weights from {path}: {parts}; nothing was loaded{hint}"
