"""Every reference spec's tiny variant through the default pass pipeline, with random BatchNorm running
statistics (variances 0.01 to 2, so a fold that drops `eps` shows) and norm affines, against eager PyTorch at
fp32 round-off, not at the export gate: a pass that changes arithmetic only reorders roundings. The bound is the
fuzz oracle's (`fuzz.differential.compare`): a relative term plus the spec's own one-ulp floor, so that deep
stacks of folded norms (AttnGAN's three stages) are not held to a shallow network's round-off."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fuzz.differential import cases, compare, eager, randomize_norms, round_off_floor, run_graph

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
    model = api.build(loaded)
    randomize_norms(model, loaded.spec.seed)
    optimized, _ = api.optimize(api.capture(model))
    compared = 0
    for x in cases(loaded):
        ref = eager(model, x)
        compare(spec, model.output_names, ref, run_graph(optimized, x), exact=False,
                floor=round_off_floor(model, x, ref))
        compared += sum(int(r.isfinite().all()) if r.is_floating_point() else 1 for r in ref)
    assert compared > 0
