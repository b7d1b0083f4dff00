"""A compile (which runs ONNX Runtime) and a generate write nothing under the user's home: onnxruntime's
telemetry, which would store a device id in ~/.cache, is off; with a read-only HOME and -q, no colour codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_compile_writes_nothing_under_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MMSPEC_DEBUG", "ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    proc = subprocess.run([sys.executable, "-m", "mmspec.cli", "compile", str(ROOT / "specs" / "bert.yaml"), "-v",
                           "tiny", "-o", str(tmp_path / "out"), "-q"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == []
    assert "\x1b[" not in proc.stdout + proc.stderr
