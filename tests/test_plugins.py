"""Third-party components through the `mmspec.components` entry-point group: examples/plugin installs with pip
and its component, spec and tests work; a plugin that fails to import is reported by name and the rest load."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MMSPEC = [sys.executable, "-m", "mmspec.cli"]


def _env(site: Path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """examples/plugin installed with pip into a fresh target directory (from a copy, so that the build leaves
    nothing in the source tree)."""
    tmp = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(ROOT / "examples" / "plugin", tmp / "source")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(tmp / "site"), str(source)], check=True, capture_output=True, timeout=300)
    return tmp / "site"


def test_the_installed_plugin_component_is_listed_with_its_origin(site):
    done = subprocess.run([*MMSPEC, "components", "film", "--json"], env=_env(site), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert (row["slot"], row["name"], row["origin"]) == ("fusion", "film", "mmspec-film 0.1.0 (entry point film)")
    builtin = subprocess.run([*MMSPEC, "components", "concat", "--json"], env=_env(site), capture_output=True,
                             text=True, timeout=120)
    assert json.loads(builtin.stdout)[0]["origin"] == "mmspec"


def test_the_plugin_spec_validates_and_its_own_tests_pass(site):
    spec = ROOT / "examples" / "plugin" / "src" / "mmspec_film" / "film.yaml"
    done = subprocess.run([*MMSPEC, "validate", str(spec)], env=_env(site), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
                            str(ROOT / "examples" / "plugin" / "tests")], env=_env(site), capture_output=True,
                           text=True, timeout=600, cwd=site)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert " passed" in tests.stdout and "failed" not in tests.stdout


def test_without_the_plugin_its_spec_is_invalid():
    spec = ROOT / "examples" / "plugin" / "src" / "mmspec_film" / "film.yaml"
    done = subprocess.run([*MMSPEC, "validate", str(spec)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "film" in done.stderr


def _fake_distribution(site: Path, name: str, module: str, code: str) -> None:
    """An installed distribution as importlib.metadata finds it: a .dist-info with an entry point, and its module."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[mmspec.components]\n{name} = {module}\n")
    (site / f"{module}.py").write_text(code)


BROKEN = '''
from typing import Literal
from mmspec.registry import register
from mmspec.spec.base import ComponentConfig

@register("heads")
class HalfDone(ComponentConfig):
    type: Literal["half_done"]

raise RuntimeError("this plugin is broken on purpose")
'''


def test_a_plugin_that_fails_to_import_is_named_and_the_others_still_load(site, tmp_path):
    _fake_distribution(tmp_path, "broken_plugin", "broken_components", BROKEN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(site)])}
    done = subprocess.run([*MMSPEC, "components", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    names = {row["name"] for row in json.loads(done.stdout)}
    assert {"film", "concat", "transformer"} <= names  # the working plugin and the built-ins
    assert "half_done" not in names  # nothing of the broken plugin stays registered
    assert "plugin broken_plugin from broken_plugin 1.0 failed to load" in done.stderr
    assert "RuntimeError: this plugin is broken on purpose" in done.stderr
    assert "Traceback" not in done.stderr
