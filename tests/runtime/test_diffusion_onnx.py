"""Acceptance: a tiny conditional diffusion spec samples an image on ONNX Runtime with DDIM + guidance that equals the
eager sampler within 1e-3 max abs for the same seed and noise; DDPM and a two-spec cascade the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmspec import api
from mmspec.runtime import (
    Denoiser,
    OnnxGraph,
    Stage,
    alphas_cumprod,
    betas,
    cascade,
    ddim_sample,
    ddpm_sample,
)

SPECS = Path(__file__).resolve().parents[1] / "generation" / "specs"
LABELS = np.array([0, 2, 3], dtype=np.int64)  # B: classes 0..3
NULL = np.full(3, 4, dtype=np.int64)  # B: the null class, the unconditional branch
ATOL = 1e-3  # the acceptance bound, max abs


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> dict[str, tuple]:
    """{spec stem: (OnnxGraph of the verified file, eager Graph of a model built from the same spec)}."""
    out = tmp_path_factory.mktemp("diffusion")
    pairs = {}
    for stem in ("tiny_diffusion", "tiny_upsampler"):
        api.compile(SPECS / f"{stem}.yaml", out_dir=out)
        pairs[stem] = OnnxGraph(out / f"{stem}.onnx"), api.eager_graph(api.build(api.load_spec(SPECS / f"{stem}.yaml")))
    return pairs


def _class_denoiser(graph) -> Denoiser:
    return Denoiser(graph, sample="x_t", timestep="timestep", eps="eps", cond={"label": LABELS},
                    uncond={"label": NULL})


def _noise(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


@pytest.mark.parametrize(("eta", "seed"), [(0.0, 0), (0.8, 7)])
def test_ddim_with_guidance_on_ort_equals_eager(graphs, eta, seed):
    ort, eager = graphs["tiny_diffusion"]
    schedule = alphas_cumprod(betas("linear"))
    noise = _noise(3, 3, 8, 8)  # B,C,H,W
    seen: list[int] = []
    on_ort = ddim_sample(_class_denoiser(ort), noise, schedule=schedule, steps=10, eta=eta, seed=seed,
                         guidance_scale=3.0, progress=seen.append)
    on_eager = ddim_sample(_class_denoiser(eager), noise, schedule=schedule, steps=10, eta=eta, seed=seed,
                           guidance_scale=3.0)
    assert seen == list(range(10))
    assert on_ort.shape == noise.shape and np.isfinite(on_ort).all()
    np.testing.assert_allclose(on_ort, on_eager, atol=ATOL, rtol=0)
    unguided = ddim_sample(_class_denoiser(ort), noise, schedule=schedule, steps=10, eta=eta, seed=seed,
                           guidance_scale=0.0)
    assert np.abs(on_ort - unguided).max() > 10 * ATOL, "guidance does not change the sample"


def test_ddpm_with_guidance_on_ort_equals_eager(graphs):
    ort, eager = graphs["tiny_diffusion"]
    schedule = alphas_cumprod(betas("linear", 20, end=0.2))  # short: alpha-bar falls to 0.12
    noise = _noise(3, 3, 8, 8, seed=1)  # B,C,H,W
    on_ort = ddpm_sample(_class_denoiser(ort), noise, schedule=schedule, seed=5, guidance_scale=3.0)
    on_eager = ddpm_sample(_class_denoiser(eager), noise, schedule=schedule, seed=5, guidance_scale=3.0)
    np.testing.assert_allclose(on_ort, on_eager, atol=ATOL, rtol=0)
    assert np.abs(on_ort - ddpm_sample(_class_denoiser(ort), noise, schedule=schedule, seed=6,
                                       guidance_scale=3.0)).max() > 10 * ATOL, "the seed does not change the sample"


def test_cascade_on_ort_equals_eager(graphs):
    schedule = alphas_cumprod(betas("scaled_linear"))
    samples = {}
    for side in (0, 1):  # ORT, eager
        first = Stage(_class_denoiser(graphs["tiny_diffusion"][side]), _noise(3, 3, 8, 8), guidance_scale=3.0)
        second = Stage(Denoiser(graphs["tiny_upsampler"][side], sample="x_t", timestep="timestep", eps="eps"),
                       _noise(3, 3, 16, 16, seed=1), low_res="low_res")  # noise B,C,H,W
        samples[side] = cascade([first, second], schedule=schedule, steps=6, eta=0.5, seed=3)
    (small, big), (small_eager, big_eager) = samples[0], samples[1]
    assert small.shape == (3, 3, 8, 8) and big.shape == (3, 3, 16, 16)
    np.testing.assert_allclose(small, small_eager, atol=ATOL, rtol=0)
    np.testing.assert_allclose(big, big_eager, atol=ATOL, rtol=0)
