"""Imagen (T2I-14): the canonical size's frozen T5 v1.1-XXL encoder equals transformers' T5EncoderModel and its
base U-Net NeMo's UNetModel at base64-2b (tests/imagen_references.py rebuilds it) in parameter count, and the tiny
U-Net computes the rebuild's noise prediction from its weights (a padded caption, garbage in the padding); the
deepfloyd stand-in and the super-resolution stages equal diffusers' UNet2DConditionModel (pooled text added to the
time embedding, the augmentation level embedded like the timestep) in count, and `--weights` on a random
UNet2DConditionModel checkpoint reproduces its noise prediction; guided DDIM sampling of the exported denoisers
with dynamic thresholding on ONNX Runtime equals the eager graph; dynamic thresholding is the paper's rule;
training noises the low-resolution image at the drawn level; `fit` lowers the noise-prediction loss while the T5
encoder stays frozen."""

from __future__ import annotations

from pathlib import Path

import imagen_references as IMG
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmspec import api
from mmspec.runtime import Denoiser, OnnxGraph, alphas_cumprod, betas, ddim_sample, dynamic_threshold
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPEC = Path(__file__).resolve().parents[2] / "specs" / "imagen.yaml"
PARITY_ATOL = 1e-5  # imported weights against the reference, fp32
SAMPLE_ATOL = 1e-3  # a whole sampling loop, ONNX Runtime against eager


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("variant", [None, "deepfloyd", "sr256", "sr1024"])
def test_parts_match_their_references(variant):
    counts = api.param_counts(api.build(api.load_spec(SPEC, variant), device="meta"))["by_component"]
    references = {None: IMG.imagen, "deepfloyd": IMG.deepfloyd}
    with torch.device("meta"):
        t5, unet = references[variant]() if variant in references else IMG.imagen_sr(int(variant[2:]))
    assert (counts["t5"], counts["unet"]) == (_count(t5), _count(unet))


def _ort_sampling_equals_eager(loaded, model, tmp_path: Path, low: torch.Tensor | None = None,
                               level: torch.Tensor | None = None) -> None:
    """Guided DDIM (10 steps, dynamic thresholding) of the exported denoiser on ONNX Runtime equals the eager
    graph's, and guidance changes the sample; `low`, `level`: a super-resolution stage's inputs."""
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
    if low is not None:  # the 4x4 image, noised at its augmentation level as in training
        abar = alphas_cumprod(betas("squaredcos_cap_v2"))[level.numpy()][:, None, None, None]  # B,1,1,1
        noised = (np.sqrt(abar) * low.numpy() + np.sqrt(1 - abar) * rng.standard_normal(low.shape)).astype(np.float32)
        feeds = {"low_res": noised, "aug_level": level.numpy()}  # B,3,4,4; B
        cond, uncond = {**cond, **feeds}, {**uncond, **feeds}
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


def _tiny_unet(loaded) -> torch.nn.Module:
    unet = loaded.spec.encoders["unet"]
    depth = tuple(unet.depth) if isinstance(unet.depth, list) else unet.depth
    return IMG.base_unet(tuple(unet.widths), loaded.spec.encoders["t5"].width, loaded.spec.modalities["x_t"].height,
                         depth, tuple(unet.attention), unet.heads, unet.groups, unet.eps, unet.pooled_heads,
                         super_resolution=unet.low_res is not None)


@pytest.mark.parametrize("variant", ["tiny_deepfloyd", "tiny_sr"])
def test_weights_reproduce_unet2dconditionmodel(variant, tmp_path):
    loaded = api.load_spec(SPEC, variant)
    sr = variant == "tiny_sr"
    torch.manual_seed(0)
    reference = _tiny_unet(loaded)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.1 * torch.randn_like(p))
    reference.eval().save_pretrained(tmp_path / "unet")
    model = api.build(loaded, weights=tmp_path / "unet" / "diffusion_pytorch_model.safetensors").eval()
    assert {name.split(".")[0] for name in model.weights_report["new"]} == {"t5"}
    x, t, text = torch.randn(2, 3, 8, 8), torch.tensor([10, 950]), torch.randn(2, 5, 8)  # B,3,8,8; B; B,S,D
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])  # B,S: the first caption is padded
    low, level = torch.randn(2, 3, 4, 4), torch.tensor([0, 600])  # B,3,4,4; B
    inputs = {"input": {"pixels": x}, "timestep": {"values": t}, "context": {"sequence": text},
              "context_mask": {"mask": mask}}
    sample, labels = x, None
    if sr:
        inputs |= {"low_res": {"pixels": low}, "aug_level": {"values": level}}
        sample = torch.cat([x, F.interpolate(low, size=(8, 8), mode="bilinear", align_corners=False)], 1)  # B,6,8,8
        labels = level
    with torch.no_grad():
        ours = model.components["unet"](inputs)["eps"]  # B,3,8,8
        theirs = reference(sample, t, encoder_hidden_states=text, encoder_attention_mask=mask,
                           class_labels=labels).sample
        unmasked = reference(sample, t, encoder_hidden_states=text, class_labels=labels).sample
        other = reference(sample, t, encoder_hidden_states=torch.randn(2, 5, 8), encoder_attention_mask=mask,
                          class_labels=labels).sample
    assert (theirs - other).abs().max() > 0.05  # the text shows
    assert (theirs[0] - unmasked[0]).abs().max() > 1e-3  # the mask shows
    assert (ours - theirs).abs().max().item() <= PARITY_ATOL

    if sr:
        _ort_sampling_equals_eager(loaded, model, tmp_path, low, level)


def test_training_noises_the_low_res_image_at_its_level():
    model = api.build(api.load_spec(SPEC, "tiny_sr"))
    unet = model.components["unet"]
    x, t, text = torch.randn(2, 3, 8, 8), torch.tensor([10, 950]), torch.randn(2, 5, 8)  # B,3,8,8; B; B,S,D
    low, mask, level = torch.randn(2, 3, 4, 4), torch.ones(2, 5, dtype=torch.int64), torch.tensor([3, 600])

    def eps(image, training):
        unet.train(training)
        torch.manual_seed(0)
        with torch.no_grad():
            return unet({"input": {"pixels": x}, "timestep": {"values": t}, "context": {"sequence": text},
                         "context_mask": {"mask": mask}, "low_res": {"pixels": image},
                         "aug_level": {"values": level}})["eps"]  # B,3,8,8

    abar = torch.from_numpy(alphas_cumprod(betas("squaredcos_cap_v2"))).float()[level][:, None, None, None]
    torch.manual_seed(0)
    noised = abar.sqrt() * low + (1 - abar).sqrt() * torch.randn_like(low)  # B,3,4,4: the drawn augmentation
    torch.testing.assert_close(eps(low, True), eps(noised, False), atol=1e-6, rtol=1e-5)
    assert (eps(low, True) - eps(low, False)).abs().max() > 1e-3  # eval takes the image as given


def test_dynamic_thresholding_clips_to_the_percentile_and_rescales():
    rng = np.random.default_rng(0)
    x0 = np.stack([rng.uniform(-3, 3, (3, 4, 4)), rng.uniform(-0.5, 0.5, (3, 4, 4))]).astype(np.float32)  # B,3,4,4
    out = dynamic_threshold(x0, 0.9)
    s = np.quantile(np.abs(x0[0]), 0.9)  # above 1: clip to [-s, s], divide by s
    np.testing.assert_allclose(out[0], np.clip(x0[0], -s, s) / s, rtol=1e-6)
    np.testing.assert_array_equal(out[1], x0[1])  # the percentile below 1: s = 1 leaves the example as it is
    assert np.abs(out).max() <= 1.0 and np.isclose(np.abs(out[0]).max(), 1.0)


@pytest.mark.parametrize("variant", ["tiny", "tiny_sr"])
def test_fit_lowers_the_eps_loss_and_keeps_t5_frozen(variant):
    loaded = api.load_spec(SPEC, variant)
    trainer = Trainer(loaded, lr=3e-3)
    frozen = {k: v.clone() for k, v in trainer.model.components["t5"].state_dict().items()}
    history = trainer.fit(synthetic_batch(loaded, 4, 0), 15, seed=0)
    assert sum(history.losses[-3:]) / 3 < 0.9 * history.losses[0], history.losses[::3]
    for k, v in trainer.model.components["t5"].state_dict().items():
        assert torch.equal(v, frozen[k]), k
