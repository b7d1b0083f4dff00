"""Imagen (T2I-14): the canonical size's frozen T5 v1.1-XXL encoder equals transformers' T5EncoderModel and its
base U-Net NeMo's UNetModel at base64-2b (tests/imagen_references.py rebuilds it) in parameter count, and the tiny
U-Net computes the rebuild's noise prediction from its weights (a padded caption, garbage in the padding); guided
DDIM sampling of its exported denoiser with dynamic thresholding on ONNX Runtime equals the eager graph; the
deepfloyd stand-in equals T5 v1.1-Large + diffusers' UNet2DConditionModel (pooled text added to the time embedding)
in count, and `--weights` on a random UNet2DConditionModel checkpoint reproduces its noise prediction with a padded
caption's mask; dynamic thresholding is the paper's rule; `fit` lowers the noise-prediction loss while the T5
encoder stays frozen. The super-resolution stages: tests/coverage/test_imagen_sr.py."""

from __future__ import annotations

from pathlib import Path

import imagen_references as IMG
import numpy as np
import pytest
import torch

from mmspec import api
from mmspec.runtime import Denoiser, OnnxGraph, alphas_cumprod, betas, ddim_sample, dynamic_threshold
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPEC = Path(__file__).resolve().parents[2] / "specs" / "imagen.yaml"
PARITY_ATOL = 1e-5  # imported weights against the reference, fp32
SAMPLE_ATOL = 1e-3  # a whole sampling loop, ONNX Runtime against eager


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("variant", [None, "deepfloyd"])
def test_parts_match_their_references(variant):
    counts = api.param_counts(api.build(api.load_spec(SPEC, variant), device="meta"))["by_component"]
    with torch.device("meta"):
        t5, unet = (IMG.imagen if variant is None else IMG.deepfloyd)()
    assert (counts["t5"], counts["unet"]) == (_count(t5), _count(unet))


def _ort_sampling_equals_eager(loaded, model, tmp_path: Path) -> None:
    """Guided DDIM (10 steps, dynamic thresholding) of the exported denoiser on ONNX Runtime equals the eager
    graph's, and guidance changes the sample."""
    graph = {g.name: g for g in loaded.plan.graphs}["denoiser"]
    gm, _ = api.optimize(api.capture(api.graph_views(model)["denoiser"]))
    with torch.no_grad():
        api.export(gm, loaded, tmp_path / "denoiser.onnx", graph=graph)
    ort = OnnxGraph(tmp_path / "denoiser.onnx")
    rng = np.random.default_rng(0)
    names = {n: next(i for i in ort.input_names if i.endswith(n)) for n in ("sequence", "mask")}
    cond = {names["sequence"]: rng.standard_normal((2, 5, 8), dtype=np.float32),  # B,S,D: a caption's T5 states
            names["mask"]: np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])}  # B,S
    uncond = {**cond, names["sequence"]: np.zeros((2, 5, 8), dtype=np.float32)}  # B,S,D: the dropped caption's
    noise = rng.standard_normal((2, 3, 8, 8), dtype=np.float32)  # B,3,8,8
    schedule = alphas_cumprod(betas("squaredcos_cap_v2"))

    def sample_with(g, scale):
        den = Denoiser(g, sample="x_t", timestep="timestep", eps="unet", cond=cond, uncond=uncond)
        return ddim_sample(den, noise, schedule=schedule, steps=10, seed=2, guidance_scale=scale, clip_sample=0.995)

    on_ort = sample_with(ort, 5.0)
    np.testing.assert_allclose(on_ort, sample_with(api.eager_graph(model, "denoiser"), 5.0), atol=SAMPLE_ATOL, rtol=0)
    assert np.abs(on_ort - sample_with(ort, 1.0)).max() > 10 * SAMPLE_ATOL, "guidance does not change the sample"


def test_tiny_unet_computes_the_nemo_rebuild_and_ort_sampling_equals_eager(tmp_path):
    loaded = api.load_spec(SPEC, "tiny")
    unet = loaded.spec.encoders["unet"]
    torch.manual_seed(0)
    reference = IMG.NemoUNet(embed_dim=unet.width, channel_mult=tuple(unet.mult), num_res_blocks=unet.depth,
                             attention_ds=(2,), per_head_channels=unet.head_dim, cond_dim=unet.context_width,
                             text_embed_dim=loaded.spec.encoders["t5"].width, groups=unet.groups).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model = api.build(loaded).eval()
    model.components["unet"].load_state_dict(IMG.to_mmspec(reference))
    x, t, text = torch.randn(2, 3, 8, 8), torch.tensor([10, 950]), torch.randn(2, 5, 8)  # B,3,8,8; B; B,S,D
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])  # B,S: the first caption is padded
    zeroed = text * mask[..., None]  # B,S,D: NeMo's T5 wrapper zeroes the padding states

    with torch.no_grad():
        ours = model.components["unet"]({"input": {"pixels": x}, "timestep": {"values": t},
                                         "context": {"sequence": text}, "context_mask": {"mask": mask}})["eps"]
        theirs = reference(x, t.float(), zeroed, mask)  # B,3,8,8
        other = reference(x, t.float(), torch.randn(2, 5, 8) * mask[..., None], mask)  # B,3,8,8
        unmasked = reference(x, t.float(), zeroed, torch.ones_like(mask))  # B,3,8,8
    assert (theirs - other).abs().max() > 0.05  # the text shows
    assert (theirs[0] - unmasked[0]).abs().max() > 1e-3  # the mask shows
    assert (ours - theirs).abs().max().item() <= PARITY_ATOL
    _ort_sampling_equals_eager(loaded, model, tmp_path)


def test_deepfloyd_weights_reproduce_unet2dconditionmodel(tmp_path):
    loaded = api.load_spec(SPEC, "tiny_deepfloyd")
    unet = loaded.spec.encoders["unet"]
    torch.manual_seed(0)
    reference = IMG.base_unet(tuple(unet.widths), loaded.spec.encoders["t5"].width,
                              loaded.spec.modalities["x_t"].height, unet.depth, tuple(unet.attention), unet.heads,
                              unet.groups, unet.eps, unet.pooled_heads)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.1 * torch.randn_like(p))
    reference.eval().save_pretrained(tmp_path / "unet")
    model = api.build(loaded, weights=tmp_path / "unet" / "diffusion_pytorch_model.safetensors").eval()
    assert {name.split(".")[0] for name in model.weights_report["new"]} == {"t5"}
    x, t, text = torch.randn(2, 3, 8, 8), torch.tensor([10, 950]), torch.randn(2, 5, 8)  # B,3,8,8; B; B,S,D
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])  # B,S: the first caption is padded
    inputs = {"input": {"pixels": x}, "timestep": {"values": t}, "context": {"sequence": text},
              "context_mask": {"mask": mask}}
    with torch.no_grad():
        ours = model.components["unet"](inputs)["eps"]  # B,3,8,8
        theirs = reference(x, t, encoder_hidden_states=text, encoder_attention_mask=mask).sample
        unmasked = reference(x, t, encoder_hidden_states=text).sample
        other = reference(x, t, encoder_hidden_states=torch.randn(2, 5, 8), encoder_attention_mask=mask).sample
    assert (theirs - other).abs().max() > 0.05  # the text shows
    assert (theirs[0] - unmasked[0]).abs().max() > 1e-3  # the mask shows
    assert (ours - theirs).abs().max().item() <= PARITY_ATOL


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
