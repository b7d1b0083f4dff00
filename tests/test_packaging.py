"""The wheel holds every package on disk: setup.py finds mmspec's packages and maps backends/ to mmspec.backends,
so a new component folder ships with no packaging edit. Built for real (no network: --no-build-isolation)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_every_package(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("mmspec-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "mmspec").rglob("*.py")}
    on_disk |= {f"mmspec/backends/{p.name}" for p in (ROOT / "backends").glob("*.py")}
    assert on_disk <= names, f"missing from the wheel: {sorted(on_disk - names)}"
