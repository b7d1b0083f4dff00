"""Publishing is all or nothing: `compile` moves its ONNX file(s), sidecars, report and manifest into place as one
unit (a failure or a signal midway restores what was there), refuses to replace a read-only artifact, and SIGTERM,
SIGHUP and repeated SIGINTs unwind like Ctrl-C (exit 143 / 129 / 130, no `.mmspec-*` left in `-o`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmspec import cli
from mmspec.spec import files
from mmspec.spec.files import FileProblem, publish_files

ROOT = Path(__file__).resolve().parents[1]
BERT = str(ROOT / "specs" / "bert.yaml")


def _tree(root: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(root.iterdir()) if p.is_file()}


@pytest.fixture
def staged(tmp_path):
    """(out dir holding the previous a, b and a stale c; a staging dir with the new a and b)."""
    out, stage = tmp_path / "out", tmp_path / "out" / ".stage"
    stage.mkdir(parents=True)
    for name in "abc":
        (out / name).write_text(f"old {name}")
    for name in "ab":
        (stage / name).write_text(f"new {name}")
    return out, stage


def test_every_file_moves_and_a_none_source_deletes(staged):
    out, stage = staged
    publish_files([(stage / "a", out / "a"), (None, out / "c"), (stage / "b", out / "b")], stage)
    assert _tree(out) == {"a": "new a", "b": "new b"}


def test_a_failure_midway_restores_what_was_there(staged, monkeypatch):
    out, stage = staged
    real = os.replace

    def failing(src, dst):
        if Path(src) == stage / "b":
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(files.os, "replace", failing)
    with pytest.raises(OSError):
        publish_files([(stage / "a", out / "a"), (None, out / "c"), (stage / "b", out / "b")], stage)
    assert _tree(out) == {"a": "old a", "b": "old b", "c": "old c"}


def test_a_read_only_artifact_stops_the_unit_before_anything_moves(staged):
    out, stage = staged
    (out / "b").chmod(0o444)
    with pytest.raises(FileProblem, match="exists and is read-only; remove it or write elsewhere"):
        publish_files([(stage / "a", out / "a"), (stage / "b", out / "b")], stage)
    assert _tree(out) == {"a": "old a", "b": "old b", "c": "old c"}


def _no_build(monkeypatch):
    from mmspec import api

    monkeypatch.setattr(api, "build", lambda *a, **k: pytest.fail("built the model before refusing"))


def test_compile_refuses_a_read_only_report_before_any_work(tmp_path, capsys, monkeypatch):
    (tmp_path / "bert-tiny.report.json").write_text("{}")
    (tmp_path / "bert-tiny.report.json").chmod(0o444)
    _no_build(monkeypatch)
    code = cli.run(["compile", BERT, "-v", "tiny", "-o", str(tmp_path), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "bert-tiny.report.json exists and is read-only" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bert-tiny.report.json"]


def test_cuda_without_a_device_is_a_usage_error_before_any_work(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without a GPU
    _no_build(monkeypatch)
    code = cli.run(["compile", BERT, "-v", "tiny", "-o", str(tmp_path / "o"), "--device", "cuda", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "--device cuda: this machine has no CUDA device" in err, err
    assert not (tmp_path / "o").exists()


def _compile_then(tmp_path: Path, *signals: int, gap: float = 0.05) -> tuple[int, str]:
    """Start `mmspec compile`, wait until it works inside -o (its .mmspec-* directory exists), send `signals`
    `gap` seconds apart."""
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "MMSPEC_DEBUG"}
    proc = subprocess.Popen([sys.executable, "-m", "mmspec.cli", "compile", BERT, "-v", "tiny", "-o", str(out)],
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not any(out.glob(".mmspec-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    for signum in signals:
        proc.send_signal(signum)
        time.sleep(gap)
    _, err = proc.communicate(timeout=120)
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert left == [], left
    return proc.returncode, err


@pytest.mark.parametrize(("signals", "code"), [((signal.SIGTERM,), 143), ((signal.SIGHUP,), 129),
                                                ((signal.SIGINT, signal.SIGINT, signal.SIGTERM), 130)],
                         ids=["term", "hup", "int-repeated"])
def test_signals_unwind_and_leave_nothing(tmp_path, signals, code):
    returncode, err = _compile_then(tmp_path, *signals)
    assert returncode == code and "Traceback" not in err, err


def test_a_burst_of_signals_is_one_interrupt(tmp_path):
    """Signals that arrive together (pending while a C call runs) are one interrupt: no "Signal 15 ignored due to
    race condition" report, no death by a signal during the interpreter's shutdown (a loaded CI machine did both)."""
    burst = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    returncode, err = _compile_then(tmp_path, *burst, gap=0)
    assert returncode in {128 + s for s in burst}, (returncode, err)  # which one Python handles first is open
    assert "Traceback" not in err and "race condition" not in err, err
