"""Shared fixtures: the reference specs and their loaded tiny variants."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
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
