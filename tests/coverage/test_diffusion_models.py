"""DDPM (T2I-11): the diffusion_unet encoder's parameter counts equal diffusers' UNet2DModel built from the same
configuration on the meta device, `--weights` on a random diffusers checkpoint reproduces UNet2DModel's noise
prediction, ancestral (DDPM) and DDIM sampling on ONNX Runtime equal the eager model for the same seed and noise,
`fit` lowers the epsilon-prediction loss of the tiny variant, and the shape rules name the field at fault."""

from __future__ import annotations

from pathlib import Path

import diffusion_references as DR
import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel, UNet2DModel

from mmspec import api
from mmspec.errors import SpecError
from mmspec.graph.inputs import make_inputs, trace_sizes
from mmspec.runtime import Denoiser, OnnxGraph, alphas_cumprod, betas, ddim_sample, ddpm_sample
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPEC = Path(__file__).resolve().parents[2] / "specs" / "ddpm.yaml"
PARITY_ATOL = 1e-5  # docs/contracts.md: imported weights against the reference, fp32
SAMPLE_ATOL = 1e-3  # the diffusion acceptance bound: a whole sampling loop, ONNX Runtime against eager


def _diffusers_config(loaded) -> dict:
    """UNet2DModel's configuration for the spec's `unet` node (attention levels as AttnDown/AttnUp blocks)."""
    image, unet = loaded.spec.modalities["x_t"], loaded.spec.encoders["unet"]
    return {
        "sample_size": image.height, "in_channels": image.channels, "out_channels": unet.out_channels or image.channels,
        "block_out_channels": tuple(unet.widths), "layers_per_block": unet.depth,
        "down_block_types": tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in unet.attention),
        "up_block_types": tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(unet.attention)),
        "norm_num_groups": unet.groups, "norm_eps": unet.eps, "attention_head_dim": unet.head_dim,
        "flip_sin_to_cos": unet.flip_sin_to_cos, "freq_shift": unet.freq_shift,
        "downsample_padding": unet.downsample_padding, "dropout": unet.dropout,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("variant", "reference"),
    [(None, DR.ddpm_cifar10), ("lsun256", DR.ddpm_lsun256), ("tiny", None)],  # tiny: the spec's own configuration
    ids=["cifar10", "lsun256", "tiny"],
)
def test_sizes_match_diffusers_unet2dmodel(variant, reference):
    loaded = api.load_spec(SPEC, variant)
    with torch.device("meta"):
        model = reference() if reference else UNet2DModel(**_diffusers_config(loaded))
        reference = sum(p.numel() for p in model.parameters())
    assert api.param_counts(api.build(loaded, device="meta"))["total"] == reference


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(loaded tiny spec, diffusers reference with lively random weights, our model loaded from its checkpoint)."""
    out = tmp_path_factory.mktemp("ddpm")
    loaded = api.load_spec(SPEC, "tiny")
    torch.manual_seed(0)
    reference = UNet2DModel(**_diffusers_config(loaded))
    with torch.no_grad():  # diffusers zero-initialises nothing here, but small weights hide misplaced tensors
        for p in reference.parameters():
            p.add_(0.1 * torch.randn_like(p))
    reference.eval().save_pretrained(out / "ckpt")
    model = api.build(loaded, weights=out / "ckpt" / "diffusion_pytorch_model.safetensors").eval()
    return loaded, reference, model


def test_weights_reproduce_diffusers_noise_prediction(tiny):
    loaded, reference, model = tiny
    assert not model.weights_report["new"] and not model.weights_report["ignored"]
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=1)
    inputs["timestep"] = torch.tensor([5, 901])[: inputs["x_t"].shape[0]]  # B
    with torch.no_grad():
        (ours,) = model(inputs)  # B,3,8,8
        theirs = reference(inputs["x_t"], inputs["timestep"]).sample  # B,3,8,8
    assert theirs.abs().max() > 0.5 and (theirs[0] - theirs[1]).abs().max() > 0.1  # input and timestep show
    diff = (ours - theirs).abs().max().item()
    assert diff <= PARITY_ATOL, f"max abs diff {diff:.3g}"


def _denoiser(graph) -> Denoiser:
    return Denoiser(graph, sample="x_t", timestep="timestep", eps="unet")


def test_ddpm_and_ddim_sampling_on_ort_equal_eager(tiny, tmp_path):
    loaded, _, model = tiny
    gm, _ = api.optimize(api.capture(model))
    api.export(gm, loaded, tmp_path / "ddpm.onnx")
    ort, eager = _denoiser(OnnxGraph(tmp_path / "ddpm.onnx")), _denoiser(api.eager_graph(model))
    noise = np.random.default_rng(0).standard_normal((2, 3, 8, 8), dtype=np.float32)  # B,C,H,W
    short = alphas_cumprod(betas("linear", 20, end=0.2))  # 20 ancestral steps; alpha-bar falls to 0.12
    on_ort = ddpm_sample(ort, noise, schedule=short, seed=3)
    on_eager = ddpm_sample(eager, noise, schedule=short, seed=3)
    assert np.isfinite(on_ort).all() and np.abs(on_ort - noise).max() > 0.1
    np.testing.assert_allclose(on_ort, on_eager, atol=SAMPLE_ATOL, rtol=0)
    full = alphas_cumprod(betas("linear"))  # the spec's schedule: linear 1e-4 .. 0.02 over 1000 steps
    np.testing.assert_allclose(ddim_sample(ort, noise, schedule=full, steps=10, eta=0.5, seed=4),
                               ddim_sample(eager, noise, schedule=full, steps=10, eta=0.5, seed=4),
                               atol=SAMPLE_ATOL, rtol=0)


def test_fit_lowers_the_eps_loss_of_the_tiny_variant():
    loaded = api.load_spec(SPEC, "tiny")
    history = Trainer(loaded, lr=3e-3).fit(synthetic_batch(loaded, 4, 0), 15, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < 0.9 * first, history.losses[::3]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["encoders.unet.attention=[true]"], "1 entries for 2 levels"),
        (["encoders.unet.groups=3"], "do not divide the widths"),
        (["modalities.x_t.height=9"], "must divide by 2"),
        (["encoders.unet.head_dim=5"], "head_dim 5 must divide"),
        (["encoders.unet.timestep=x_t"], "one timestep per example"),
    ],
)
def test_shape_rules_are_located(sets, message):
    with pytest.raises(SpecError) as info:
        api.load_spec(SPEC, "tiny", sets)
    text = str(info.value)
    assert message in text and "encoders.unet" in text, text


LDM = SPEC.with_name("latent_diffusion.yaml")


def test_latent_diffusion_parts_match_their_references():
    """U-Net = UNet2DConditionModel, encoder + decoder = AutoencoderKL, text tower = CLIPTextModel (SD v1)."""
    counts = api.param_counts(api.build(api.load_spec(LDM), device="meta"))["by_component"]
    with torch.device("meta"):
        unet, vae, text = DR.latent_diffusion()
    assert counts["unet"] == sum(p.numel() for p in unet.parameters())
    assert counts["vae"] + counts["decoder"] == sum(p.numel() for p in vae.parameters())
    assert counts["text_tower"] == sum(p.numel() for p in text.parameters())


def _conditional_config(loaded) -> dict:
    latent, unet = loaded.spec.modalities["x_t"], loaded.spec.encoders["unet"]
    return {
        "sample_size": latent.height, "in_channels": latent.channels, "out_channels": latent.channels,
        "block_out_channels": tuple(unet.widths), "layers_per_block": unet.depth,
        "down_block_types": tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in unet.attention),
        "up_block_types": tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(unet.attention)),
        "norm_num_groups": unet.groups, "norm_eps": unet.eps, "attention_head_dim": unet.heads,
        "cross_attention_dim": loaded.spec.encoders["text_tower"].width,
        "flip_sin_to_cos": unet.flip_sin_to_cos, "freq_shift": unet.freq_shift,
    }  # fmt: skip


@pytest.fixture(scope="module")
def tiny_ldm(tmp_path_factory):
    """(loaded tiny latent diffusion spec, UNet2DConditionModel with lively random weights, our model with those
    weights in its unet node)."""
    out = tmp_path_factory.mktemp("ldm")
    loaded = api.load_spec(LDM, "tiny")
    torch.manual_seed(0)
    reference = UNet2DConditionModel(**_conditional_config(loaded))
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.1 * torch.randn_like(p))
    reference.eval().save_pretrained(out / "unet")
    model = api.build(loaded, weights=out / "unet" / "diffusion_pytorch_model.safetensors").eval()
    return loaded, reference, model


def test_weights_reproduce_unet2dconditionmodel(tiny_ldm):
    _, reference, model = tiny_ldm
    assert {name.split(".")[0] for name in model.weights_report["new"]} == {"decoder", "text_tower", "vae"}
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 950])  # B,4,8,8; B
    text = torch.randn(2, 5, 8)  # B,S,D: the text tower's states
    with torch.no_grad():
        ours = model.components["unet"]({"input": {"pixels": x}, "timestep": {"values": t},
                                         "context": {"sequence": text}})["eps"]  # B,4,8,8
        theirs = reference(x, t, encoder_hidden_states=text).sample  # B,4,8,8
        other = reference(x, t, encoder_hidden_states=torch.randn(2, 5, 8)).sample  # B,4,8,8
    assert (theirs - other).abs().max() > 0.05  # the text shows
    diff = (ours - theirs).abs().max().item()
    assert diff <= PARITY_ATOL, f"max abs diff {diff:.3g}"


@pytest.mark.slow
def test_latent_diffusion_guided_ddim_on_ort_equals_eager(tiny_ldm, tmp_path):
    """The `denoiser` graph alone (text states fed from outside) samples with classifier-free guidance on ONNX
    Runtime as the eager graph view does."""
    loaded, _, model = tiny_ldm
    graph = {g.name: g for g in loaded.plan.graphs}["denoiser"]
    gm, _ = api.optimize(api.capture(api.graph_views(model)["denoiser"]))
    with torch.no_grad():
        api.export(gm, loaded, tmp_path / "denoiser.onnx", graph=graph)
    ort = OnnxGraph(tmp_path / "denoiser.onnx")
    (context,) = set(ort.input_names) - {"x_t", "timestep"}
    rng = np.random.default_rng(0)
    cond = {context: rng.standard_normal((2, 5, 8), dtype=np.float32)}  # B,S,D: a caption's states
    uncond = {context: np.zeros((2, 5, 8), dtype=np.float32)}  # B,S,D: the null caption's
    noise = rng.standard_normal((2, 4, 8, 8), dtype=np.float32)  # B,4,8,8
    schedule = alphas_cumprod(betas("scaled_linear", start=0.00085, end=0.012))

    def sample(g, scale):
        den = Denoiser(g, sample="x_t", timestep="timestep", eps="unet", cond=cond, uncond=uncond)
        return ddim_sample(den, noise, schedule=schedule, steps=10, seed=2, guidance_scale=scale,
                           set_alpha_to_one=False)

    on_ort = sample(ort, 7.5)
    np.testing.assert_allclose(on_ort, sample(api.eager_graph(model, "denoiser"), 7.5), atol=SAMPLE_ATOL, rtol=0)
    assert np.abs(on_ort - sample(ort, 1.0)).max() > 10 * SAMPLE_ATOL, "guidance does not change the sample"


def test_fit_lowers_the_eps_loss_of_the_tiny_latent_diffusion():
    """Only the U-Net trains; the frozen autoencoder and text tower keep their weights."""
    loaded = api.load_spec(LDM, "tiny")
    trainer = Trainer(loaded, lr=3e-3)
    frozen = {k: v.clone() for k, v in trainer.model.components["text_tower"].state_dict().items()}
    history = trainer.fit(synthetic_batch(loaded, 4, 0), 15, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < 0.9 * first, history.losses[::3]
    for k, v in trainer.model.components["text_tower"].state_dict().items():
        assert torch.equal(v, frozen[k]), k
