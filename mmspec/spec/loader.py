"""Spec file -> validated spec + plan, with every problem reported as a located diagnostic.

Order: safe YAML load -> apply the variant's overrides -> apply `--set` overrides -> strict pydantic
validation -> `plan` (references, cycles, shape rules). Every problem found on the way is collected
and raised as one `SpecError`, sorted by position.

Overridden values keep the position of the override that set them: a value set by a variant is
reported at the variant entry's line in the spec file (inside the entry when its value is a mapping),
and a value set by the N-th ``--set PATH=VALUE`` is reported as ``--set #N:1:COL``, where COL is the
column of the offending path segment (for a key error) or of the value inside that argument.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from mmspec.errors import Diagnostic, SpecError, UsageError, shorten
from mmspec.spec.budget import Budget, Estimate, check_budget, estimate
from mmspec.spec.model import Plan, PlanError, plan
from mmspec.spec.suggest import did_you_mean, suggestion_text
from mmspec.spec.yaml_safe import SourceMap, load_yaml_file, load_yaml_text, parse_scalar_value

Path_ = tuple[str | int, ...]


@dataclass
class LoadedSpec:
    """A validated spec with the variant and overrides applied, its plan, and where it came from."""

    path: str
    variant: str | None
    raw: dict
    spec: Any
    plan: Plan
    sha256: str
    estimate: Estimate
    """Parameters and activations by formula (`mmspec.spec.budget`), computed once while loading."""
    where: Any = field(repr=False, compare=False)
    """Locates a path in the spec tree in the file (variants and --set included): `where.diag(path, code, msg)`."""

    @property
    def stem(self) -> str:
        return f"{self.spec.name}-{self.variant}" if self.variant else self.spec.name


def load_spec(path: str | Path, spec_model: type[BaseModel], variant: str | None = None,
              sets: typing.Sequence[str] = (), budget: Budget | None = None, text: str | None = None) -> LoadedSpec:
    """Load, override, validate and plan a spec file (or `text`, reported as `path`); raise SpecError (all
    problems) or UsageError.

    With a `budget` (where the spec's own `budget:` replaces the limits not given explicitly), a planned spec whose
    estimated parameters or activations exceed it is a `budget` error."""
    file = str(path)
    raw, source = load_yaml_file(path) if text is None else load_yaml_text(text, file)
    where = _Locator(raw, source)
    diags: list[Diagnostic] = []
    if variant is not None:
        variants = raw.get("variants") if isinstance(raw.get("variants"), dict) else {}
        if variant not in variants:
            known = ", ".join(sorted(variants)) or "none"
            raise UsageError(f"{file}: unknown variant {variant!r}{suggestion_text(variant, variants)}; "
                             f"variants: {known}")
        body = variants[variant]
        if not isinstance(body, dict):
            raise SpecError([where.diag(("variants", variant), "type",
                                        f"variants.{variant}: a variant is a mapping of dotted paths to values, "
                                        f"got {_describe(body)}")])
        for key, value in body.items():
            origin = _Origin(file, source_path=("variants", variant, key))
            diags += _override(raw, where, [p.strip() for p in key.split(".")], key, value, origin)
    for item in parse_sets(sets):
        diags += _override(raw, where, list(item.parts), item.key, item.value, item.origin)
    spec = planned = None
    try:
        spec = spec_model.model_validate(raw)
    except ValidationError as e:
        diags += _translate(e, raw, where, spec_model)
    if spec is not None:
        try:
            planned = plan(spec)
        except PlanError as e:
            diags += [where.diag(p, code, msg) for p, code, msg in e.problems]
    est = estimate(spec, planned) if planned is not None else None
    if est is not None and budget is not None:
        diags += [where.diag(p, "budget", msg, at="key")
                  for p, msg in check_budget(spec, planned, budget.for_spec(spec), est)]
    if diags:
        raise SpecError(diags)
    resolved = {k: v for k, v in raw.items() if k != "variants"}
    digest = hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()
    return LoadedSpec(file, variant, raw, spec, planned, digest, est, where)


@dataclass(frozen=True)
class SetItem:
    """One parsed ``--set PATH=VALUE`` argument."""

    key: str
    parts: tuple[str, ...]
    value: Any
    origin: _Origin


def parse_sets(sets: typing.Sequence[str]) -> list[SetItem]:
    """Parse ``--set PATH=VALUE`` arguments (values in YAML 1.2 flow syntax); UsageError when malformed."""
    out = []
    for i, item in enumerate(sets, 1):
        key, eq, text = item.partition("=")
        parts = key.strip().split(".")
        if not eq or not key.strip() or not all(p.strip() for p in parts):
            raise UsageError(f"--set {_show(item)}: expected PATH=VALUE with a dotted PATH, "
                             "e.g. --set encoders.text.layers=2")
        try:
            value = parse_scalar_value(text)
        except SpecError as e:
            raise UsageError(f"--set {_show(item)}: bad value: {e.diagnostics[0].message}") from None
        cols, col = [], len(key) - len(key.lstrip()) + 1
        for part in parts:
            cols.append(col)
            col += len(part) + 1
        value_col = len(key) + 2 + len(text) - len(text.lstrip())
        origin = _Origin(f"--set #{i}", key_cols=tuple(cols), value_col=value_col)
        out.append(SetItem(key.strip(), tuple(p.strip() for p in parts), value, origin))
    return out


# ---------------------------------------------------------------------------------------------------
# Positions: the spec file's source map, plus where each overridden value came from.


@dataclass(frozen=True)
class _Origin:
    """Where an overridden value came from: a variant entry (its path in the spec file) or a --set."""

    file: str
    source_path: Path_ | None = None
    """Variant entries: ("variants", name, "dotted.key") in the spec file's source map."""
    key_cols: tuple[int, ...] = ()
    """--set: 1-based column of each path segment inside the argument."""
    value_col: int = 1
    """--set: 1-based column of the value inside the argument."""


class _Locator:
    """Turns a path in the (overridden) raw tree into the best FILE:LINE:COL for a diagnostic."""

    def __init__(self, raw: dict, source: SourceMap):
        self.raw = raw
        self.source = source
        self.origins: dict[Path_, _Origin] = {}

    def overridden(self, path: Path_, origin: _Origin) -> None:
        """`path` now holds a value set by `origin`; an earlier override under it no longer applies."""
        path = tuple(path)
        for old in [p for p in self.origins if p[: len(path)] == path]:
            del self.origins[old]
        self.origins[path] = origin

    def diag(self, path: Path_, code: str, message: str, at: str = "auto") -> Diagnostic:
        return Diagnostic(*self.locate(tuple(path), at), code, message)

    def locate(self, path: Path_, at: str = "auto") -> tuple[str, int, int]:
        """`at`: "key" (the key naming the node), "value" (the node itself) or "auto" (the key for mappings
        and lists, whose value starts on a later line in block style; the value for scalars)."""
        for n in range(len(path), 0, -1):
            origin = self.origins.get(path[:n])
            if origin is None:
                continue
            rest = path[n:]
            if origin.source_path is not None:
                return (self.source.file, *self._source_pos((*origin.source_path, *rest), at))
            if not rest and (at == "key" or (at == "auto" and isinstance(_get(self.raw, path), dict | list))):
                return origin.file, 1, origin.key_cols[-1]
            return origin.file, 1, origin.value_col
        return (self.source.file, *self._source_pos(path, at))

    def _source_pos(self, path: Path_, at: str) -> tuple[int, int]:
        keys, values = self.source.keys, self.source.values
        if at == "auto":
            at = "key" if isinstance(_get(self.raw, path), dict | list) else "value"
        first, second = (keys, values) if at == "key" else (values, keys)
        for n in range(len(path), -1, -1):
            pos = first.get(path[:n]) or second.get(path[:n])
            if pos:
                return pos
        return (1, 1)


def _get(node: Any, path: Path_) -> Any:
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return None
    return node


def _override(raw: dict, where: _Locator, parts: list[str], key: str, value: Any, origin: _Origin) -> list:
    """Set `raw[dotted.key] = value`; a path through missing or non-mapping nodes is a `bad-override`.

    A segment is a mapping key, or a list index when the node it applies to is a list."""
    node: Any = raw
    path: list[str | int] = []
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        here = ".".join(parts[: depth + 1])
        if isinstance(node, dict):
            path.append(part)
            if last:
                break
            child = node.get(part)
            if isinstance(child, dict | list):
                node = child
                continue
            hint = suggestion_text(part, [k for k, v in node.items() if isinstance(v, dict | list)])
            problem = f"{here!r} does not exist" if part not in node else (
                f"{here!r} is {_describe(child)}, not a mapping")
        elif part.isascii() and part.isdigit() and int(part) < len(node):  # ASCII: int() takes other digits
            path.append(int(part))
            if last:
                break
            if isinstance(node[int(part)], dict | list):
                node = node[int(part)]
                continue
            hint, problem = "", f"{here!r} is {_describe(node[int(part)])}, not a mapping"
        else:
            parent = ".".join(parts[:depth])
            hint = ""
            problem = (f"{parent!r} is a list of {len(node)}; use an index 0..{len(node) - 1}" if node
                       else f"{parent!r} is an empty list")
        return [_bad_override(where, origin, depth, f"override {key!r}: {problem}{hint}")]
    node[path[-1]] = copy.deepcopy(value)
    where.overridden(tuple(path), origin)
    return []


def _bad_override(where: _Locator, origin: _Origin, depth: int, message: str) -> Diagnostic:
    if origin.source_path is not None:
        file, line, col = where.locate(origin.source_path, "key")
    else:
        file, line, col = origin.file, 1, origin.key_cols[depth]
    return Diagnostic(file, line, col, "bad-override", message)


# ---------------------------------------------------------------------------------------------------
# pydantic errors -> diagnostics.

_TYPE_WORDS = {
    "int_type": "an integer", "int_from_float": "an integer", "int_parsing": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "dict_type": "a mapping", "list_type": "a list",
    "model_type": "a mapping", "model_attributes_type": "a mapping", "none_required": "null",
}
_BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
           "less_than": ("<", "lt")}
_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
_REF_PATTERN = r"^[a-z][a-z0-9_]{0,63}(\.[a-z][a-z0-9_]{0,63})?$"
_YAML11_BOOLS = {"yes", "no", "on", "off", "y", "n"}
_CUSTOM_CODES = {"unknown-survey-id"}
"""Error types of PydanticCustomErrors raised by spec validators; each one is its diagnostic code."""


def _translate(err: ValidationError, raw: dict, where: _Locator, spec_model: type[BaseModel]) -> list[Diagnostic]:
    """pydantic errors -> one located, plain-language diagnostic per spec path."""
    groups: dict[Path_, list[tuple[dict, bool]]] = {}
    for e in err.errors(include_url=False):
        path, names_field = _raw_path(e["loc"], raw)
        groups.setdefault(path, []).append((e, names_field))
    out = []
    for path, errors in groups.items():
        # A union (e.g. an axis: a name or a size) fails once per member: report the member whose type
        # matched the value, or one merged "expected X or Y" when none did.
        specific = [(e, f) for e, f in errors if e["type"] not in _TYPE_WORDS]
        if specific:
            out.append(_one(*specific[0], path, raw, where, spec_model))
        else:
            e = errors[0][0]
            words = list(dict.fromkeys(_TYPE_WORDS[x["type"]] for x, _ in errors))
            out.append(_type_error(path, words, e.get("input"), where))
    return out


def _one(e: dict, names_field: bool, path: Path_, raw: dict, where: _Locator,
         spec_model: type[BaseModel]) -> Diagnostic:
    kind, value, ctx = e["type"], e.get("input"), e.get("ctx") or {}
    name = _dotted(path)
    if kind == "extra_forbidden":
        parent, key = path[:-1], str(path[-1])
        allowed = _allowed_keys(spec_model, raw, parent)
        hint = suggestion_text(key, allowed)
        place = f" in {_dotted(parent)}" if parent else " at the top level"
        msg = f"unknown key {key!r}{place}{hint}"
        if not hint and allowed:
            msg += f"; allowed keys: {', '.join(sorted(allowed))}"
        return where.diag(path, "unknown-key", msg, at="key")
    if kind == "missing":
        parent = path[:-1] if names_field else path
        place = f" in {_dotted(parent)}" if parent else ""
        return where.diag(parent, "missing-key", f"missing required key {str(e['loc'][-1])!r}{place}", at="key")
    if kind == "union_tag_invalid":
        tags = [t.strip(" '") for t in ctx["expected_tags"].split(",")]
        tag = ctx["tag"]
        msg = (f"unknown type {_show(tag)} for {name}{suggestion_text(str(tag), tags)}; "
               f"known types: {', '.join(sorted(tags))}")
        return where.diag((*path, "type"), "unknown-type", msg, at="value")
    if kind == "union_tag_not_found":
        msg = f"missing required key 'type' in {name} (every component and modality is tagged with its type)"
        return where.diag(path, "missing-key", msg, at="key")
    if kind == "literal_error":
        expected = [x.strip(" '") for x in ctx["expected"].replace(" or ", ",").split(",") if x.strip()]
        if path == ("mmspec",):
            msg = f"unsupported spec format version {_show(value)}; this mmspec reads `mmspec: 1`"
            return where.diag(path, "version", msg, at="value")
        guess = did_you_mean(value, expected) if isinstance(value, str) else None
        hint = f" (did you mean {guess!r}?)" if guess else ""
        msg = f"{name}: invalid value {_show(value)}{hint}; expected one of: {', '.join(expected)}"
        return where.diag(path, "value", msg, at="value")
    if kind == "string_pattern_mismatch" and path and path[-1] == "[key]":
        path = path[:-1]
        return where.diag(path, "bad-name", _bad_name(str(path[-1]), f" in {_dotted(path[:-1])}"), at="key")
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == _NAME_PATTERN:
        return where.diag(path, "bad-name", f"{name}: " + _bad_name(str(value), ""), at="value")
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == _REF_PATTERN:
        msg = (f"{name}: invalid reference {_show(value)}: expected NODE or NODE.FIELD, each a lower-case name "
               f"(letters, digits, '_')")
        return where.diag(path, "bad-reference", msg, at="value")
    if kind == "string_pattern_mismatch":
        msg = f"{name}: invalid value {_show(value)}: must match the pattern {ctx.get('pattern')}"
        return where.diag(path, "value", msg, at="value")
    if kind == "finite_number":
        return where.diag(path, "not-finite", f"{name}: expected a finite number, got {_show(value)}", at="value")
    if kind in _BOUNDS:
        op, k = _BOUNDS[kind]
        return where.diag(path, "range", f"{name}: must be {op} {ctx[k]}, got {_show(value)}", at="value")
    if kind in ("too_short", "too_long"):
        n = ctx["min_length"] if kind == "too_short" else ctx["max_length"]
        what = ("entry" if n == 1 else "entries") if isinstance(value, dict) else ("item" if n == 1 else "items")
        bound = "at least" if kind == "too_short" else "at most"
        msg = f"{name}: needs {bound} {n} {what}, got {ctx.get('actual_length', len(value or ()))}"
        return where.diag(path, "range", msg, at="key")
    if kind in _CUSTOM_CODES:
        return where.diag(path, kind, f"{name}: {e['msg']}", at="value")
    if kind == "recursion_loop":
        return where.diag(path, "value", f"{name}: the value refers to itself", at="key")
    text = e["msg"]
    return where.diag(path, "value", f"{name}: {text[:1].lower()}{text[1:]}, got {_show(value)}", at="value")


def _type_error(path: Path_, words: list[str], value: Any, where: _Locator) -> Diagnostic:
    msg = f"{_dotted(path)}: expected {' or '.join(words)}, got {_describe(value)}"
    if "true or false" in words and isinstance(value, str) and value.lower() in _YAML11_BOOLS:
        msg += " (YAML 1.2 reads yes/no/on/off as strings; write true or false)"
    elif "an integer" in words and isinstance(value, float) and value.is_integer():
        msg += f" (write {int(value)} without the decimal point)"
    elif "an integer" in words and isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        msg += f" (write {value.strip()} without quotes)"
    elif "a number" in words and isinstance(value, str) and _is_number(value):
        msg += f" (write {value.strip()} without quotes)"
    elif words == ["a string"] and isinstance(value, int | float) and not isinstance(value, bool):
        msg += "; quote it to make it a string"
    return where.diag(path, "type", msg, at="value")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _bad_name(name: str, place: str) -> str:
    """Why `name` is not a valid identifier; `place` (" in modalities") says where it was used."""
    if not name:
        return f"invalid empty name{place}"
    if len(name) > 64:
        return f"invalid name {_show(name)}{place}: it is {len(name)} characters long; at most 64 are allowed"
    fixed = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    hint = f" (e.g. {fixed!r})" if re.fullmatch(_NAME_PATTERN, fixed) else ""
    return (f"invalid name {_show(name)}{place}: use lower-case letters, digits and '_', starting with a letter, "
            f"at most 64 characters{hint}")


def _raw_path(loc: tuple, raw: Any) -> tuple[Path_, bool]:
    """Map a pydantic location onto the raw tree, skipping tag and union-member segments.

    Returns the path and whether the final segment names a field of a mapping (for `missing`)."""
    path: list = []
    node = raw
    for i, seg in enumerate(loc):
        if isinstance(node, dict) and seg in node:
            node = node[seg]
            path.append(seg)
        elif isinstance(node, list) and isinstance(seg, int) and seg < len(node):
            node = node[seg]
            path.append(seg)
        elif seg == "[key]":
            path.append(seg)
        elif i == len(loc) - 1 and isinstance(node, dict):
            path.append(seg)
            return tuple(path), True
    return tuple(path), False


def _allowed_keys(model: Any, raw: Any, path: tuple) -> list[str]:
    """Field names of the pydantic model that validates the mapping at `path` (follows `type:` tags)."""
    node = raw
    ann: Any = model
    for seg in (*path, None):
        ann = _pick(ann, node)
        if seg is None:
            break
        origin = typing.get_origin(ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            ann = ann.model_fields[seg].annotation if seg in ann.model_fields else None
        elif origin is dict:
            ann = typing.get_args(ann)[1]
        elif origin is list:
            ann = typing.get_args(ann)[0]
        else:
            return []
        node = _get(node, (seg,))
    ann = _pick(ann, node)
    return list(ann.model_fields) if isinstance(ann, type) and issubclass(ann, BaseModel) else []


def _pick(ann: Any, node: Any) -> Any:
    """Unwrap Annotated/Optional/unions, choosing the member whose `type` literal matches the raw node."""
    while True:
        origin = typing.get_origin(ann)
        if origin is typing.Annotated:
            ann = typing.get_args(ann)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(ann) if a is not type(None)]
            models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
            tag = node.get("type") if isinstance(node, dict) else None
            chosen = [m for m in models if "type" in m.model_fields and tag in typing.get_args(
                m.model_fields["type"].annotation)]
            ann = (chosen or models or members)[0]
        else:
            return ann


def _dotted(path: Path_) -> str:
    """`encoders.bert.width`, `fusion.joint.inputs[1]`; the root is `the spec`."""
    text = ""
    for p in path:
        if p == "[key]":
            continue
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text or "the spec"


def _show(value: Any) -> str:
    """A short repr of a user value (control characters escaped when printed): at most 60 characters, a longer
    one cut with its length."""
    return shorten(repr(value))


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {_show(value)}"
    if isinstance(value, int | float):
        return f"number {_show(value)}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else _show(value)
