"""Shared fixtures: the reference specs and their loaded tiny variants."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


def spec_ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


@pytest.fixture(params=SPECS, ids=spec_ids(SPECS))
def spec_path(request) -> Path:
    return request.param
