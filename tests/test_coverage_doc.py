"""docs/coverage.md is current, lists every survey ID once with the specs that claim it, and the reference counts
registered in tests/references.py equal the specs' own."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import references
import torch
import yaml
from regen_coverage import (
    AUTOREGRESSIVE,
    COMMAND,
    DIFFUSION,
    DOC,
    ROOT,
    RefCount,
    Size,
    SpecFacts,
    coverage_text,
    render,
    rows,
    spec_facts,
    spec_paths,
)

from mmspec.api import build, load_spec, param_counts
from mmspec.spec.survey import survey


@pytest.fixture(scope="module")
def text() -> str:
    return coverage_text()


def _table(doc: str) -> dict[str, str]:
    """Survey ID -> its table line, failing on a line whose ID repeats."""
    found: dict[str, str] = {}
    for line in doc.splitlines():
        m = re.match(r"\| ([A-Z0-9]+-\d+) \|", line)
        if m:
            assert m.group(1) not in found, f"{m.group(1)} has two rows"
            found[m.group(1)] = line
    return found


def test_doc_is_current(text):
    assert DOC.exists(), f"docs/coverage.md is missing; run `{COMMAND}`"
    assert DOC.read_text() == text, f"docs/coverage.md is stale; run `{COMMAND}` and commit it"


def test_every_survey_id_has_exactly_one_row(text):
    assert list(_table(text)) == list(survey())


def test_every_spec_appears_with_its_ids(text):
    table = _table(text)
    claimed: dict[str, set[str]] = {i: set() for i in survey()}
    for path in spec_paths():
        raw = yaml.safe_load(path.read_text())
        rel = path.relative_to(ROOT).as_posix()
        for survey_id in (raw.get("reference") or {}).get("survey") or []:
            claimed[survey_id].add(rel)
        assert f"\n### {raw['name']}\n" in text
    for survey_id, line in table.items():
        assert set(re.findall(r"\]\(\.\./(specs/[^)]+)\)", line)) == claimed[survey_id], survey_id


def _facts(**kw) -> SpecFacts:
    """A spec that covers NLP-09 unless `kw` says otherwise."""
    base = dict(path="specs/x.yaml", name="x", survey=("NLP-09",), has_reference=True, paper="P", implementation=None,
                notes=None, declared_gaps=(), variants=("tiny",), graphs=(), objectives=(("loss", "cross_entropy"),),
                denoiser=False, golden=True, sizes=(Size(None, 10, RefCount("10", "ref", True)),))
    return SpecFacts(**{**base, **kw})


def test_declared_gaps_make_an_id_partial():
    status, gaps = _status("NLP-09", _facts(declared_gaps=("the text tower",)))
    assert status == "partial" and gaps == ("not expressed: the text tower",)


def _status(survey_id: str, facts: SpecFacts) -> tuple[str, tuple[str, ...]]:
    row = next(r for r in rows(survey(), [facts]) if r.id == survey_id)
    return row.status, row.gaps


def test_an_id_outside_the_survey_is_rejected():
    with pytest.raises(ValueError, match="'XX-99', which is not a survey ID"):
        rows(survey(), [_facts(survey=("NLP-09", "XX-99"))])
    with pytest.raises(ValueError, match="twice"):
        rows(survey(), [_facts(survey=("NLP-09", "NLP-09"))])


def test_status_follows_the_statically_known_points():
    assert _status("NLP-09", _facts()) == ("covered", ())
    assert _status("NLP-09", _facts(variants=())) == ("partial", ("no tiny variant",))
    assert _status("NLP-09", _facts(golden=False))[1][0].startswith("no golden files")
    assert _status("NLP-09", _facts(sizes=(Size(None, 10, None),)))[1] == ("no reference count (tests/references.py)",)
    differs = (Size(None, 10, RefCount("10", "ref", True)), Size("large", 30, RefCount("31", "ref", False)))
    assert _status("NLP-09", _facts(sizes=differs))[1] == ("large: count differs from the reference",)
    gpt = _facts(survey=("NLP-11",))
    assert _status("NLP-11", gpt) == ("partial", ("no KV-cache step graph (exports.G.cache)",))
    assert _status("NLP-11", _facts(survey=("NLP-11",), graphs=(("step", ("decoder",)),))) == ("covered", ())
    assert _status("NLP-11", _facts(survey=("NLP-11",), graphs=(("encoder", ()),)))[0] == "partial"
    assert _status("T2I-11", _facts(survey=("T2I-11",)))[1] == ("no exported denoiser trained by diffusion_eps_mse",)
    assert _status("T2I-11", _facts(survey=("T2I-11",), denoiser=True)) == ("covered", ())
    assert _status("CV-01", _facts()) == ("missing", ())


def test_generation_is_checked_per_model_not_per_spec():
    step = _facts(survey=("MP-02",), graphs=(("step", ("decoder",)),))
    classifier = _facts(name="y", path="specs/y.yaml", survey=("MP-02",))
    row = next(r for r in rows(survey(), [step, classifier]) if r.id == "MP-02")
    assert (row.status, row.gaps) == ("covered", ())
    row = next(r for r in rows(survey(), [classifier, _facts(survey=("MP-02",))]) if r.id == "MP-02")
    assert (row.status, row.gaps) == ("partial", ("no KV-cache step graph (exports.G.cache)",))


def test_rendered_rows_and_summary():
    entries = survey()
    models = sum(e.same_as is None for e in entries.values())
    doc = render(entries, [_facts(survey=("MP-03", "NLP-11")), _facts(name="y", path="specs/y.yaml", survey=())])
    assert f"**1 of {models} models covered, 1 partial, {models - 2} missing** (the {len(entries)} survey IDs" in doc
    table = _table(doc)
    assert table["MP-03"].endswith("| covered |") and "[x](../specs/x.yaml)" in table["MP-03"]
    assert table["ISL-11"].endswith("| as MP-03: covered |")
    assert "partial: no KV-cache step graph" in table["NLP-11"]
    assert "not covered: no spec yet" in table["NLP-06"] and "a KV-cache step graph" in table["NLP-06"]
    assert "an exported denoiser" in table["T2I-11"]
    assert "\n### y\n" in doc and "- lists no survey ID" in doc
    assert not any("specs/y.yaml" in line for line in table.values())


def test_generating_ids_are_survey_ids():
    assert AUTOREGRESSIVE <= set(survey()) and DIFFUSION <= set(survey())
    assert not AUTOREGRESSIVE & DIFFUSION


def test_a_spec_without_reference_is_listed(tmp_path):
    path = tmp_path / "toy.yaml"
    shutil.copy(ROOT / "tests/generation/specs/tiny_diffusion.yaml", path)
    facts = spec_facts(path)
    assert (facts.survey, facts.has_reference, facts.golden, facts.denoiser) == ((), False, False, False)
    assert facts.sizes[0].ours == param_counts(build(load_spec(path), device="meta"))["total"]
    assert facts.sizes[0].reference is None
    assert "- no `reference:` block" in render(survey(), [facts])


def test_a_spec_that_does_not_load_stops_the_generator(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("mmspec: 1\nname: broken\nmodalities: {}\n")
    with pytest.raises(RuntimeError, match=rf"broken\.yaml: the spec does not load.*{re.escape(COMMAND)}"):
        spec_facts(path)


def test_paper_sizes_round_at_the_printed_precision():
    assert references.PaperSize("110M", "T").matches(109_514_298)
    assert not references.PaperSize("110M", "T").matches(110_600_000)
    assert references.PaperSize("3.5B", "T").matches(3_450_000_000)
    assert not references.PaperSize("3.5B", "T").matches(3_449_999_999)
    assert references.PaperSize("12,345", "T").matches(12_345)
    assert not references.PaperSize("12,345", "T").matches(12_346)
    with pytest.raises(ValueError, match="cannot read the size"):
        references.parse_figure("about 110M")


def _spec_by_name() -> dict[str, Path]:
    return {yaml.safe_load(p.read_text())["name"]: p for p in spec_paths()}


def test_registered_references_equal_the_specs():
    """Every entry of tests/references.py names a spec (and variant) of specs/ and equals its meta-device count."""
    specs = _spec_by_name()
    assert references.REFERENCES
    for k in [*references.REFERENCES, *references.PAPER_SIZES]:
        name, _, variant = k.partition(":")
        assert name in specs, f"tests/references.py: {k!r} names no spec of specs/"
        loaded = load_spec(specs[name], variant or None, budget=None)
        ours = param_counts(build(loaded, device="meta"))["total"]
        if k in references.REFERENCES:
            assert ours == references.reference_count(k)[0], k
        else:
            size = references.PAPER_SIZES[k]
            assert size.matches(ours), f"{k}: {ours:,} does not round to the paper's {size.figure}"
            assert size.source in (loaded.spec.reference.notes or ""), f"{k}: reference.notes must cite {size.source}"


def test_reference_counts_are_built_on_the_meta_device():
    count, source = references.reference_count("bert")
    with torch.device("meta"):
        model = references.REFERENCES["bert"]()
    assert all(p.is_meta for p in model.parameters())
    assert (count, source) == (sum(p.numel() for p in model.parameters()), "transformers.BertForPreTraining")
