"""pyproject.toml lists packages explicitly (backends/ is mapped to mmspec.backends), so a package missing from the
list is missing from every wheel although editable installs still find it."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "mmspec").rglob("__init__.py")}
    assert (ROOT / setuptools["package-dir"]["mmspec.backends"] / "__init__.py").is_file()
    on_disk.add("mmspec.backends")
    assert listed == on_disk, f"add to pyproject.toml: {sorted(on_disk - listed)}; remove: {sorted(listed - on_disk)}"
