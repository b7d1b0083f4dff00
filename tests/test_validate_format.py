"""`mmspec validate --format json|github`: the diagnostics of `--format text` (FILE:LINE:COL: error[CODE]: message)
as one JSON document for editors and CI, or as GitHub Actions annotations; exit codes unchanged."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mmspec import cli
from mmspec.errors import Diagnostic

ROOT = Path(__file__).resolve().parents[1]
BAD = """mmspec: 1
name: bad
modalities:
  text: {type: tokens, vocab_size: 10, length: seq, max_length: 8}
encoders:
  enc: {type: transformer, input: text, embed: {type: tokens, positions: 8}, width: 8, hedas: 2}
outputs: [enc.sequence]
"""


def _validate(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        cli.main(["validate", *map(str, args)])
    out, err = capsys.readouterr()
    return info.value.code, out, err


@pytest.fixture
def bad(tmp_path) -> Path:
    path = tmp_path / "bad, spec.yaml"  # a comma, which annotations must escape
    path.write_text(BAD)
    return path


def test_json_lists_every_diagnostic_with_its_suggestion(capsys, bad):
    code, text_out, text_err = _validate(capsys, bad, ROOT / "specs" / "bert.yaml")
    code_json, out, _ = _validate(capsys, bad, ROOT / "specs" / "bert.yaml", "--format", "json")
    assert code == code_json == 2
    doc = json.loads(out)
    assert (doc["valid"], doc["invalid"]) == (1, 1)
    first, second = doc["specs"]
    assert first["file"] == str(bad) and not first["valid"]
    assert first["diagnostics"] == [{"file": str(bad), "line": 6, "column": 88, "code": "unknown-key",
                                     "message": "unknown key 'hedas' in encoders.enc (did you mean 'heads'?)",
                                     "suggestion": "heads"}]
    # the same diagnostic the text format prints
    assert f"{bad}:6:88: error[unknown-key]: unknown key 'hedas' in encoders.enc (did you mean 'heads'?)" in text_err
    assert second == {"file": str(ROOT / "specs" / "bert.yaml"), "valid": True, "diagnostics": [], "stem": "bert",
                      "components": 5, "outputs": 2, "variants": ["large", "tiny"]}
    bert = ROOT / "specs" / "bert.yaml"
    assert text_out.strip() == f"{bert}: ok (bert: 5 components, 2 outputs; variants: large, tiny)"


def test_json_reports_an_unknown_variant_as_a_usage_diagnostic(capsys, bad):
    code, out, _ = _validate(capsys, ROOT / "specs" / "bert.yaml", "--variant", "nope", "--format", "json")
    (spec,) = json.loads(out)["specs"]
    assert code == 2 and [d["code"] for d in spec["diagnostics"]] == ["usage"]
    assert "nope" in spec["diagnostics"][0]["message"] and spec["diagnostics"][0]["line"] == 0


def test_github_annotations_escape_properties_and_message(capsys, bad):
    code, out, _ = _validate(capsys, bad, "--format", "github")
    assert code == 2
    (line,) = out.splitlines()
    escaped = str(bad).replace(",", "%2C").replace(":", "%3A")
    assert line == (f"::error file={escaped},line=6,col=88,title=mmspec unknown-key::unknown key 'hedas' in "
                    "encoders.enc (did you mean 'heads'?)")


@pytest.mark.parametrize(
    ("message", "suggestion"),
    [
        ("unknown key 'hedas' (did you mean 'heads'?)", "heads"),
        ("""no node "it's" (did you mean "it's a"?)""", "it's a"),
        ("a value (did you mean 'x'?) in the middle, then more", None),
        ("no suggestion here", None),
    ],
)
def test_the_suggestion_is_the_did_you_mean_ending(message, suggestion):
    assert Diagnostic("f", 1, 1, "c", message).suggestion == suggestion


def test_multiline_messages_stay_one_annotation():
    line = Diagnostic("a.yaml", 1, 2, "check", "first\nsecond 100%\r").github()
    assert line == "::error file=a.yaml,line=1,col=2,title=mmspec check::first%0Asecond 100%25\\r"  # CR shown, not sent
    assert not re.search(r"[\r\n]", line)
