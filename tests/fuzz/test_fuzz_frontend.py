"""Front-end fuzzing: mutated spec files either load or raise SpecError/UsageError with located diagnostics.

Mutations of the reference specs and of the corpus base (byte flips, deleted, duplicated and swapped lines,
injected YAML tokens: anchors, aliases, tags, merge keys, tabs, quotes, brackets, huge numbers, control
characters, non-UTF-8 bytes) go through `mmspec.api.load_spec`, the code path of `mmspec validate`. The
invariant: no other exception type, ever, and every diagnostic has a code and a real position inside the
file (line and column from 1; only whole-file problems, WHOLE_FILE, sit at 0:0). The `ci` profile runs 200
mutants; `--hypothesis-profile nightly` runs thousands.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmspec import api
from mmspec.errors import SpecError, UsageError

ROOT = Path(__file__).resolve().parents[2]
SEEDS = [p.read_bytes() for p in sorted((ROOT / "specs").glob("*.yaml"))]
TOKENS = [b"&a ", b"*a", b"<<: ", b"!!python/object/apply:os.system ['true'] ", b"!include x ", b"\t", b'"', b"'",
          b"[", b"]", b"{", b"}", b": ", b"- ", b"---\n", b"...\n", b"? ", b"|\n", b">-\n", b"#", b"%YAML 1.1\n",
          b"9" * 5000, b"1e999", b".nan", b"-.inf", b"0x", b"yes", b"~", b"\x00", b"\xff", b"\xef\xbb\xbf", b"\x1b[31m",
          b"\xe2\x80\xae", "ｘ".encode(), b"\r\n", b"\r", b"  ", b"\n  \n", b"1:30", b"2024-01-02", b"0o17", b"_",
          b"layers", b"type", b"inputs", b"width: 1000000", b"tie_to", b"outputs: [", b"variants: {tiny: {"]
WHOLE_FILE = {"read-error", "too-large", "empty-spec"}
"""The diagnostic codes that may be about the file as a whole, the only ones allowed at line 0, column 0."""
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def mutants(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "duplicate_line", "drop_line", "swap_lines"]))
        at = draw(st.integers(0, len(data)))
        lines = bytes(data).split(b"\n")
        if kind == "flip" and data:
            data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from(TOKENS))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 40))]
        elif kind in ("duplicate_line", "drop_line", "swap_lines") and lines:
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if kind == "duplicate_line":
                lines.insert(i, lines[i])
            elif kind == "drop_line":
                del lines[i]
            else:
                lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\n".join(lines))
    return bytes(data)


@FUZZ
@given(data=mutants(), variant=st.sampled_from([None, "tiny"]))
def test_mutated_specs_load_or_fail_with_located_diagnostics(data, variant):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_bytes(data)
        try:
            api.load_spec(path, variant)
        except SpecError as e:
            assert e.diagnostics
            for d in e.diagnostics:
                check_position(d, str(path), data)
                assert "\x1b" not in d.render() and "\x00" not in d.render()
        except UsageError as e:
            assert "unknown variant" in str(e) or "a variant" in str(e), e


def check_position(d, file: str, data: bytes) -> None:
    """A diagnostic names the file and a line and column inside it; 0:0 (whole file) only for WHOLE_FILE codes.

    YAML breaks lines at fewer characters than `str.splitlines`, so its line count bounds the line from above.
    """
    assert d.code and d.file == file, d
    if (d.line, d.col) == (0, 0):
        assert d.code in WHOLE_FILE, d
        return
    lines = data.decode("utf-8", "replace").splitlines()
    assert 1 <= d.line <= len(lines) + 1, d
    assert 1 <= d.col <= max(map(len, lines), default=0) + 1, d
