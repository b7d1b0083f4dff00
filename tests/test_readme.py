"""The README's spec example is a valid spec, and its two commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from mmspec.api import load_spec

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
