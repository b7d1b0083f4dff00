"""The safe YAML loader: every diagnostic code with its position, YAML 1.2 scalars, limits, positions."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import yaml

from mmspec.errors import SpecError
from mmspec.spec import files, yaml_safe
from mmspec.spec.yaml_safe import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_NODES,
    MAX_SCALAR_CHARS,
    SourceMap,
    load_yaml_file,
    load_yaml_text,
    parse_scalar_value,
)

LOADERS = [yaml.SafeLoader] + ([yaml.CSafeLoader] if hasattr(yaml, "CSafeLoader") else [])


@pytest.fixture(params=LOADERS, ids=lambda c: c.__name__)
def loader(request, monkeypatch):
    """Run a test with libyaml's parser and again with the pure-Python fallback."""
    monkeypatch.setattr(yaml_safe, "_Loader", request.param)
    return request.param


def errors(text: str | bytes, file: str = "s.yaml") -> list[tuple[str, int, int]]:
    with pytest.raises(SpecError) as info:
        load_yaml_text(text, file)
    return [(d.code, d.line, d.col) for d in info.value.diagnostics]


def one_error(text: str | bytes) -> tuple[str, int, int, str]:
    with pytest.raises(SpecError) as info:
        load_yaml_text(text, "s.yaml")
    (d,) = info.value.diagnostics
    assert d.file == "s.yaml"
    return d.code, d.line, d.col, d.message


# --- file and encoding -------------------------------------------------------------------------


def test_read_errors(tmp_path, monkeypatch):
    for path, words in [(tmp_path / "missing.yaml", "no such file or directory"), (tmp_path, "directory")]:
        with pytest.raises(SpecError) as info:
            load_yaml_file(path)
        (d,) = info.value.diagnostics
        assert (d.file, d.code, d.line, d.col) == (str(path), "read-error", 0, 0)
        assert d.message.startswith("cannot read spec") and words in d.message

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files.os, "open", denied)  # root reads any file: deny it by hand
    with pytest.raises(SpecError) as info:
        load_yaml_file(tmp_path / "x.yaml")
    assert [(d.code, d.message) for d in info.value.diagnostics] == [
        ("read-error", "cannot read spec: permission denied")
    ]


def test_file_loads_with_positions(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("name: demo\ndim: 64\n")
    data, smap = load_yaml_file(path)
    assert data == {"name": "demo", "dim": 64}
    assert smap.file == str(path) and smap.key_pos(("dim",)) == (2, 1)


def test_too_large_rejected_before_parsing(tmp_path, monkeypatch):
    monkeypatch.setattr(yaml_safe._Builder, "run", lambda *a: pytest.fail("parsed an oversized spec"))
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a: 1\n" + b"#" * MAX_BYTES)
    with pytest.raises(SpecError) as info:
        load_yaml_file(big)
    assert [(d.code, d.line, d.col) for d in info.value.diagnostics] == [("too-large", 0, 0)]
    assert "1 MiB" in info.value.diagnostics[0].message
    assert errors("x" * (MAX_BYTES + 1)) == [("too-large", 0, 0)]


def test_exactly_max_bytes_is_accepted():
    text = "a: 1\n" + "#" * (MAX_BYTES - 5)
    assert len(text.encode()) == MAX_BYTES
    assert load_yaml_text(text)[0] == {"a": 1}


def test_long_scalar_too_many_nodes_and_huge_int():
    assert load_yaml_text("a: " + "x" * MAX_SCALAR_CHARS)[0]["a"] == "x" * MAX_SCALAR_CHARS
    assert one_error("a: " + "x" * (MAX_SCALAR_CHARS + 1))[:3] == ("too-large", 1, 4)
    assert one_error("a: 1\nb: " + "9" * 5000) == ("too-large", 2, 4, "integer literal too long")
    code, line, col, message = one_error("a: [" + "1," * MAX_NODES + "]")
    # node MAX_NODES + 1 is the list item at index MAX_NODES - 3 (mapping, key and list come first)
    assert (code, line, col) == ("too-large", 1, 5 + 2 * (MAX_NODES - 3))
    assert str(MAX_NODES) in message


@pytest.mark.parametrize(
    ("data", "line", "col", "byte"),
    [
        (b"a: 1\nb: \xff\n", 2, 4, 8),  # invalid UTF-8
        (b"a: 1\nb: x\x00y\n", 2, 5, 9),  # NUL byte
        ("a: 1".encode("utf-16"), 1, 1, 0),  # UTF-16 with BOM
        ("a: 1".encode("utf-16-le"), 1, 2, 1),  # UTF-16 without BOM: NUL bytes
        (b"\x89PNG\r\n\x1a\n\x00\x00", 1, 1, 0),  # a binary file
        (b"\xef\xbb\xbfa: \xc3(\n", 1, 4, 6),  # after a BOM: the offset counts it, the column does not
        ("é: ü".encode() + b"\xff", 1, 5, 6),  # columns count characters
    ],
)
def test_not_utf8(data, line, col, byte):
    assert one_error(data) == ("not-utf8", line, col, f"not UTF-8 text at byte {byte}")


def test_lone_surrogate_in_str_is_not_utf8():
    assert one_error("a: \ud800") == ("not-utf8", 1, 4, "not UTF-8 text at byte 3")


def test_utf8_bom_accepted_and_stripped():
    data, smap = load_yaml_text(b"\xef\xbb\xbfname: caf\xc3\xa9\n")
    assert data == {"name": "café"}
    assert smap.key_pos(("name",)) == (1, 1)


@pytest.mark.parametrize("text", ["", "\n\n  \n", "# only\n# comments\n", "---\n", "~\n"])
def test_empty_spec(text):
    assert one_error(text) == ("empty-spec", 0, 0, "spec is empty")


@pytest.mark.parametrize(
    ("text", "line", "col", "kind"),
    [("- a\n- b\n", 1, 1, "a list"), ("# c\n  just text\n", 2, 3, "a scalar"), ("42", 1, 1, "a scalar")],
)
def test_not_a_mapping(text, line, col, kind):
    assert one_error(text) == ("not-a-mapping", line, col, f"expected a single mapping, got {kind}")


def test_multiple_documents(loader):
    code, line, col, message = one_error("a: 1\n---\nb: 2\n")
    assert (code, line, col) == ("multiple-documents", 2, 1) and "single mapping" in message


# --- YAML structure ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "col", "words"),
    [
        ('a: 1\nb: "open\n', 3, 1, "while scanning a quoted scalar, from line 2, column 4"),
        ("a:\n\tb: 1\n", 2, 1, "tab character; indent with spaces"),
        ("a:\n  b: 1\n c: 2\n", 3, 2, "while parsing a block mapping, from line 1, column 1"),
        ("a: [1, 2\n", 2, 1, "flow sequence"),
        ("a: 1\nb: x\x01\n", 2, 5, "#x0001"),
    ],
)
def test_yaml_syntax(loader, text, line, col, words):
    code, got_line, got_col, message = one_error(text)
    assert (code, got_line, got_col) == ("yaml-syntax", line, col)
    assert words in message
    assert "Traceback" not in message and "<unicode string>" not in message


def test_duplicate_keys_top_level_and_nested_in_one_error(loader):
    text = "a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\na: 4\nlist:\n  - x: 1\n    x: 2\n"
    with pytest.raises(SpecError) as info:
        load_yaml_text(text)
    assert [(d.code, d.line, d.col, d.message) for d in info.value.diagnostics] == [
        ("duplicate-key", 5, 3, "duplicate key 'c' (first defined at line 3)"),
        ("duplicate-key", 6, 1, "duplicate key 'a' (first defined at line 1)"),
        ("duplicate-key", 9, 5, "duplicate key 'x' (first defined at line 8)"),
    ]


def test_same_key_in_sibling_mappings_is_fine():
    assert load_yaml_text("a: {x: 1}\nb: {x: 2}\n")[0] == {"a": {"x": 1}, "b": {"x": 2}}


def test_anchors_aliases_and_merge_keys(loader):
    text = "base: &b {dim: 4}\nenc: *b\nother:\n  <<: {dim: 2}\nrec: &r [1, *r]\n"
    assert errors(text) == [("yaml-alias", 1, 7), ("yaml-alias", 2, 6), ("yaml-alias", 4, 3),
                            ("yaml-alias", 5, 6), ("yaml-alias", 5, 13)]
    assert one_error("a: *x\n")[3] == "anchors, aliases and merge keys are not allowed"
    assert load_yaml_text('"<<": 1\n')[0] == {"<<": 1}  # a quoted '<<' is just a string


def test_alias_bomb_rejected_without_expansion(loader):
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 10) + "]")
    found = errors("\n".join(lines) + "\n")  # one error per anchor/alias event: nothing is expanded
    assert len(found) == 10 + 9 * 10 and {code for code, _, _ in found} == {"yaml-alias"}


TAGGED = [
    "a: !!python/object/apply:os.system ['id']",
    "b: !!python/object/new:os.system ['id']",
    "c: !!python/name:os.system",
    "d: !include other.yaml",
    "e: !!binary aGVsbG8=",
    "f: !!set {x, y}",
    "g: !!timestamp 2024-01-02",
    "h: !!str 5",
    "i: ! plain",
    "j: !!map {k: v}",
]


def test_every_tag_reported_in_one_pass(loader):
    with pytest.raises(SpecError) as info:
        load_yaml_text("\n".join(TAGGED) + "\n")
    got = info.value.diagnostics
    assert [(d.code, d.line, d.col) for d in got] == [("yaml-tag", n, 4) for n in range(1, len(TAGGED) + 1)]
    assert all(d.message.startswith("tags are not allowed") for d in got)


def test_tag_payload_never_executes(tmp_path, monkeypatch, loader):
    monkeypatch.chdir(tmp_path)
    canary = tmp_path / "CANARY"
    spec = tmp_path / "evil.yaml"
    spec.write_text(
        f'x: !!python/object/apply:os.system ["touch {canary}"]\n'
        f'y: !!python/object/apply:subprocess.check_call [["touch", "{canary}"]]\n'
        f'z: !!python/object/new:os.system ["touch {canary}"]\n'
        f'!!python/object/apply:os.system ["touch {canary}"]: key\n'
    )
    with pytest.raises(SpecError) as info:
        load_yaml_file(spec)
    assert {d.code for d in info.value.diagnostics} == {"yaml-tag", "non-string-key"}
    assert not canary.exists() and not (tmp_path / "CANARY").exists()


@pytest.mark.parametrize(
    ("key", "col"), [("1", 1), ("true", 1), ("null", 1), ("~", 1), ("1.5", 1), ("? [1, 2]\n", 3), ("?\n", 2)]
)
def test_non_string_keys(loader, key, col):
    code, line, got_col, message = one_error(f"{key}: v\n")
    assert (code, line, got_col) == ("non-string-key", 1, col)
    assert "string" in message


def test_int_and_bool_keys_are_both_reported_not_merged(loader):
    assert errors("1: a\ntrue: b\n'1': c\n") == [("non-string-key", 1, 1), ("non-string-key", 2, 1)]
    assert load_yaml_text("'1': a\n\"true\": b\nyes: c\n")[0] == {"1": "a", "true": "b", "yes": "c"}


def test_flow_mapping_as_key():
    assert one_error("{a: 1}: v\n")[:3] == ("non-string-key", 1, 1)


@pytest.mark.parametrize(
    ("text", "line", "col"),
    [
        ("[" * 5000 + "]" * 5000, None, None),  # libyaml refuses this itself, before any event
        ("- " * 5000 + "1\n", 1, 2 * MAX_DEPTH + 1),
        ("{a: " * 5000 + "1" + "}" * 5000, 1, 4 * MAX_DEPTH + 1),
        ("".join(f"{'  ' * i}a:\n" for i in range(MAX_DEPTH + 5)), MAX_DEPTH + 1, 2 * MAX_DEPTH + 1),
    ],
)
def test_too_deep_without_recursion_error(loader, text, line, col):
    with pytest.raises(SpecError) as info:
        load_yaml_text(text)
    deep = [d for d in info.value.diagnostics if d.code == "too-deep"]
    assert len(deep) == 1 and deep[0].message == f"nesting deeper than {MAX_DEPTH}"
    if line is not None:
        assert (deep[0].line, deep[0].col) == (line, col)


def test_depth_limit_boundary():
    ok = "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    load_yaml_text(ok)
    assert one_error("a: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH)[:3] == ("too-deep", 1, 4 + MAX_DEPTH - 1)


def test_all_kinds_of_problems_in_one_error():
    text = "a: 1\na: 2\nb: !!str x\nc: *z\n1: d\n"
    codes = [code for code, _, _ in errors(text)]
    assert codes == ["duplicate-key", "yaml-tag", "yaml-alias", "non-string-key"]


# --- YAML 1.2 core-schema scalars ---------------------------------------------------------------

SCALARS = [
    ("yes", "yes"), ("no", "no"), ("on", "on"), ("off", "off"), ("y", "y"), ("n", "n"), ("NO", "NO"),
    ("Yes", "Yes"), ("true", True), ("True", True), ("TRUE", True), ("false", False), ("FALSE", False),
    ("null", None), ("Null", None), ("~", None), ("", None),
    ("42", 42), ("-7", -7), ("+3", 3), ("0755", 755), ("0o17", 15), ("0x1F", 31), ("0", 0),
    ("1_000", "1_000"), ("0b101", "0b101"), ("0X1F", "0X1F"),
    ("1e-4", 0.0001), ("1e3", 1000.0), ("1.0e3", 1000.0), ("-2.5E+2", -250.0), (".5", 0.5), ("5.", 5.0),
    ("1.10", 1.1), (".inf", math.inf), ("-.Inf", -math.inf), ("+.INF", math.inf),
    ("2024-01-02", "2024-01-02"), ("1:30", "1:30"), ("12:30:00", "12:30:00"), ("1.2.3", "1.2.3"),
    ('"1"', "1"), ("'true'", "true"), ('"null"', "null"), ("'1e-4'", "1e-4"), ('""', ""),
    ("en", "en"), ("Norway", "Norway"),
]


@pytest.mark.parametrize(("raw", "expected"), SCALARS)
def test_yaml12_scalars(loader, raw, expected):
    value = load_yaml_text(f"v: {raw}\n")[0]["v"]
    assert value == expected and type(value) is type(expected)


def test_nan_and_block_scalars_and_norway_list(loader):
    data = load_yaml_text("a: .nan\nb: .NaN\nc: |\n  42\nd: [GB, NO, SE, no, on]\n")[0]
    assert math.isnan(data["a"]) and math.isnan(data["b"])
    assert data["c"] == "42\n"
    assert data["d"] == ["GB", "NO", "SE", "no", "on"]


# --- positions ---------------------------------------------------------------------------------

SPEC = """\
# header
name: demo
encoders:
  text:
    dim: 64
    layers: [1, 2]
  list:
    - a
    - b: 1
      c: 2
naïve: é
"""


def test_key_and_value_positions(loader):
    data, smap = load_yaml_text(SPEC, "m.yaml")
    assert data["encoders"]["list"] == ["a", {"b": 1, "c": 2}]
    assert smap.file == "m.yaml"
    assert smap.value_pos(()) == (2, 1)
    assert smap.key_pos(("encoders", "text", "dim")) == (5, 5)
    assert smap.value_pos(("encoders", "text", "dim")) == (5, 10)
    assert smap.value_pos(["encoders", "text", "layers", 1]) == (6, 17)
    assert smap.value_pos(("encoders", "list", 0)) == (8, 7)
    assert smap.key_pos(("encoders", "list", 0)) is None
    assert smap.value_pos(("encoders", "list", 1)) == (9, 7)
    assert smap.key_pos(("encoders", "list", 1, "c")) == (10, 7)
    assert smap.value_pos(("naïve",)) == (11, 8)  # columns count characters, not bytes


def test_locate_walks_up_to_the_nearest_known_position():
    _, smap = load_yaml_text(SPEC)
    assert smap.locate(("encoders", "text", "dim")) == (5, 5)  # the key
    assert smap.locate(("encoders", "list", 0)) == (8, 7)  # a list item: its value
    assert smap.locate(("encoders", "text", "missing", "deeper")) == (4, 3)  # parent key
    assert smap.locate(("nowhere",)) == (2, 1)  # the root mapping
    assert SourceMap("x.yaml").locate(("a", "b")) == (1, 1)


def test_with_overlay_records_injected_values():
    _, smap = load_yaml_text(SPEC)
    smap.with_overlay(("encoders", "text", "heads"), 3, 7)
    assert smap.key_pos(("encoders", "text", "heads")) == (3, 7)
    assert smap.value_pos(("encoders", "text", "heads")) == (3, 7)
    assert smap.locate(("encoders", "text", "heads", "x")) == (3, 7)


# --- CLI values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("64", 64), (" 64 ", 64), ("1e-4", 0.0001), ("yes", "yes"), ("true", True), ("null", None),
        ("", None), ("0x10", 16), ("1:30", "1:30"), ("gelu", "gelu"), ('"64"', "64"), ("'a b'", "a b"),
        ("[1, 2]", [1, 2]), ("[yes, 1e-4, [x]]", ["yes", 0.0001, ["x"]]), ("{a: 1}", {"a": 1}),
    ],
)
def test_parse_scalar_value(raw, expected):
    value = parse_scalar_value(raw)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("raw", "code"),
    [("9" * 5000, "too-large"), ("[1, *a]", "yaml-alias"), ("[!!python/name:os.system x]", "yaml-tag"),
     ("[1, 2", "yaml-syntax"), ("{a: 1, a: 2}", "duplicate-key")],
)
def test_parse_scalar_value_errors(raw, code):
    with pytest.raises(SpecError) as info:
        parse_scalar_value(raw)
    assert [d.code for d in info.value.diagnostics] == [code]


def test_spec_layer_never_imports_torch_or_onnx():
    code = (
        "import sys, mmspec.spec.yaml_safe, mmspec.spec.suggest\n"
        "bad = [m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
