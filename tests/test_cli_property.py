"""Every command, driven with random arguments and random kinds of file (Hypothesis): no hang, no traceback, no
`internal error`, no raw control character on the terminal, within a time and memory cap.

The command lines run through the corpus driver (tests/corpus/driver.py): one forked process each, killed at the
timeout, its peak RSS measured. Paths are drawn from files of every kind a hostile user could pass: a valid tiny
spec and checkpoint, garbage, empty, a FIFO, a directory, /dev/zero, a symlink loop, an unreadable file, a sparse
8 GiB file, a missing path and an over-long name. Whatever the arguments, a command ends with one of the
documented exit codes (0, 1 for a failure of the work itself, 2 for bad input) and says why in words.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "tests" / "corpus" / "driver.py"
TIMEOUT_S = 60
MAX_RSS_MIB = 1536  # a compile of the tiny spec with torch and ONNX Runtime loaded
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
SPEC = """mmspec: 1
name: probe
modalities:
  text: {type: tokens, vocab_size: 20, length: seq, max_length: 6, mask: true}
encoders:
  enc: {type: transformer, input: text, embed: {type: tokens, positions: 6}, width: 8, layers: 1, heads: 2, ffn: 16,
        pool: {type: mean}}
heads:
  label: {type: classifier, input: enc.pooled, num_classes: 3}
objectives:
  loss: {type: cross_entropy, input: label}
variants:
  tiny: {heads.label.num_classes: 2}
"""
KINDS = ["spec", "checkpoint", "garbage", "empty", "fifo", "directory", "dev_zero", "loop", "unreadable", "huge",
         "missing", "long_name"]


def make_kinds(root: Path) -> dict[str, str]:
    """One path of every kind, under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    paths = {kind: root / kind for kind in KINDS}
    paths["spec"] = root / "spec.yaml"
    paths["spec"].write_text(SPEC)
    paths["checkpoint"] = root / "ckpt.safetensors"
    save_file({"components.label.out.weight": np.zeros((3, 8), np.float32)}, str(paths["checkpoint"]))
    paths["garbage"].write_bytes(bytes(range(256)) * 64)
    paths["empty"].write_bytes(b"")
    os.mkfifo(paths["fifo"])
    paths["directory"].mkdir()
    paths["dev_zero"] = Path("/dev/zero")
    os.symlink(root / "loop_b", paths["loop"])
    os.symlink(paths["loop"], root / "loop_b")
    paths["unreadable"].write_text(SPEC)
    paths["unreadable"].chmod(0)
    with paths["huge"].open("wb") as f:
        f.truncate(8 << 30)  # sparse: no disk used
    paths["long_name"] = root / ("n" * 300)
    return {k: str(v) for k, v in paths.items()}


TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
NUMBER = st.one_of(st.integers(-10**12, 10**12).map(str), st.sampled_from(["nan", "inf", "-inf", "1e400", "0",
                                                                            "-1", "2e9", "0x10", "١٢"]), TEXT)


def _commands() -> dict[str, list]:
    """Every command of the CLI (`import hf` as two words) -> its parameters, read from the application itself,
    so a new command or option is exercised without an edit here."""
    import typer

    from mmspec.cli import app

    group = typer.main.get_command(app)
    found = {}
    for name in group.list_commands(None):
        command = group.get_command(None, name)
        subs = {f"{name} {s}": c for s, c in command.commands.items()} if hasattr(command, "commands") else {
            name: command}
        found.update({full: list(c.params) for full, c in subs.items()})
    return found


COMMANDS = _commands()


PATHS = {"SPEC", "TARGET", "DIR", "FILE", "PATH", "REPO", "F"}  # metavars of path arguments and options
NUMBERS = {"N", "B", "K", "S", "X", "T", "P", "ID", "BYTES"}
WORDS = ["cpu", "cuda", "json", "github", "text", "greedy", "beam", "sample", "ddim", "ddpm", "linear", "auto",
         "gpu", "tiny", "label=3", "text=1,2,3", "0 1 2"]  # values some options expect


def _value(param, path, draw):
    """A value for one parameter, of its own kind (by its metavar) most of the time, anything else sometimes."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.one_of(path, NUMBER, TEXT))
    if param.metavar in PATHS or param.param_type_name == "argument":
        return draw(path)
    if param.metavar in NUMBERS:
        return draw(NUMBER)
    return draw(st.one_of(st.sampled_from(WORDS), TEXT))


@st.composite
def command_line(draw, paths: dict[str, str]) -> list[str]:
    path = st.one_of(st.sampled_from(KINDS).map(paths.__getitem__),
                     st.tuples(st.sampled_from(KINDS).map(paths.__getitem__),
                               st.sampled_from(["/out", ".svg", ".html", ".mmd", ".onnx"])).map("".join))
    name = draw(st.sampled_from(sorted(COMMANDS)))
    params = COMMANDS[name]
    argv = name.split()
    for p in params:
        if p.param_type_name == "argument" and (p.required or draw(st.booleans())):
            argv += [_value(p, path, draw) for _ in range(1 if p.nargs == 1 else draw(st.integers(1, 3)))]
    options = [p for p in params if p.param_type_name == "option"]
    for p in draw(st.lists(st.sampled_from(options), max_size=5)) if options else []:
        flag = draw(st.sampled_from([*p.opts, *p.secondary_opts]))
        argv += [flag] if p.is_flag else [flag, _value(p, path, draw)]
    if draw(st.integers(0, 9)) == 0:
        argv += [draw(st.sampled_from(["--bogus", "--", "-x"])), draw(TEXT)]
    return argv


def _ok(result: dict) -> list[str]:
    problems = []
    if result["timed_out"]:
        problems.append(f"still running after {TIMEOUT_S} s")
    if result["rc"] not in (0, 1, 2):
        problems.append(f"exit code {result['rc']}")
    for stream in ("stderr", "stdout"):
        if "Traceback" in result[stream]:
            problems.append(f"a traceback on {stream}")
        if "internal error" in result[stream]:
            problems.append("an internal error")
    if CONTROL.search(result["stderr"]):
        problems.append("a raw control character on stderr")
    if result["rc"] != 0 and not result["stderr"].strip():
        problems.append("a failure that says nothing on stderr")
    if result["maxrss_mib"] > MAX_RSS_MIB:
        problems.append(f"peak RSS {result['maxrss_mib']:.0f} MiB")
    return problems


@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_command_lines_end_cleanly(data, tmp_path_factory):
    work = tmp_path_factory.mktemp("cli-property")
    paths = make_kinds(work / "files")
    lines = data.draw(st.lists(command_line(paths), min_size=25, max_size=25), label="command lines")
    cwd = work / "cwd"
    cwd.mkdir()
    cases = [{"id": str(i), "argv": argv, "cwd": str(cwd)} for i, argv in enumerate(lines)]
    (work / "cases.json").write_text(json.dumps(cases))
    proc = subprocess.run([sys.executable, str(DRIVER), str(work / "cases.json"), str(work / "results.json"),
                           "--timeout", str(TIMEOUT_S), "--preload-torch"], capture_output=True, text=True,
                          timeout=TIMEOUT_S * len(cases) + 120, cwd=work)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((work / "results.json").read_text())
    failures = [f"mmspec {' '.join(map(repr, case['argv']))}: {p}\n  stderr: {results[case['id']]['stderr'][-500:]!r}"
                for case in cases for p in _ok(results[case["id"]])]
    assert not failures, "\n".join(failures)
