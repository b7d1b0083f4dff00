"""Spec file -> validated spec + plan, with every problem reported as a located diagnostic.

Order: safe YAML load -> apply the variant's overrides -> apply `--set` overrides -> strict pydantic
validation -> `plan` (references, cycles, shape rules). Overridden values keep the position of the
override that set them, so an error in a variant points at the variant's line.
"""

from __future__ import annotations

import copy
import hashlib
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from mmspec.errors import Diagnostic, SpecError, UsageError
from mmspec.spec.model import Plan, PlanError, plan
from mmspec.spec.suggest import did_you_mean, suggestion_text
from mmspec.spec.yaml_safe import SourceMap, load_yaml_file, parse_scalar_value


@dataclass
class LoadedSpec:
    """A validated spec with the variant and overrides applied, its plan, and where it came from."""

    path: str
    variant: str | None
    raw: dict
    spec: Any
    plan: Plan
    sha256: str

    @property
    def stem(self) -> str:
        return f"{self.spec.name}-{self.variant}" if self.variant else self.spec.name


def load_spec(path: str | Path, spec_model: type[BaseModel], variant: str | None = None,
              sets: typing.Sequence[str] = ()) -> LoadedSpec:
    """Load, override, validate and plan a spec file; raise SpecError (all problems) or UsageError."""
    file = str(path)
    raw, source = load_yaml_file(path)
    diags: list[Diagnostic] = []
    if variant is not None:
        variants = raw.get("variants") if isinstance(raw.get("variants"), dict) else {}
        if variant not in variants:
            known = ", ".join(sorted(variants)) or "none"
            raise UsageError(f"{file}: unknown variant {variant!r}{suggestion_text(variant, variants)}; "
                             f"variants: {known}")
        body = variants[variant]
        if not isinstance(body, dict):
            raise SpecError([_diag(source, ("variants", variant), "type", "a variant is a mapping of dotted "
                                                                              "paths to values")])
        for key, value in body.items():
            pos = source.locate(("variants", variant, key))
            diags += _override(raw, source, key, value, source.file, pos)
    for i, item in enumerate(sets):
        key, eq, text = item.partition("=")
        if not eq or not key:
            raise UsageError(f"--set {item!r}: expected PATH=VALUE, e.g. encoders.text.layers=2")
        try:
            value = parse_scalar_value(text)
        except SpecError as e:
            raise UsageError(f"--set {item!r}: {e.diagnostics[0].message}") from None
        diags += _override(raw, source, key, value, f"--set #{i + 1}", (1, len(key) + 2))
    if diags:
        raise SpecError(diags)
    try:
        spec = spec_model.model_validate(raw)
    except ValidationError as e:
        raise SpecError(_translate(e, raw, source, spec_model)) from None
    try:
        planned = plan(spec)
    except PlanError as e:
        raise SpecError([_diag(source, p, code, msg) for p, code, msg in e.problems]) from None
    resolved = {k: v for k, v in raw.items() if k != "variants"}
    digest = hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()
    return LoadedSpec(file, variant, raw, spec, planned, digest)


def _diag(source: SourceMap, path: tuple, code: str, message: str) -> Diagnostic:
    line, col = source.locate(path)
    return Diagnostic(source.file, line, col, code, message)


def _override(raw: dict, source: SourceMap, key: str, value: Any, origin: str, pos: tuple[int, int]) -> list:
    """Set `raw[dotted.key] = value`; a path through missing or non-mapping nodes is an error."""
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in key.split(".")]
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part) if isinstance(node, dict) else (
            node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node) else None)
        if not isinstance(child, dict | list):
            where = ".".join(map(str, parts[: depth + 1]))
            options = node if isinstance(node, dict) else []
            hint = suggestion_text(str(part), options)
            return [Diagnostic(origin, *pos, "bad-override",
                               f"override {key!r}: {where!r} is not a mapping in the spec{hint}")]
        node = child
    last = parts[-1]
    if isinstance(node, list) and not (isinstance(last, int) and last < len(node)):
        return [Diagnostic(origin, *pos, "bad-override", f"override {key!r}: index {last} is outside the list")]
    node[last] = copy.deepcopy(value)
    source.with_overlay(tuple(parts), *pos)
    return []


_TYPE_WORDS = {
    "int_type": "an integer", "int_from_float": "an integer", "float_type": "a number", "bool_type": "true or false",
    "string_type": "a string", "dict_type": "a mapping", "list_type": "a list", "model_type": "a mapping",
    "model_attributes_type": "a mapping", "literal_error": None,
}


def _translate(err: ValidationError, raw: dict, source: SourceMap, spec_model: type[BaseModel]) -> list[Diagnostic]:
    """pydantic errors -> one located, plain-language diagnostic per spec path."""
    out: dict[tuple, Diagnostic] = {}
    for e in err.errors(include_url=False):
        path, model_path = _raw_path(e["loc"], raw)
        kind, value = e["type"], e.get("input")
        if kind == "extra_forbidden":
            allowed = _allowed_keys(spec_model, raw, path[:-1])
            key = str(path[-1])
            hint = suggestion_text(key, allowed)
            msg = f"unknown key {key!r}{hint}" + ("" if hint else f"; allowed keys: {', '.join(sorted(allowed))}")
            code = "unknown-key"
        elif kind == "missing":
            path = path[:-1] if model_path else path
            msg, code = f"missing required key {str(e['loc'][-1])!r}", "missing-key"
        elif kind == "union_tag_invalid":
            tags = [t.strip(" '") for t in e["ctx"]["expected_tags"].split(",")]
            tag = e["ctx"]["tag"]
            path = (*path, "type")
            msg = f"unknown type {tag!r}{suggestion_text(str(tag), tags)}; known types: {', '.join(tags)}"
            code = "unknown-type"
        elif kind == "union_tag_not_found":
            msg, code = "missing required key 'type' (every component and modality is tagged)", "missing-key"
        elif kind == "literal_error":
            expected = [x.strip(" '") for x in e["ctx"]["expected"].replace(" or ", ",").split(",") if x.strip()]
            guess = did_you_mean(str(value), expected) if isinstance(value, str) else None
            hint = f" (did you mean {guess!r}?)" if guess else ""
            msg, code = f"invalid value {_show(value)}{hint}; expected one of: {', '.join(expected)}", "value"
        elif kind in _TYPE_WORDS:
            msg = f"expected {_TYPE_WORDS[kind]}, got {_describe(value)}"
            if kind == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
                msg += "; quote it to make it a string"
            code = "type"
        elif kind == "string_pattern_mismatch" and path and path[-1] == "[key]":
            path = path[:-1]
            msg = (f"invalid name {_show(path[-1])}: use lower-case letters, digits and '_', starting with a "
                   "letter, at most 64 characters")
            code = "bad-name"
        elif kind == "string_pattern_mismatch":
            msg, code = f"invalid value {_show(value)}: {e['msg'].lower()}", "value"
        elif kind == "finite_number":
            msg, code = f"expected a finite number, got {_show(value)}", "value"
        else:
            msg, code = f"{e['msg'][0].lower()}{e['msg'][1:]}, got {_show(value)}", "value"
        path = tuple(p for p in path if p != "[key]")
        if path not in out:
            out[path] = _diag(source, path, code, msg)
    return list(out.values())


def _raw_path(loc: tuple, raw: Any) -> tuple[tuple, bool]:
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
        node = node[seg] if isinstance(node, dict | list) else None
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


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, str):
        return f"string {_show(value)}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else _show(value)
