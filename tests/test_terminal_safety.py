"""Everything mmspec echoes from its input reaches the terminal escaped: control and format characters (ANSI
escapes, bidi overrides, zero-width spaces) as Python escapes, the non-Latin letters of a word that mixes them
with ASCII ones as \\u escapes (a look-alike key is told apart from the real one), long values cut with their
length; ordinary text in any script, accented Latin and symbols stay as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmspec import cli
from mmspec.errors import printable, shorten


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("unknown key 'he\u0430ds'", "unknown key 'he\\u0430ds'"),  # Cyrillic a
        ("\uff48eads", "\\uff48eads"),  # fullwidth h
        ("x\x1b[31mred", "x\\x1b[31mred"),
        ("a\u200bb\u202ec", "a\\u200bb\\u202ec"),
        ("line\rreturn", "line\\rreturn"),
        ("caf\u00e9 M\u00fcller", "caf\u00e9 M\u00fcller"),
        ("\u6a21\u578b ok \u041f\u0440\u0438", "\u6a21\u578b ok \u041f\u0440\u0438"),
        ("width 4 \u00d7 3, at most \u2264 8", "width 4 \u00d7 3, at most \u2264 8"),
        ("two\nlines", "two\nlines"),
    ],
    ids=["cyrillic", "fullwidth", "ansi", "format", "cr", "accents", "other-scripts", "symbols", "newline"],
)
def test_printable(text, shown):
    assert printable(text) == shown


def test_shorten_keeps_the_length():
    assert shorten("a" * 10) == "a" * 10
    assert shorten("a" * 100, 20) == "a" * 17 + "... (100 characters)"


def test_validate_escapes_keys_values_and_file_names(tmp_path, capsys):
    bad = tmp_path / "bad\x1b[2J.yaml"
    bad.write_text("mmspec: 1\nname: t\nmodalities:\n  x: {type: vector, dim: 4}\nheads:\n"
                   "  h: {type: mlp, input: x, dim: 2, he\u0430ds: 1}\n"
                   f"  g: {{type: mlp, input: \"x\\e[5m{'b' * 300}\", dim: 2}}\n")
    good = tmp_path / "ok\x07.yaml"
    good.write_text("mmspec: 1\nname: ok\nmodalities:\n  x: {type: vector, dim: 4}\nheads:\n"
                    "  h: {type: mlp, input: x, dim: 2}\n")
    assert cli.run(["validate", str(bad), str(good)]) == 2
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\x07" not in out + err
    assert "unknown key 'he\\u0430ds' in heads.h" in err
    assert "bad\\x1b[2J.yaml:6:" in err and "(310 characters)" in err
    assert Path(out.split(":")[0]).name == "ok\\x07.yaml"
