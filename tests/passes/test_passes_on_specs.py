"""Every reference spec's tiny variant through the default pass pipeline, with random BatchNorm running
statistics (variances 0.01 to 2, so a fold that drops `eps` shows) and norm affines, against eager PyTorch at
fp32 round-off (PASS_RTOL), not at the export gate: a pass that changes arithmetic only reorders roundings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fuzz.differential import cases, eager, run_graph

from mmspec import api

SPECS = sorted(p.name for p in (Path(__file__).resolve().parents[2] / "specs").glob("*.yaml"))
PASS_RTOL = 1e-5
"""Outputs stay within PASS_RTOL * (|ref| + max |ref|): folding BatchNorm in the real specs measured up to
1.6e-6; a fold that drops `eps` moves outputs by about eps / (2 var), up to 5e-4 with these statistics."""


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomize_norms(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._NormBase) and module.running_mean is not None:
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g))
                log_var = torch.rand(module.running_var.shape, generator=g) * 2.3 - 2  # variances 0.01 .. 2
                module.running_var.copy_(10.0**log_var)
            if isinstance(module, torch.nn.modules.batchnorm._NormBase | torch.nn.LayerNorm):
                if getattr(module, "weight", None) is not None:
                    module.weight.copy_(torch.rand(module.weight.shape, generator=g) + 0.5)
                if getattr(module, "bias", None) is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)


def round_off_close(r: torch.Tensor, g: torch.Tensor) -> bool:
    """`g` equals `r` at fp32 round-off wherever `r` is finite (subnormals absolutely); integers exactly."""
    if not r.is_floating_point():
        return torch.equal(r, g)
    finite = r.isfinite()
    if not finite.any():
        return True
    scale, tiny = r[finite].abs().max(), torch.finfo(r.dtype).tiny
    return bool(((r - g).abs() <= PASS_RTOL * (r.abs() + scale) + tiny)[finite].all())


@pytest.mark.parametrize("spec", SPECS)
def test_passes_keep_the_spec_at_round_off(spec):
    loaded = api.load_spec(Path("specs") / spec, "tiny")
    model = api.build(loaded)
    randomize_norms(model, loaded.spec.seed)
    optimized, _ = api.optimize(api.capture(model))
    compared = 0
    for x in cases(loaded):
        for name, r, g in zip(model.output_names, eager(model, x), run_graph(optimized, x), strict=True):
            assert r.shape == g.shape and r.dtype == g.dtype, name
            assert round_off_close(r, g), f"{name}: max abs diff {float((r.double() - g.double()).abs().max())}"
            compared += int(r.isfinite().all()) if r.is_floating_point() else 1
    assert compared > 0
