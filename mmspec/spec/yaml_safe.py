"""Safe YAML loading: plain data plus source positions, every problem reported as a `Diagnostic`.

The loader walks PyYAML's *event* stream (libyaml when available) and builds dicts, lists and scalars
itself, iteratively. Nothing is ever constructed from a tag, anchors/aliases are refused before they
can expand, and nesting, node count, scalar length and file size are capped. Scalars follow the
YAML 1.2 core schema: ``yes``/``no``/``on`` stay strings, ``1e-4`` is a float, ``0755`` is the decimal
int 755 (1.2 core has no leading-zero octal; write ``0o755``), ``1:30`` and ``2024-01-02`` stay strings.
"""

from __future__ import annotations

import codecs
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import yaml

from mmspec.errors import Diagnostic, SpecError
from mmspec.spec.files import FileProblem, read_limited

MAX_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_NODES = 100_000
MAX_SCALAR_CHARS = 64 * 1024

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

KeyPath = tuple[str | int, ...]
Pos = tuple[int, int]


@dataclass
class SourceMap:
    """1-based (line, col) of every mapping key and every value node, by path from the root."""

    file: str
    keys: dict[KeyPath, Pos] = field(default_factory=dict)
    values: dict[KeyPath, Pos] = field(default_factory=dict)

    def key_pos(self, path: KeyPath) -> Pos | None:
        """Position of the mapping key that ends `path`."""
        return self.keys.get(tuple(path))

    def value_pos(self, path: KeyPath) -> Pos | None:
        """Position of the value node at `path`."""
        return self.values.get(tuple(path))

    def locate(self, path: KeyPath) -> Pos:
        """Best position for a diagnostic about `path`: its key, its value, else the nearest ancestor."""
        path = tuple(path)
        for n in range(len(path), -1, -1):
            pos = self.keys.get(path[:n]) or self.values.get(path[:n])
            if pos:
                return pos
        return (1, 1)

    def with_overlay(self, path: KeyPath, line: int, col: int) -> None:
        """Record the position of a value injected after loading (a CLI override)."""
        self.keys[tuple(path)] = self.values[tuple(path)] = (line, col)


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:
        return True


def dump_spec(tree: dict) -> str:
    """A spec tree as YAML text; a mapping that appears twice is written out twice (specs refuse YAML aliases)."""
    return yaml.dump(tree, Dumper=_NoAliases, sort_keys=False)


def load_yaml_file(path: str | Path) -> tuple[dict, SourceMap]:
    """Read and load a spec file; raises `SpecError` with every problem found."""
    file = str(path)
    try:
        data = read_limited(path, MAX_BYTES)
    except FileProblem as e:
        _fail(file, 0, 0, "read-error", f"cannot read spec: {e}")
    return load_yaml_text(data, file)


def load_yaml_text(text: str | bytes, file: str = "<string>") -> tuple[dict, SourceMap]:
    """Load a spec from text or bytes (at most 1 MiB of UTF-8); raises `SpecError` with every problem."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if len(data) > MAX_BYTES:
        _fail(file, 0, 0, "too-large", f"spec is larger than the {MAX_BYTES >> 20} MiB limit")
    builder = _Builder(file)
    builder.run(_shield(_decode(data, file), file))
    root = builder.root
    if not builder.diags and root is None:
        builder.diags.append(Diagnostic(file, 0, 0, "empty-spec", "spec is empty"))
    elif root is not None and not isinstance(root, dict):
        kind = "a list" if isinstance(root, list) else "a scalar"
        builder.error(builder.smap.values[()], "not-a-mapping", f"expected a single mapping, got {kind}")
    if builder.diags:
        raise SpecError(builder.diags)
    return root, builder.smap


def parse_scalar_value(text: str) -> object:
    """Parse a CLI ``--set PATH=VALUE`` value with the YAML 1.2 core schema (flow ``[..]``/``{..}`` too)."""
    text = text.strip()
    if not text.startswith(("[", "{", '"', "'")):
        try:
            return _resolve_plain(text)
        except ValueError:
            _fail("<value>", 1, 1, "too-large", "integer literal too long")
    builder = _Builder("<value>")
    builder.run(text)
    if builder.diags:
        raise SpecError(builder.diags)
    return builder.root


def _fail(file: str, line: int, col: int, code: str, message: str) -> NoReturn:
    raise SpecError([Diagnostic(file, line, col, code, message)])


def _decode(data: bytes, file: str) -> str:
    """UTF-8 (optional BOM) without NUL bytes, else a `not-utf8` error at the first bad byte."""
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    bad = data.find(b"\0")
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError as e:
        bad = start + e.start if bad < 0 else min(bad, start + e.start)
    if bad < 0:
        return text
    line_start = data.rfind(b"\n", 0, bad) + 1 or start
    col = len(data[line_start:bad].decode("utf-8", "replace")) + 1
    line = data.count(b"\n", 0, bad) + 1
    _fail(file, line, col, "not-utf8", f"not UTF-8 text at byte {bad}")


_NOT_BREAKS = {"\x85": "\U0010fff0", "\u2028": "\U0010fff1", "\u2029": "\U0010fff2"}
"""NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR end lines in YAML 1.1 (and PyYAML) but are ordinary characters in
YAML 1.2: hidden behind private-use stand-ins while parsing, so a comment cannot end at one (injecting the rest
of its line as content) and line numbers count only CR and LF."""
_SHIELD = str.maketrans(_NOT_BREAKS)
_UNSHIELD = str.maketrans({v: k for k, v in _NOT_BREAKS.items()})


def _shield(text: str, file: str) -> str:
    if any(c in text for c in _NOT_BREAKS.values()):
        pos = min(text.find(c) for c in _NOT_BREAKS.values() if c in text)
        line = text.count("\n", 0, pos) + 1
        _fail(file, line, pos - text.rfind("\n", 0, pos), "yaml-syntax",
              f"character U+{ord(text[pos]):X} is reserved (a private-use code point); remove it")
    return text.translate(_SHIELD)


def _unshield(text: str) -> str:
    return text.translate(_UNSHIELD)


# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution).
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?[0-9]+")
_OCT = re.compile(r"0o[0-7]+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = re.compile(r"([-+]?)\.(inf|Inf|INF)")
_NAN = re.compile(r"\.(nan|NaN|NAN)")


def _resolve_plain(text: str) -> object:
    """Value of an untagged plain scalar; ValueError for an int beyond Python's digit limit."""
    if text in _NULLS:
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    if _INT.fullmatch(text):
        return int(text)
    if _OCT.fullmatch(text):
        return int(text[2:], 8)
    if _HEX.fullmatch(text):
        return int(text[2:], 16)
    if _FLOAT.fullmatch(text):
        return float(text)
    if m := _INF.fullmatch(text):
        return -math.inf if m.group(1) == "-" else math.inf
    if _NAN.fullmatch(text):
        return math.nan
    return text


_NEED_KEY = object()  # a mapping frame is waiting for its next key
_BAD = object()  # a rejected key or scalar (already reported)


class _Frame:
    """An open collection; `path` is None for subtrees not recorded in the source map."""

    __slots__ = ("value", "path", "key", "seen")

    def __init__(self, value: dict | list, path: KeyPath | None):
        self.value = value
        self.path = path
        self.key: object = _NEED_KEY
        self.seen: dict[str, int] = {}


class _Builder:
    """Turns one YAML event stream into plain data, a `SourceMap` and diagnostics, without recursion."""

    def __init__(self, file: str):
        self.file = file
        self.diags: list[Diagnostic] = []
        self.smap = SourceMap(file)
        self.stack: list[_Frame] = []
        self.root: object = None
        self.nodes = 0
        self.docs = 0

    def error(self, pos: Pos, code: str, message: str) -> None:
        self.diags.append(Diagnostic(self.file, pos[0], pos[1], code, message))

    def run(self, text: str) -> None:
        try:
            for event in yaml.parse(text, Loader=_Loader):
                if not self.feed(event):
                    return
        except yaml.MarkedYAMLError as e:
            self.syntax_error(e, text)
        except yaml.reader.ReaderError as e:
            message = f"character #x{e.character:04x}: {e.reason}"
            self.error(_text_pos(text, e.position), "yaml-syntax", message)

    def syntax_error(self, e: yaml.MarkedYAMLError, text: str) -> None:
        mark = e.problem_mark or e.context_mark
        pos = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = e.problem or "invalid YAML"
        if problem == "exceeded maximum nesting depth":  # libyaml's own cap (1000), hit before any event
            self.error(pos, "too-deep", f"nesting deeper than {MAX_DEPTH}")
            return
        if mark and text[mark.index : mark.index + 1] == "\t":
            problem = "found a tab character; indent with spaces"
        if e.context and e.context_mark:
            cm = e.context_mark
            problem += f" ({e.context}, from line {cm.line + 1}, column {cm.column + 1})"
        self.error(pos, "yaml-syntax", problem)

    def feed(self, event: yaml.Event) -> bool:
        """Handle one event; False stops the pass (a limit was hit or a second document began)."""
        if isinstance(event, yaml.DocumentStartEvent):
            self.docs += 1
            if self.docs > 1:
                message = "expected a single mapping, found a second document"
                self.error(_pos(event), "multiple-documents", message)
                return False
        elif isinstance(event, yaml.CollectionEndEvent):
            self.stack.pop()
        elif isinstance(event, yaml.NodeEvent):
            return self.node(event)
        return True

    def node(self, event: yaml.NodeEvent) -> bool:
        pos = _pos(event)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self.error(pos, "too-large", f"more than {MAX_NODES} YAML nodes")
            return False
        if event.anchor is not None or isinstance(event, yaml.AliasEvent):
            self.error(pos, "yaml-alias", "anchors, aliases and merge keys are not allowed")
        if getattr(event, "tag", None) is not None:
            self.error(pos, "yaml-tag", f"tags are not allowed (found {event.tag!r})")
        if isinstance(event, yaml.ScalarEvent):
            value = self.scalar(event, pos)
        elif isinstance(event, yaml.SequenceStartEvent):
            value = []
        elif isinstance(event, yaml.MappingStartEvent):
            value = {}
        else:
            value = _BAD
        path = self.place(event, value, pos)
        if isinstance(event, yaml.CollectionStartEvent):
            if len(self.stack) >= MAX_DEPTH:
                self.error(pos, "too-deep", f"nesting deeper than {MAX_DEPTH}")
                return False
            self.stack.append(_Frame(value, path))
        return True

    def scalar(self, event: yaml.ScalarEvent, pos: Pos) -> object:
        if len(event.value) > MAX_SCALAR_CHARS:
            self.error(pos, "too-large", f"scalar longer than {MAX_SCALAR_CHARS} characters")
            return _BAD
        if event.style:  # quoted or block scalars are always strings
            return _unshield(event.value)
        try:
            value = _resolve_plain(event.value)
            return _unshield(value) if isinstance(value, str) else value
        except ValueError:
            self.error(pos, "too-large", "integer literal too long")
            return _BAD

    def place(self, event: yaml.NodeEvent, value: object, pos: Pos) -> KeyPath | None:
        """Attach a node to its parent; returns its path, or None when it is not recorded."""
        stored = None if value is _BAD else value
        if not self.stack:
            self.root = stored
            self.smap.values[()] = pos
            return ()
        top = self.stack[-1]
        if isinstance(top.value, list):
            top.value.append(stored)
            path = None if top.path is None else (*top.path, len(top.value) - 1)
        elif top.key is _NEED_KEY:
            top.key = self.key(event, value, top, pos)
            if top.key is not _BAD and top.path is not None:
                self.smap.keys[(*top.path, top.key)] = pos
            return None
        else:
            key, top.key = top.key, _NEED_KEY
            if key is _BAD:
                return None
            top.value[key] = stored
            path = None if top.path is None else (*top.path, key)
        if path is not None:
            self.smap.values[path] = pos
        return path

    def key(self, event: yaml.NodeEvent, value: object, top: _Frame, pos: Pos) -> object:
        """Validate a mapping key: a plain string, not `<<`, not seen before in this mapping."""
        if value is _BAD:
            return _BAD
        if not isinstance(value, str):
            message = (
                f"mapping key {event.value!r} is not a string; quote it"
                if isinstance(event, yaml.ScalarEvent)
                else "mapping keys must be plain strings, not a list or mapping"
            )
            self.error(pos, "non-string-key", message)
            return _BAD
        if value == "<<" and not event.style:
            self.error(pos, "yaml-alias", "anchors, aliases and merge keys are not allowed")
            return _BAD
        if value in top.seen:
            message = f"duplicate key {value!r} (first defined at line {top.seen[value]})"
            self.error(pos, "duplicate-key", message)
            return _BAD
        top.seen[value] = pos[0]
        return value


def _pos(event: yaml.Event) -> Pos:
    return (event.start_mark.line + 1, event.start_mark.column + 1)


def _text_pos(text: str, index: int) -> Pos:
    return (text.count("\n", 0, index) + 1, index - text.rfind("\n", 0, index))
