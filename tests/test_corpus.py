"""The malformed-input corpus (tests/corpus): every file makes the real CLI exit 2
with a located diagnostic of the expected code and line, no traceback, in at most 2 s and 256 MiB, and no
payload ever runs.

Weights cases (items 33-39, `compile SPEC --weights FILE`) need torch to open a checkpoint, which the other
cases must never import: they run in a second driver that has torch loaded before it forks (so their times
leave out that import, about 2 s cold) and have their own memory limit in expected.yaml (torch alone takes
about 220 MiB).

All cases run through one warm driver process (tests/corpus/driver.py) that forks a child per command
line and measures it with wait4; a handful also run as cold `python -m mmspec.cli` processes, to check
that the warm numbers are not hiding a slow or heavy start (e.g. an import of torch).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"
EXPECTED = yaml.safe_load((CORPUS / "expected.yaml").read_text())
MAX_SECONDS = 2.0
MAX_RSS_MIB = 256
CANARY_NAME = "mmspec-canary"  # relative payloads: `touch mmspec-canary` in the working directory
CANARY_ABS = Path("/tmp/mmspec-corpus-canary")
DIAGNOSTIC = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): error\[(?P<code>[a-z0-9-]+)\]: (?P<msg>.*)$")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
REQUIRED_ITEMS = set(range(1, 30)) | set(range(31, 42))  # item 30 (CLI flags, Ctrl-C) is tests/test_cli.py's


def _items(entry: dict) -> set[int]:
    item = entry["item"]
    return set(item) if isinstance(item, list) else {item}


SIBLINGS = {
    "file": ["validate", "summary", "fit", "graph", "export-triton"],  # special files, every command reading a spec
    "cross": ["validate", "summary", "graph", "export-triton"],  # a spec's semantics, every command that plans it
}
"""Directories whose cases, unless they name their own `cmd`, run through every listed command: each must
refuse the input with the same located diagnostic, before any work and without writing anything. A case whose
problem sits in a variant stays with `validate` (the only command that checks variants it is not asked for).
`generate` takes build directories and ONNX files too; the property test (test_cli_property.py) drives it."""
OUTPUTS = {"compile": ["-o", "{out}", "-q"], "fit": ["--steps", "1", "-o", "{out}", "-q"],
           "graph": ["-o", "{out}/picture.svg", "-q"], "export-triton": ["-o", "{out}", "-q"],
           "generate": ["-o", "{out}", "-q"], "import hf": ["-o", "{out}/spec.yaml"]}
"""What each writing command is given, so a case can check that nothing was written."""


def _commands(entry: dict, name: str = "") -> list[str]:
    cmd = entry.get("cmd") or ("validate" if _in_variants(name, entry) else SIBLINGS.get(name.split("/")[0],
                                                                                         "validate"))
    return cmd if isinstance(cmd, list) else [cmd]


def _in_variants(name: str, entry: dict) -> bool:
    """Whether the case's diagnostic points into the spec's `variants:` section."""
    path = CORPUS / name
    if not name or not path.is_file() or path.suffix != ".yaml" or "args" in entry:
        return False
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    start = next((i + 1 for i, line in enumerate(lines) if line.startswith("variants:")), None)
    return start is not None and entry["line"] >= start


def test_corpus_covers_the_checklist():
    assert len(EXPECTED) >= 150
    runs = [command for name, entry in EXPECTED.items() for command in _commands(entry, name)]
    assert len(runs) >= 400, f"{len(runs)} command runs in the corpus"
    assert {"validate", "compile", "summary", "fit", "graph", "export-triton", "import hf"} <= set(runs)
    files = {str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*") if p.parent == CORPUS / p.parent.name}
    files = {f for f in files if "/" in f}
    listed = {name for name, entry in EXPECTED.items() if not entry.get("missing")}
    listed |= {entry["spec"] for entry in EXPECTED.values() if "spec" in entry}
    assert files == listed, f"files without an entry: {sorted(files - listed)}; entries without a file: " \
                            f"{sorted(listed - files)}"
    covered = set().union(*(_items(e) for e in EXPECTED.values()))
    assert REQUIRED_ITEMS <= covered, f"checklist items without a case: {sorted(REQUIRED_ITEMS - covered)}"
    for name, entry in EXPECTED.items():
        assert isinstance(entry["code"], str) and isinstance(entry["line"], int), name


def _prepare(tmp_path: Path) -> tuple[list[dict], dict[str, dict]]:
    """Command lines for every case; gzipped cases are expanded into tmp_path first."""
    work = tmp_path / "cwd"
    work.mkdir()
    expanded = tmp_path / "expanded"
    cases, meta = [], {}
    for name, entry in sorted(EXPECTED.items()):
        path = CORPUS / name
        if entry.get("gzip"):
            target = expanded / name.removesuffix(".gz")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(gzip.decompress(path.read_bytes()))
            path = target
        elif entry.get("missing"):
            assert not path.exists(), name
        for command in _commands(entry, name):
            case_id = f"{command} {name}"
            target = [str(CORPUS / entry["spec"]), "--weights", str(path)] if "spec" in entry else [str(path)]
            argv = [*command.split(), *target, *map(str, entry.get("args", []))]
            out_dir = tmp_path / "out" / name.replace("/", "_")
            argv += [a.format(out=out_dir) for a in OUTPUTS.get(command, [])]
            cases.append({"id": case_id, "argv": argv, "cwd": str(work),
                          "retry_over": entry.get("max_seconds", MAX_SECONDS)})
            meta[case_id] = {"entry": entry, "path": str(path), "out": out_dir, "name": name}
    return cases, meta


def _check(result: dict, entry: dict, path: str) -> list[str]:
    """Problems with one case's result, as sentences; [] when it behaved."""
    problems = []
    stderr = result["stderr"]
    if result["timed_out"]:
        return [f"still running after the driver's timeout ({result['wall_s']:.1f} s)"]
    if result["rc"] != 2:
        problems.append(f"exit code {result['rc']}, expected 2")
    if "Traceback" in stderr:
        problems.append("a Python traceback on stderr")
    if "internal error" in stderr:
        problems.append("an `internal error` (a bug) instead of a diagnostic")
    if result["stdout"]:
        problems.append(f"unexpected stdout {result['stdout'][:200]!r}")
    if CONTROL.search(stderr):
        problems.append("a raw control character on stderr")
    diags = [m.groupdict() for m in map(DIAGNOSTIC.match, stderr.splitlines()) if m]
    where = entry.get("where", path)
    want = [d for d in diags if d["file"] == where and d["code"] == entry["code"] and int(d["line"]) == entry["line"]
            and ("col" not in entry or int(d["col"]) == entry["col"])]
    if not want:
        shown = [f"{d['file']}:{d['line']}:{d['col']}: {d['code']}" for d in diags]
        problems.append(f"no diagnostic {where}:{entry['line']}:{entry.get('col', '*')}: error[{entry['code']}]; "
                        f"got {shown or stderr[:300]!r}")
    spec = str(CORPUS / entry["spec"]) if "spec" in entry else path
    stray = [d for d in diags if d["file"] not in (path, where, spec) and not d["file"].startswith("--set #")]
    if stray:
        problems.append(f"diagnostics located elsewhere: {stray[:3]}")
    if "count" in entry and len(diags) != entry["count"]:
        problems.append(f"{len(diags)} diagnostics, expected exactly {entry['count']}")
    problems += [f"stderr lacks {s!r}" for s in entry.get("contains", []) if s not in stderr]
    problems += [f"stderr contains {s!r}" for s in entry.get("absent", []) if s in stderr]
    seconds, mib = entry.get("max_seconds", MAX_SECONDS), entry.get("max_rss_mib", MAX_RSS_MIB)
    if result["wall_s"] > seconds:
        problems.append(f"took {result['wall_s']:.2f} s (limit {seconds} s, twice)")
    if result["maxrss_mib"] > mib:
        problems.append(f"peak RSS {result['maxrss_mib']:.0f} MiB (limit {mib} MiB)")
    if any(result["imported"].values()) and not entry.get("torch"):
        problems.append(f"imported {result['imported']} while refusing a bad spec")
    return problems


def test_every_corpus_case_exits_2_with_a_located_diagnostic(tmp_path):
    CANARY_ABS.unlink(missing_ok=True)
    cases, meta = _prepare(tmp_path)
    results = {}
    for group, preload in (("spec", []), ("torch", ["--preload-torch"])):  # torch-free cases never see torch
        chosen = [c for c in cases if bool(meta[c["id"]]["entry"].get("torch")) == bool(preload)]
        (tmp_path / f"{group}.json").write_text(json.dumps(chosen))
        driver = [sys.executable, str(CORPUS / "driver.py"), str(tmp_path / f"{group}.json"),
                  str(tmp_path / f"{group}-results.json"), "--timeout", "30", *preload]
        proc = subprocess.run(driver, capture_output=True, text=True, timeout=1800, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        results.update(json.loads((tmp_path / f"{group}-results.json").read_text()))
    assert set(results) == {c["id"] for c in cases}

    failures = []
    for case_id, result in results.items():
        m = meta[case_id]
        problems = _check(result, m["entry"], m["path"])
        if m["out"].exists() and any(m["out"].iterdir()):
            problems.append(f"left files in {m['out']}: {sorted(p.name for p in m['out'].iterdir())}")
        failures += [f"{case_id}: {p}" for p in problems]
    slowest = max(results.values(), key=lambda r: r["wall_s"])
    heaviest = max(results.values(), key=lambda r: r["maxrss_mib"])
    summary = (f"{len(results)} runs; slowest {slowest['wall_s']:.2f} s, heaviest {heaviest['maxrss_mib']:.0f} MiB")
    assert not failures, summary + "\n" + "\n".join(failures)

    assert not (tmp_path / "cwd" / CANARY_NAME).exists() and not CANARY_ABS.exists(), "a payload ran"
    assert list((tmp_path / "cwd").iterdir()) == [], "a case wrote into its working directory"


def _many_tensors(path: Path, count: int) -> None:
    """A safetensors file that declares `count` empty float32 tensors (a header of about 55 bytes each)."""
    header = ("{" + ",".join(f'"{i:x}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}' for i in range(count))
              + "}").encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(len(header).to_bytes(8, "little") + header)


def test_checkpoints_with_very_many_tensors_stay_within_the_limits(tmp_path):
    """10^6 tensors (a 54 MB header: refused after counting them in the raw header, before the safetensors
    library would spend about 1 KiB per tensor parsing it) and 10^5 (read, every one reported as unexpected:
    50 diagnostics and a count) end in located diagnostics within the weights cases' time and memory limits."""
    million, hundred_k = tmp_path / "million.safetensors", tmp_path / "hundred_k.safetensors"
    _many_tensors(million, 10**6)
    _many_tensors(hundred_k, 10**5)
    entries = {
        str(million): {"code": "weights-read", "line": 0, "max_rss_mib": 400, "max_seconds": 3, "torch": True,
                       "contains": ["declares 1,000,000 tensors"], "spec": "weights/small.yaml"},
        str(hundred_k): {"code": "unexpected-tensor", "line": 0, "max_rss_mib": 400, "max_seconds": 5, "torch": True,
                         "contains": ["...and 99952 more", "2 missing, 100000 unexpected"],
                         "spec": "weights/small.yaml"},
    }
    (tmp_path / "cwd").mkdir()
    cases = [{"id": name, "argv": ["compile", str(CORPUS / "weights" / "small.yaml"), "--weights", name, "-o",
                                   str(tmp_path / "out"), "-q"], "cwd": str(tmp_path / "cwd"), "retry_over": 3}
             for name in entries]
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    proc = subprocess.run([sys.executable, str(CORPUS / "driver.py"), str(tmp_path / "cases.json"),
                           str(tmp_path / "results.json"), "--timeout", "60", "--preload-torch"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    failures = [f"{Path(name).name}: {problem}" for name, entry in entries.items()
                for problem in _check(results[name], entry, name)]
    assert not failures, "\n".join(failures)
    assert not (tmp_path / "out").exists()


COLD = ["yaml/tag_os_system.yaml", "file/utf16_le_bom.yaml", "schema/unknown_key_widht.yaml",
        "cross/cycle_two_nodes.yaml", "budget/width_1e6.yaml", "weights/pickle_reduce_payload.pt"]
# The cold process reports its own peak RSS (VmHWM of its address space after exec: unlike ru_maxrss, it
# does not inherit the peak of the pytest worker that spawned it).
_WRAPPER = """
import atexit, os, sys
def _peak():
    with open('/proc/self/status') as f:
        peak = next(line.split()[1] for line in f if line.startswith('VmHWM:'))
    with open(os.environ['MMSPEC_TEST_PEAK'], 'w') as f:
        f.write(peak)
atexit.register(_peak)
from mmspec.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize("name", COLD)
def test_cold_process_matches_the_warm_driver(name, tmp_path):
    """The same checks in a fresh interpreter: the warm driver (whose children do not count the library pages
    they share with it) must not hide a slow or heavy start; here every page the process maps counts."""
    entry = EXPECTED[name]
    case = tmp_path / Path(name).name
    shutil.copy(CORPUS / name, case)
    target = [str(CORPUS / entry["spec"]), "--weights", case.name] if "spec" in entry else [case.name]
    for command in _commands(entry):
        argv = [command, *target, *entry.get("args", []), *(["-o", "out", "-q"] if command == "compile" else [])]
        env = {k: v for k, v in os.environ.items() if k != "MMSPEC_DEBUG"} | {
            "MMSPEC_TEST_PEAK": str(tmp_path / "peak")}
        proc = subprocess.run([sys.executable, "-c", _WRAPPER, *argv], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert f"{case.name}:{entry['line']}:" in proc.stderr and f"error[{entry['code']}]" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == ""
        peak_mib = int((tmp_path / "peak").read_text()) / 1024
        limit = entry.get("max_rss_mib", MAX_RSS_MIB)
        assert peak_mib <= limit, f"{command} {name}: cold peak RSS {peak_mib:.0f} MiB (limit {limit} MiB)"
        assert not (tmp_path / "out").exists() and not (tmp_path / CANARY_NAME).exists()
