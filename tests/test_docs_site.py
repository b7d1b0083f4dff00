"""The documentation site builds with MkDocs in strict mode (any warning fails: a broken link or anchor, a page
missing from the navigation), and its reference pages hold every component and every command of the code."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mmspec.registry import list_components

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "WARNING" not in done.stderr
    return out


def _text(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8")))


def test_every_page_of_the_navigation_is_built(site):
    for page in ["index", "tutorial", "spec-language", "contracts", "training", "generation", "serving",
                 "architecture", "capture", "coverage", "reference/components", "reference/cli"]:
        assert (site / f"{page}.html").is_file(), page
    assert len(list((site / "specs").glob("*.yaml"))) == len(list((ROOT / "specs").glob("*.yaml")))


def test_the_component_reference_lists_every_component_field_and_example(site):
    page = (site / "reference" / "components.html").read_text(encoding="utf-8")
    for c in list_components():
        assert f'id="{c.name}"' in page or f"<code>{c.name}</code>" in page, c.name
        section = page.split(f"<code>{c.name}</code></h3>", 1)[1].split("<h3", 1)[0]
        for field in c.config.model_fields:
            assert f"<code>{field}</code>" in section, f"{c.name}.{field}"
        for example in c.examples:
            assert f"name: {c.name}_{example.name}" in html.unescape(section), f"{c.name}: example {example.name}"


def test_the_command_reference_lists_every_command_and_option(site):
    import typer

    from mmspec.cli import app

    text = _text(site / "reference" / "cli.html")
    group = typer.main.get_command(app)
    for name in group.list_commands(None):
        command = group.get_command(None, name)
        for sub in getattr(command, "commands", {name: command}):
            assert f"mmspec {name}" + (f" {sub}" if sub != name else "") in text, name
        for p in getattr(command, "params", []):
            for opt in p.opts if p.param_type_name == "option" else []:
                assert opt in text, f"{name} {opt}"
