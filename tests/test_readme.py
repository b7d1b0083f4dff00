"""The README's spec example is a valid spec, and its two commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from mmspec.api import build, load_spec, param_counts

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_spec_example_validates(tmp_path):
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", README, re.S) if b.startswith("mmspec: 1")]
    path = tmp_path / "readme.yaml"
    path.write_text(block)
    for variant in (None, "tiny"):
        loaded = load_spec(path, variant)
        assert [name for name, _, _ in loaded.plan.outputs] == ["mlm", "nsp"]


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(.*?)\n```", README, re.S)
    assert len(commands) == 2, "the README gives exactly two commands: set up + compile, and the tests"
    setup, tests = commands
    assert "mmspec compile specs/vilbert.yaml" in setup and "torch==2.13.0" in setup
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci, f"CI must run the README's test command verbatim: {tests!r}"


def test_spec_table_names_real_specs_and_variants():
    """Every spec in the README's table of reference specs exists, and each named size is one of its variants
    (after a `;`: the size before it is the spec's own; a phrase with spaces describes, it does not name)."""
    rows = re.findall(r"^\| [a-z][^|]*\| (.*`.*) \|$", README.split("## Reference specs", 1)[1], re.M)
    listed = [(name, sizes) for row in rows for name, sizes in re.findall(r"`(\w+)`(?: \(([^)]*)\))?", row)]
    assert len(listed) >= 20, listed
    for name, sizes in listed:
        loaded = load_spec(ROOT / "specs" / f"{name}.yaml")
        assert loaded.spec.name == name
        named = [s.strip() for s in re.split(r"[,…]", sizes.split(";")[-1]) if s.strip() and " " not in s.strip()]
        variants = yaml.safe_load((ROOT / "specs" / f"{name}.yaml").read_text()).get("variants", {})
        assert set(named) <= set(variants), f"README names sizes {sorted(set(named) - set(variants))} of {name}"


def test_vilbert_parameter_claim():
    """The README's ViLBERT parameter count (in millions) is the spec's, counted on the meta device."""
    (claim,) = re.findall(r"ViLBERT reference spec \((\d+) M parameters\)", README)
    total = param_counts(build(load_spec(ROOT / "specs" / "vilbert.yaml"), device="meta"))["total"]
    assert int(claim) == round(total / 1e6)
