"""Imagen (T2I-14): the frozen T5 v1.1 encoder equals transformers' T5EncoderModel and the base U-Net diffusers'
UNet2DConditionModel in parameter count (the default, and the paper's T5-XXL text encoder as a --set size);
`--weights` on a random UNet2DConditionModel checkpoint reproduces its noise prediction; guided DDIM sampling of
the exported denoiser with dynamic thresholding on ONNX Runtime equals the eager graph; dynamic thresholding is the
paper's rule; `fit` lowers the noise-prediction loss while the T5 encoder stays frozen."""

from __future__ import annotations

from pathlib import Path

import imagen_references as IMG
import numpy as np
import torch

from mmspec import api
from mmspec.runtime import Denoiser, OnnxGraph, alphas_cumprod, betas, ddim_sample, dynamic_threshold
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPEC = Path(__file__).resolve().parents[2] / "specs" / "imagen.yaml"
PARITY_ATOL = 1e-5  # imported weights against the reference, fp32
SAMPLE_ATOL = 1e-3  # a whole sampling loop, ONNX Runtime against eager
XXL = ["encoders.t5.width=4096", "encoders.t5.heads=64", "encoders.t5.ffn=10240"]


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parts_match_their_references():
    counts = api.param_counts(api.build(api.load_spec(SPEC), device="meta"))["by_component"]
    with torch.device("meta"):
        t5, unet = IMG.imagen()
    assert (counts["t5"], counts["unet"]) == (_count(t5), _count(unet))


def test_the_papers_t5_xxl_encoder_matches_t5encodermodel():
    counts = api.param_counts(api.build(api.load_spec(SPEC, sets=XXL, budget=None), device="meta"))["by_component"]
    with torch.device("meta"):
        t5, unet = IMG.t5_encoder(IMG.T5_XXL), IMG.base_unet(context=4096)
    assert (counts["t5"], counts["unet"]) == (_count(t5), _count(unet))


def _tiny_unet(loaded) -> torch.nn.Module:
    unet = loaded.spec.encoders["unet"]
    return IMG.base_unet(tuple(unet.widths), loaded.spec.encoders["t5"].width, loaded.spec.modalities["x_t"].height,
                         unet.depth, tuple(unet.attention), unet.heads, unet.groups, unet.eps)


def test_weights_reproduce_unet2dconditionmodel_and_ort_sampling_equals_eager(tmp_path):
    loaded = api.load_spec(SPEC, "tiny")
    torch.manual_seed(0)
    reference = _tiny_unet(loaded)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.1 * torch.randn_like(p))
    reference.eval().save_pretrained(tmp_path / "unet")
    model = api.build(loaded, weights=tmp_path / "unet" / "diffusion_pytorch_model.safetensors").eval()
    assert {name.split(".")[0] for name in model.weights_report["new"]} == {"t5"}
    x, t, text = torch.randn(2, 3, 8, 8), torch.tensor([10, 950]), torch.randn(2, 5, 8)  # B,3,8,8; B; B,S,D
    with torch.no_grad():
        ours = model.components["unet"]({"input": {"pixels": x}, "timestep": {"values": t},
                                         "context": {"sequence": text}})["eps"]  # B,3,8,8
        theirs = reference(x, t, encoder_hidden_states=text).sample
        other = reference(x, t, encoder_hidden_states=torch.randn(2, 5, 8)).sample
    assert (theirs - other).abs().max() > 0.05  # the text shows
    assert (ours - theirs).abs().max().item() <= PARITY_ATOL

    graph = {g.name: g for g in loaded.plan.graphs}["denoiser"]
    gm, _ = api.optimize(api.capture(api.graph_views(model)["denoiser"]))
    with torch.no_grad():
        api.export(gm, loaded, tmp_path / "denoiser.onnx", graph=graph)
    ort = OnnxGraph(tmp_path / "denoiser.onnx")
    (context,) = set(ort.input_names) - {"x_t", "timestep"}
    rng = np.random.default_rng(0)
    cond = {context: rng.standard_normal((2, 5, 8), dtype=np.float32)}  # B,S,D: a caption's T5 states
    uncond = {context: np.zeros((2, 5, 8), dtype=np.float32)}  # B,S,D: the dropped caption's
    noise = rng.standard_normal((2, 3, 8, 8), dtype=np.float32)  # B,3,8,8
    schedule = alphas_cumprod(betas("squaredcos_cap_v2"))

    def sample(g, scale):
        den = Denoiser(g, sample="x_t", timestep="timestep", eps="unet", cond=cond, uncond=uncond)
        return ddim_sample(den, noise, schedule=schedule, steps=10, seed=2, guidance_scale=scale, clip_sample=0.995)

    on_ort = sample(ort, 5.0)
    np.testing.assert_allclose(on_ort, sample(api.eager_graph(model, "denoiser"), 5.0), atol=SAMPLE_ATOL, rtol=0)
    assert np.abs(on_ort - sample(ort, 1.0)).max() > 10 * SAMPLE_ATOL, "guidance does not change the sample"


def test_dynamic_thresholding_clips_to_the_percentile_and_rescales():
    rng = np.random.default_rng(0)
    x0 = np.stack([rng.uniform(-3, 3, (3, 4, 4)), rng.uniform(-0.5, 0.5, (3, 4, 4))]).astype(np.float32)  # B,3,4,4
    out = dynamic_threshold(x0, 0.9)
    s = np.quantile(np.abs(x0[0]), 0.9)  # above 1: clip to [-s, s], divide by s
    np.testing.assert_allclose(out[0], np.clip(x0[0], -s, s) / s, rtol=1e-6)
    np.testing.assert_array_equal(out[1], x0[1])  # the percentile below 1: s = 1 leaves the example as it is
    assert np.abs(out).max() <= 1.0 and np.isclose(np.abs(out[0]).max(), 1.0)


def test_fit_lowers_the_eps_loss_and_keeps_t5_frozen():
    loaded = api.load_spec(SPEC, "tiny")
    trainer = Trainer(loaded, lr=3e-3)
    frozen = {k: v.clone() for k, v in trainer.model.components["t5"].state_dict().items()}
    history = trainer.fit(synthetic_batch(loaded, 4, 0), 15, seed=0)
    assert sum(history.losses[-3:]) / 3 < 0.9 * history.losses[0], history.losses[::3]
    for k, v in trainer.model.components["t5"].state_dict().items():
        assert torch.equal(v, frozen[k]), k
