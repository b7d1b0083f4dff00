"""Survey IDs: the package data lists exactly the survey's architectures, and `reference.survey` accepts only
those IDs, with a located did-you-mean for anything else. Torch-free and fast."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from mmspec.api import load_spec
from mmspec.errors import SpecError
from mmspec.spec.survey import check_survey_ids, survey

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
DATA = ROOT / "mmspec" / "spec" / "survey.json"

# The survey's architecture table, counted per ID prefix: 95 IDs, of which ISL-11 repeats MP-03 (UniT).
PER_PREFIX = {"NLP": 11, "CV": 5, "BM": 1, "I2T": 2, "T2I": 16, "ISL": 15, "TSV": 3, "BOTH": 3, "FM": 6, "SU": 16,
              "MP": 9, "GA": 8}
SECTIONS = {"NLP": "2.1", "CV": "2.2", "BM": "2.3", "I2T": "3.1", "T2I": "3.2", "ISL": "3.3", "TSV": "3.4",
            "BOTH": "3.5", "FM": "4.1", "SU": "4.2", "MP": "4.3", "GA": "4.4"}

SPEC = """\
mmspec: 1
name: small
reference:
  survey: [NLP-09, {ids}]
  paper: x
modalities:
  x: {{type: vector, dim: 8}}
heads:
  a: {{type: classifier, input: x, num_classes: 3}}
"""


def test_data_has_exactly_the_survey_ids():
    raw = json.loads(DATA.read_text(encoding="utf-8"))
    assert list(raw) == list(survey())
    assert len(raw) == 95
    distinct = {i for i, e in raw.items() if "same_as" not in e}
    assert len(distinct) == 94
    assert {i: e["same_as"] for i, e in raw.items() if "same_as" in e} == {"ISL-11": "MP-03"}
    assert raw["ISL-11"]["paper"] == raw["MP-03"]["paper"]
    assert Counter(i.split("-")[0] for i in raw) == PER_PREFIX
    for prefix, n in PER_PREFIX.items():  # numbered 01..n without gaps, in the order of the book
        assert [i for i in raw if i.startswith(prefix + "-")] == [f"{prefix}-{k:02d}" for k in range(1, n + 1)]


def test_every_entry_names_its_section_and_paper():
    for survey_id, entry in survey().items():
        assert re.fullmatch(r"[A-Z0-9]+-\d+", survey_id)
        assert entry.name.strip(), survey_id
        assert entry.section.startswith(f"§{SECTIONS[survey_id.split('-')[0]]} "), survey_id
        assert entry.paper is None or re.search(r"\b(1[89]|20)\d\d, \S", entry.paper), (survey_id, entry.paper)
    assert [i for i, e in survey().items() if e.paper is None] == ["NLP-01"]  # an input encoding, not a paper


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_reference_spec_validates_with_known_ids(path):
    loaded = load_spec(path)
    reference = loaded.spec.reference
    assert reference.survey or "not one of the survey's architectures" in (reference.notes or ""), \
        f"{path.name}: list its survey IDs, or say in reference.notes why it has none"
    assert check_survey_ids(loaded.spec.reference.survey) == []


def test_check_survey_ids():
    assert check_survey_ids(["CV-01", "ISL-11"]) == []
    ((index, message),) = check_survey_ids(["CV-01", "CV-5"])
    assert index == 1
    assert "unknown survey ID 'CV-5' (did you mean 'CV-05'?)" in message
    assert "CV IDs run from CV-01 to CV-05" in message


def test_unknown_id_is_located_at_its_item(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(ids="NLP-99, ABC-1"))
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    first, second = info.value.diagnostics
    line = SPEC.splitlines()[3]
    assert (first.line, first.col, first.code) == (4, line.index("{ids}") + 1, "unknown-survey-id")
    assert first.message.startswith("reference.survey[1]: unknown survey ID 'NLP-99' (did you mean 'NLP-09'?)")
    assert (second.line, second.col, second.code) == (4, line.index("{ids}") + 1 + len("NLP-99, "), "unknown-survey-id")
    assert "did you mean" not in second.message
    assert "IDs start with NLP, CV, " in second.message


def test_malformed_id_is_still_a_pattern_error(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(ids="cv-1"))
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    (diag,) = info.value.diagnostics
    assert diag.code == "value" and "must match the pattern" in diag.message


def test_validate_stays_torch_free(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.format(ids="CV-5"))
    code = (
        "import sys\n"
        "from mmspec.cli import run\n"
        f"rc = run(['validate', {str(bad)!r}, *{[str(p) for p in SPECS]!r}])\n"
        "heavy = sorted(m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules)\n"
        "print('rc:', rc, 'heavy:', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.stdout.splitlines()[-1] == "rc: 2 heavy: []", proc.stderr
    assert "error[unknown-survey-id]" in proc.stderr
