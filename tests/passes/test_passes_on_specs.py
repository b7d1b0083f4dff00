"""Every reference spec's tiny variant through capture, each default pass alone and the whole pipeline, with
random BatchNorm running statistics and norm affines: bit for bit for pure rewrites, at fp32 round-off
(`differential.PASS_RTOL`) for BatchNorm folding, against eager PyTorch (the fuzz oracles, on real specs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fuzz.differential import check_eager_graph_passes

from mmspec import api

SPECS = sorted(p.name for p in (Path(__file__).resolve().parents[2] / "specs").glob("*.yaml"))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("spec", SPECS)
def test_passes_keep_the_spec_at_round_off(spec):
    loaded = api.load_spec(Path("specs") / spec, "tiny")
    facts = check_eager_graph_passes(loaded)
    assert facts["finite_cases"] == facts["cases"] > 0, facts
