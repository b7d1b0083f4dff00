"""Same spec, same mmspec version, same seed -> byte-identical ONNX (docs/contracts.md, verification).

Every spec in specs/ (tiny variant, the run's shared export: conftest `tiny_export`) is compiled again in a
separate Python process with another hash seed, so neither caches nor set/dict ordering can make the bytes
agree by accident. A different seed must change them (the comparison can fail).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmspec import api

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))

_COMPILE_ALL = """
import sys
from mmspec import api
out = sys.argv[1]
for spec in sys.argv[2:]:
    api.compile(spec, out, variant="tiny", verify_export=False)
"""


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*.onnx"))}


GROUPS = 4
"""The specs are split into this many groups, one test each, so xdist spreads the compiles over its workers."""


@pytest.mark.parametrize("group", range(GROUPS))
def test_every_spec_compiles_to_identical_bytes_in_another_process(tmp_path, group, tiny_export):
    specs = SPECS[group::GROUPS]
    env = {k: v for k, v in os.environ.items() if k != "MMSPEC_DEBUG"} | {"PYTHONHASHSEED": "12345"}
    other = subprocess.Popen([sys.executable, "-c", _COMPILE_ALL, str(tmp_path), *map(str, specs)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        mine = {name: digest for spec in specs for name, digest in _digests(tiny_export(spec)[0]).items()}
    finally:
        _, err = other.communicate(timeout=900)
    assert other.returncode == 0, err
    theirs = _digests(tmp_path)
    assert len(mine) == sum(len(api.load_spec(s, "tiny").plan.graphs) or 1 for s in specs)  # a file per graph
    assert mine == theirs, {name: (mine[name], theirs.get(name)) for name in mine if mine[name] != theirs.get(name)}


def test_a_different_seed_changes_the_bytes(tmp_path):
    spec = ROOT / "specs" / "resnet50.yaml"
    a = api.compile(spec, tmp_path / "a", variant="tiny", verify_export=False)
    b = api.compile(spec, tmp_path / "b", variant="tiny", sets=["seed=1"], verify_export=False)
    assert Path(a["onnx"]["path"]).read_bytes() != Path(b["onnx"]["path"]).read_bytes()
