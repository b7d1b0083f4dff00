"""Shared fixtures: the reference specs, and their tiny variants compiled once per run."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]

# Hypothesis profiles (tests/fuzz): `ci` is the default, derandomized so every run checks the same 200
# examples; `--hypothesis-profile nightly` draws thousands with random seeds; `dev` is a quick smoke run.
settings.register_profile("ci", max_examples=200, derandomize=True, deadline=None, print_blob=True)
settings.register_profile("nightly", max_examples=5000, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=20, deadline=None, print_blob=True)
settings.load_profile("ci")
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


def pytest_configure(config):
    """One torch thread per xdist worker: `-n 2` on 2 cores with torch's default of one thread per core has
    OpenMP threads competing (and spinning) for cores, which made tiny kernels hundreds of times slower."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


def spec_ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


@pytest.fixture(params=SPECS, ids=spec_ids(SPECS))
def spec_path(request) -> Path:
    return request.param


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> Callable[[Path], tuple[Path, dict]]:
    """`tiny_export(spec)` -> (folder, report) of `mmspec compile SPEC --variant tiny` (verified), compiled once per
    test run and shared by every xdist worker; the folder is read-only for its users (copy before changing it)."""
    from mmspec import api

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "tiny-exports"  # xdist: one per run
    root.mkdir(exist_ok=True)

    def get(spec: Path) -> tuple[Path, dict]:
        out, done = root / spec.stem, root / f"{spec.stem}.report.json"
        with FileLock(root / f"{spec.stem}.lock"):
            if not done.exists():
                done.write_text(json.dumps(api.compile(spec, out_dir=out, variant="tiny")))
        return out, json.loads(done.read_text())

    return get
