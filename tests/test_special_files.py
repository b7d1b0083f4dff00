"""Paths that are not regular files -- a FIFO, a character device, a directory, a symlink loop, a name too long --
given to every command that reads a user-named file: each ends in exit 2 with a message naming the path and what
it is, never a hang (an alarm fails the test instead), an unbounded read or a traceback."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from mmspec import cli

ROOT = Path(__file__).resolve().parents[1]
BERT = str(ROOT / "specs" / "bert.yaml")


def _kinds(tmp: Path) -> dict[str, tuple[str, str]]:
    """kind -> (path, the words the message must contain)."""
    os.mkfifo(tmp / "fifo")
    (tmp / "loop").symlink_to(tmp / "loop")
    (tmp / "folder").mkdir()
    return {
        "fifo": (str(tmp / "fifo"), "a FIFO (named pipe)"),
        "device": ("/dev/zero", "a character device"),
        "loop": (str(tmp / "loop"), "symbolic links"),
        "long": (str(tmp / ("x" * 300)), "the file name is too long"),
        "folder": (str(tmp / "folder"), "director"),
    }


COMMANDS = {  # command -> argv around the path P
    "validate": ["validate", "P"],
    "import-hf": ["import", "hf", "P", "-o", "OUT/m.yaml"],
    "summary-weights": ["summary", BERT, "-v", "tiny", "--weights", "P"],
    "generate": ["generate", "P", "--prompt", "1"],
}
SKIP_WORDS = {  # a directory is a valid argument there, read as a checkpoint or build directory
    ("import-hf", "folder"): "config.json",
    ("summary-weights", "folder"): "no model.safetensors",
    ("generate", "folder"): "no *.manifest.json or *.onnx",
}


@pytest.fixture(autouse=True)
def _alarm():
    """A command that blocks (opening a FIFO) fails the test after 20 s instead of hanging the suite."""

    def hung(*_):
        raise TimeoutError("the command blocked")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("kind", ["fifo", "device", "loop", "long", "folder"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_special_paths_end_in_a_named_usage_error(command, kind, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MMSPEC_DEBUG", raising=False)
    path, words = _kinds(tmp_path)[kind]
    words = SKIP_WORDS.get((command, kind), words)
    argv = [a.replace("OUT", str(tmp_path)) if a.startswith("OUT") else path if a == "P" else a
            for a in COMMANDS[command]]
    code = cli.run(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert words in err and "Traceback" not in err and "internal error" not in err, err
    assert Path(path).name[:50] in err or command == "generate", err
    assert not (tmp_path / "m.yaml").exists()
