"""Imagen's super-resolution stages (T2I-14, specs/imagen_sr.yaml): the efficient_unet encoder equals a torch
rebuild of NVIDIA NeMo's EfficientUNetModel (tests/imagen_sr_references.py) in parameter count at NeMo's sr256-600m
and sr1024-600m configurations and, with the rebuild's weights, in outputs for every attention type (garbage in
the padded T5 states, which the spec zeroes as NeMo's T5 wrapper does before the rebuild sees them); guided DDIM
sampling of the exported denoiser with dynamic thresholding on ONNX Runtime equals the eager graph; training
noises the low-resolution image at the drawn level; `fit` lowers the noise-prediction loss."""

from __future__ import annotations

from pathlib import Path

import imagen_sr_references as ISR
import numpy as np
import pytest
import torch
from references import reference_count

from mmspec import api
from mmspec.runtime import Denoiser, OnnxGraph, alphas_cumprod, betas, ddim_sample
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPEC = Path(__file__).resolve().parents[2] / "specs" / "imagen_sr.yaml"
PARITY_ATOL = 1e-5  # the same weights, the rebuild against the spec, fp32
SAMPLE_ATOL = 1e-3  # a whole sampling loop, ONNX Runtime against eager
WIDE = ["encoders.unet.width=32", "encoders.unet.groups=32", "encoders.unet.head_dim=16",
        "modalities.t5_states.dim=32"]
"""The tiny variants widened to NeMo's fixed 32 GroupNorm groups (widths 32 and 64, 32-wide T5 states)."""


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("variant", "reference"), [(None, ISR.sr256), ("sr1024", ISR.sr1024)])
def test_count_equals_nemo_efficient_unet(variant, reference):
    counts = api.param_counts(api.build(api.load_spec(SPEC, variant), device="meta"))
    with torch.device("meta"):
        expected = _count(reference())
    assert counts["by_component"]["unet"] == expected == counts["total"]
    assert reference_count("imagen_sr" if variant is None else f"imagen_sr:{variant}")[0] == expected


def _nemo(loaded, **overrides) -> ISR.EfficientUNetModel:
    """The rebuild at the loaded spec's configuration."""
    cfg, m = loaded.spec.encoders["unet"], loaded.spec.modalities
    depth = cfg.depth if isinstance(cfg.depth, list) else [cfg.depth] * len(cfg.mult)
    kwargs = {"embed_dim": cfg.width, "image_size": m["x_t"].height, "channels": 3,
              "text_embed_dim": m["t5_states"].dim, "channel_mult": cfg.mult, "num_attn_heads": cfg.heads,
              "per_head_channels": cfg.head_dim or -1, "attention_type": cfg.attention_type,
              "atnn_enabled_at": [int(a) for a in cfg.attention], "feature_pooling_type": cfg.pooling,
              "num_resblocks": depth, "learned_sinu_pos_emb_dim": cfg.learned_sinusoid,
              "use_null_token": cfg.null_token,
              "init_conv_kernel_size": cfg.conv_in_kernel, "scale_shift_norm": cfg.scale_shift,
              "skip_connection_scaling": cfg.scale_skip, "noise_cond_aug": cfg.aug_level is not None}
    return ISR.EfficientUNetModel(**{**kwargs, **overrides})


ATTENTION = [("tiny", []), ("tiny_sr1024", []), ("tiny", ["encoders.unet.attention_type=self"]),
             ("tiny", ["encoders.unet.attention_type=stacked", "encoders.unet.pooling=mean",
                       "encoders.unet.learned_sinusoid=8", "encoders.unet.null_token=true",
                       "encoders.unet.scale_shift=false", "encoders.unet.scale_skip=false",
                       "encoders.unet.conv_in_kernel=5", "encoders.unet.head_dim=null"])]


@pytest.mark.parametrize(("variant", "sets"), ATTENTION, ids=["fused", "cross", "self", "stacked_options"])
def test_outputs_equal_the_rebuild_with_its_weights(variant, sets):
    loaded = api.load_spec(SPEC, variant, [*WIDE, *sets])
    torch.manual_seed(0)
    reference = _nemo(loaded).eval()
    with torch.no_grad():
        for p in reference.parameters():  # the zero biases and GroupNorm shifts made non-trivial
            p.add_(0.02 * torch.randn_like(p))
    model = api.build(loaded).eval()
    unet = model.components["unet"]
    unet.load_state_dict(ISR.mmspec_state_dict(reference, loaded.spec.encoders["unet"].attention_type))
    x, t, text = torch.randn(2, 3, 8, 8), torch.tensor([10, 950]), torch.randn(2, 5, 32)  # B,3,8,8; B; B,S,D
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])  # B,S: the first caption is padded, garbage there
    zeroed = text * mask[..., None]  # B,S,D: NeMo's T5 wrapper zeroes the padding states before the U-Net
    low, level = torch.randn(2, 3, 4, 4), torch.tensor([0, 600])  # B,3,4,4; B

    def ours(states, keep):
        inputs = {"input": {"pixels": x}, "timestep": {"values": t}, "context": {"values": states},
                  "context_mask": {"mask": keep}, "low_res": {"pixels": low}, "aug_level": {"values": level}}
        return unet(inputs)["eps"]  # B,3,8,8

    with torch.no_grad():
        theirs = reference(x, t.float(), zeroed, mask, low, level.float())
        garbage = reference(x, t.float(), text, mask, low, level.float())
        got = ours(text, mask)
        other = ours(torch.randn(2, 5, 32), mask)
        unmasked = ours(text, torch.ones_like(mask))
    assert (got - other).abs().max() > 0.01  # the text shows
    assert (theirs - garbage).abs().max() > 1e-4  # the padding's garbage would show (pooled over all S positions)
    if loaded.spec.encoders["unet"].attention_type != "self":
        assert (got[0] - unmasked[0]).abs().max() > 1e-4  # the mask shows
    assert (got - theirs).abs().max().item() <= PARITY_ATOL


@pytest.mark.parametrize("variant", ["tiny", "tiny_sr1024"])
def test_ort_guided_sampling_equals_eager(variant, tmp_path):
    loaded = api.load_spec(SPEC, variant)
    model = api.build(loaded).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    graph = {g.name: g for g in loaded.plan.graphs}["denoiser"]
    gm, _ = api.optimize(api.capture(api.graph_views(model)["denoiser"]))
    with torch.no_grad():
        api.export(gm, loaded, tmp_path / "denoiser.onnx", graph=graph)
    ort = OnnxGraph(tmp_path / "denoiser.onnx")
    rng = np.random.default_rng(0)
    level = np.array([0, 600])  # B
    abar = alphas_cumprod(betas("squaredcos_cap_v2"))[level][:, None, None, None]  # B,1,1,1
    low = rng.standard_normal((2, 3, 4, 4))  # B,3,4,4: the base stage's sample, noised at its level
    noised = (np.sqrt(abar) * low + np.sqrt(1 - abar) * rng.standard_normal(low.shape)).astype(np.float32)
    cond = {"t5_states": rng.standard_normal((2, 5, 8), dtype=np.float32),  # B,S,D: a caption's T5 states
            "text": np.ones((2, 5), dtype=np.int64), "text_mask": np.array([[1, 1, 1, 0, 0], [1] * 5]),
            "low_res": noised, "aug_level": level}
    uncond = {**cond, "t5_states": np.zeros((2, 5, 8), dtype=np.float32)}  # the dropped caption's
    noise = rng.standard_normal((2, 3, 8, 8), dtype=np.float32)  # B,3,8,8
    schedule = alphas_cumprod(betas("squaredcos_cap_v2"))

    def sample_with(g, scale):
        feeds = {k: v for k, v in cond.items() if k in g.input_names}
        den = Denoiser(g, sample="x_t", timestep="timestep", eps="unet", cond=feeds,
                       uncond={k: v for k, v in uncond.items() if k in feeds})
        return ddim_sample(den, noise, schedule=schedule, steps=10, seed=2, guidance_scale=scale, clip_sample=0.995)

    on_ort = sample_with(ort, 5.0)
    np.testing.assert_allclose(on_ort, sample_with(api.eager_graph(model, "denoiser"), 5.0), atol=SAMPLE_ATOL, rtol=0)
    assert np.abs(on_ort - sample_with(ort, 1.0)).max() > 10 * SAMPLE_ATOL, "guidance does not change the sample"


def test_training_noises_the_low_res_image_at_its_level():
    unet = api.build(api.load_spec(SPEC, "tiny")).components["unet"]
    x, t, text = torch.randn(2, 3, 8, 8), torch.tensor([10, 950]), torch.randn(2, 5, 8)  # B,3,8,8; B; B,S,D
    low, mask, level = torch.randn(2, 3, 4, 4), torch.ones(2, 5, dtype=torch.int64), torch.tensor([3, 600])

    def eps(image, training):
        unet.train(training)
        torch.manual_seed(0)
        with torch.no_grad():
            return unet({"input": {"pixels": x}, "timestep": {"values": t}, "context": {"values": text},
                         "context_mask": {"mask": mask}, "low_res": {"pixels": image},
                         "aug_level": {"values": level}})["eps"]  # B,3,8,8

    abar = torch.from_numpy(alphas_cumprod(betas("squaredcos_cap_v2"))).float()[level][:, None, None, None]
    torch.manual_seed(0)
    noised = abar.sqrt() * low + (1 - abar).sqrt() * torch.randn_like(low)  # B,3,4,4: the drawn augmentation
    torch.testing.assert_close(eps(low, True), eps(noised, False), atol=1e-6, rtol=1e-5)
    assert (eps(low, True) - eps(low, False)).abs().max() > 1e-3  # eval takes the image as given


@pytest.mark.parametrize("variant", ["tiny", "tiny_sr1024"])
def test_fit_lowers_the_eps_loss(variant):
    loaded = api.load_spec(SPEC, variant)
    history = Trainer(loaded, lr=1e-2).fit(synthetic_batch(loaded, 4, 0), 15, seed=0)
    assert sum(history.losses[-3:]) / 3 < 0.9 * history.losses[0], history.losses[::3]
