"""Guided generation (issue 12): GA-06 VQGAN + CLIP and GA-07 classifier-guided diffusion.

The VQGAN (vq_encoder + vae_decoder with attention at the lowest level) equals diffusers' VQModel at the
taming-transformers ImageNet f16/16384 configuration in parameter count and, through `--weights` (one checkpoint
holding a VQModel's and a CLIPModel's tensors), in latents, codes and decoded image, and CLIP in its embeddings;
the test-time loop (the latent grid optimised against CLIP's similarity of random cut-outs of the decoded image to
a prompt) raises that similarity; `fit` lowers the VQGAN's training loss. The ADM U-Net (class-conditional) and
noisy-image classifier equal guided_diffusion's UNetModel and EncoderUNetModel (guided-diffusion-sdk) in count at
the README's 256x256 flags and, with their weights mapped, in outputs; classifier-guided DDIM with the denoiser on
ONNX Runtime equals the eager model (same seed and noise) and raises the classifier's log-probability of the
class; `fit` lowers both objectives."""

from __future__ import annotations

from pathlib import Path

import guided_references as GDR
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers as tf
from references import reference_count
from safetensors.torch import save_file

from mmspec import api
from mmspec.runtime import Denoiser, OnnxGraph, alphas_cumprod, betas, classifier_guidance, ddim_sample
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPECS = Path(__file__).resolve().parents[2] / "specs"
VQGAN_CLIP = SPECS / "vqgan_clip.yaml"
GUIDED = SPECS / "guided_diffusion.yaml"
UNCLIP = SPECS / "unclip.yaml"
PARITY_ATOL = 1e-5  # docs/contracts.md: imported weights against the reference, fp32
SAMPLE_ATOL = 1e-3  # the diffusion acceptance bound: a whole sampling loop, ONNX Runtime against eager
# guided_diffusion's GroupNorm has 32 groups: the parity checks run the tiny variant at 32 and 64 channels
PARITY = [f"{node}.{k}={v}" for node in ("encoders.unet", "heads.classifier")
          for k, v in (("width", 32), ("groups", 32), ("head_dim", 32))]


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _tiny_references(loaded) -> tuple[torch.nn.Module, tf.CLIPModel]:
    """diffusers VQModel and transformers CLIPModel with the tiny variant's configuration."""
    spec = loaded.spec
    vq, vision, text = spec.encoders["vq"], spec.encoders["vision"], spec.encoders["text_tower"]
    n = len(vq.widths)
    vqgan = GDR.vqgan_f16(
        block_out_channels=tuple(vq.widths), layers_per_block=vq.depth, latent_channels=vq.latent,
        vq_embed_dim=vq.latent, num_vq_embeddings=vq.codebook, norm_num_groups=vq.groups,
        sample_size=spec.modalities["image"].height,
        down_block_types=tuple("AttnDownEncoderBlock2D" if a else "DownEncoderBlock2D" for a in vq.attention),
        up_block_types=tuple("AttnUpDecoderBlock2D" if a else "UpDecoderBlock2D" for a in vq.attention[::-1]))
    assert n == len(vqgan.config.block_out_channels)
    clip = tf.CLIPModel(tf.CLIPConfig(
        vision_config={"hidden_size": vision.width, "num_hidden_layers": vision.layers,
                       "num_attention_heads": vision.heads, "intermediate_size": vision.ffn,
                       "patch_size": vision.embed.patch_size, "image_size": spec.modalities["cutouts"].height},
        text_config={"vocab_size": spec.modalities["text"].vocab_size, "hidden_size": text.width,
                     "num_hidden_layers": text.layers, "num_attention_heads": text.heads,
                     "intermediate_size": text.ffn, "max_position_embeddings": text.embed.positions,
                     "eos_token_id": 2},  # pooled at the highest id, as specs/clip.yaml
        projection_dim=spec.heads["image_proj"].dim))
    return vqgan, clip


def test_vqgan_clip_canonical_count_equals_vqmodel_and_clipmodel():
    loaded = api.load_spec(VQGAN_CLIP)
    counts = api.param_counts(api.build(loaded, device="meta"))
    with torch.device("meta"):
        vqgan = GDR.vqgan_f16()
    assert counts["by_component"]["vq"] + counts["by_component"]["decoder"] == _count(vqgan)
    assert counts["total"] == reference_count("vqgan_clip")[0]


def test_vqgan_clip_tiny_count_equals_references():
    loaded = api.load_spec(VQGAN_CLIP, "tiny")
    with torch.device("meta"):
        vqgan, clip = _tiny_references(loaded)
    assert api.param_counts(api.build(loaded, device="meta"))["total"] == _count(vqgan) + _count(clip)


def test_vqgan_clip_weights_reproduce_vqmodel_and_clip(tmp_path):
    loaded = api.load_spec(VQGAN_CLIP, "tiny")
    torch.manual_seed(0)
    vqgan, clip = _tiny_references(loaded)
    with torch.no_grad():  # perturbed so that a tensor loaded into the wrong place shows
        for p in [*vqgan.parameters(), *clip.parameters()]:
            p.add_(0.1 * torch.randn_like(p))
        vqgan.quantize.embedding.weight.normal_()  # spread codes, so that several are chosen
    vqgan.eval(), clip.eval()
    state = {**vqgan.state_dict(), **{k: v for k, v in clip.state_dict().items() if "position_ids" not in k}}
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "vqgan_clip.safetensors")
    model = api.build(loaded, weights=tmp_path / "vqgan_clip.safetensors").eval()
    assert not model.weights_report["new"] and not model.weights_report["ignored"]
    image, cutouts = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)  # B,C,H,W each
    ids = torch.tensor([[5, 7, 9, 39, 0, 0], [3, 39, 0, 0, 0, 0]])  # B,S: the highest id (end of text) pools
    with torch.no_grad():
        got = dict(zip(model.output_names, model({"image": image, "cutouts": cutouts, "text": ids}), strict=True))
        latent = vqgan.encode(image).latents  # B,4,4,4
        _, _, (_, _, codes) = vqgan.quantize(latent)
        decoded = vqgan.decode(latent).sample  # B,3,8,8
        image_embeds = clip.get_image_features(pixel_values=cutouts)  # B,6
        text_embeds = clip.get_text_features(input_ids=ids)  # B,6
    assert torch.equal(got["vq_codes"], codes.view(2, -1)) and codes.unique().numel() > 2
    for name, a, b in (("latent", got["vq_latent"], latent), ("decoded", got["decoder"], decoded),
                       ("image_proj", got["image_proj"], getattr(image_embeds, "pooler_output", image_embeds)),
                       ("text_proj", got["text_proj"], getattr(text_embeds, "pooler_output", text_embeds))):
        assert b.abs().max() > 0.1, name
        diff = (a - b).abs().max().item()
        assert diff <= PARITY_ATOL, f"{name}: max abs diff {diff:.3g}"


def _clip_similarity(model, z: torch.Tensor, prompt: torch.Tensor, cuts: int, generator: torch.Generator,
                     size: int = 8) -> torch.Tensor:
    """Mean cosine similarity between the prompt and `cuts` random crops of decode(quantise(z)), each resized to
    `size` (VQGAN-CLIP's make_cutouts, without its augmentations)."""
    _, straight, _ = model.components["vq"].quantize(z)  # B,D,h,w: nearest codes, straight-through gradient
    pixels = model.components["decoder"]({"input": {"quantized": straight}})["pixels"]  # B,3,H,W
    crops = []
    for _ in range(cuts):
        side = int(torch.randint(size // 2, pixels.shape[-1] + 1, (1,), generator=generator))
        y, x = (int(torch.randint(0, pixels.shape[-1] - side + 1, (1,), generator=generator)) for _ in range(2))
        crops.append(F.interpolate(pixels[:, :, y:y + side, x:x + side], size=(size, size), mode="bilinear"))
    vision = model.components["vision"]({"input": {"pixels": torch.cat(crops)}})  # cuts*B crops
    image = model.components["image_proj"]({"input": {"pooled": vision["pooled"]}})["embedding"]  # cuts*B,E
    text = model.components["text_tower"]({"input": {"ids": prompt}})
    text = model.components["text_proj"]({"input": {"pooled": text["pooled"]}})["embedding"]  # 1,E
    return F.cosine_similarity(image, text).mean()


def test_vqgan_clip_latent_optimisation_raises_the_clip_similarity():
    """The artist-critic loop: Adam on the latent grid (the networks frozen) raises CLIP's similarity."""
    loaded = api.load_spec(VQGAN_CLIP, "tiny")
    torch.manual_seed(0)
    model = api.build(loaded).eval()
    model.requires_grad_(False)
    with torch.no_grad():
        model.components["vq"].quantize.embedding.weight.normal_()  # a spread codebook, as a trained VQGAN has
        z = model.components["vq"]({"input": {"pixels": torch.rand(1, 3, 8, 8)}})["latent"]  # 1,4,4,4: from an image
    z = z.clone().requires_grad_(True)
    prompt = torch.tensor([[4, 11, 17, 39, 0, 0]])  # 1,S
    optimiser = torch.optim.Adam([z], lr=0.3)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        before = _clip_similarity(model, z, prompt, 16, torch.Generator().manual_seed(1)).item()
    for _ in range(30):
        optimiser.zero_grad()
        (-_clip_similarity(model, z, prompt, 4, generator)).backward()
        optimiser.step()
    with torch.no_grad():
        after = _clip_similarity(model, z, prompt, 16, torch.Generator().manual_seed(1)).item()
    assert after > before + 0.05, (before, after)
    assert all(p.grad is None for p in model.parameters())


def test_vqgan_clip_fit_lowers_the_vqgan_loss():
    loaded = api.load_spec(VQGAN_CLIP, "tiny")
    history = Trainer(loaded, lr=3e-3).fit(synthetic_batch(loaded, 4, 0), 12, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < 0.9 * first, history.losses[::3]


@pytest.mark.parametrize("variant", [None, "unconditional"], ids=["conditional", "unconditional"])
def test_guided_diffusion_counts_equal_guided_diffusion(variant):
    loaded = api.load_spec(GUIDED, variant)
    counts = api.param_counts(api.build(loaded, device="meta"))
    with torch.device("meta"):
        unet = GDR.adm_unet(**{**GDR.ADM_256, "class_cond": variant is None})
        classifier = GDR.adm_classifier()
    assert counts["by_component"]["unet"] == _count(unet)
    assert counts["by_component"]["classifier"] == _count(classifier)
    assert counts["total"] == reference_count(f"guided_diffusion:{variant}" if variant else "guided_diffusion")[0]


@pytest.fixture(scope="module")
def guided_parity():
    """(our model at the parity size, guided_diffusion's UNetModel and EncoderUNetModel holding its weights)."""
    from guided_diffusion.unet import EncoderUNetModel, UNetModel

    loaded = api.load_spec(GUIDED, "tiny", sets=PARITY)
    unet, head = loaded.spec.encoders["unet"], loaded.spec.heads["classifier"]
    image = loaded.spec.modalities["x_t"].height
    torch.manual_seed(0)
    common = {"image_size": image, "in_channels": 3, "num_res_blocks": unet.depth, "use_scale_shift_norm": True,
              "resblock_updown": True}
    reference = UNetModel(
        model_channels=unet.width, out_channels=6, channel_mult=tuple(unet.mult), num_classes=unet.classes,
        attention_resolutions=tuple(2**i for i, a in enumerate(unet.attention) if a),
        num_head_channels=unet.head_dim, **common).eval()
    classifier = EncoderUNetModel(
        model_channels=head.width, out_channels=head.classes, channel_mult=tuple(head.mult), pool="attention",
        attention_resolutions=tuple(2**i for i, a in enumerate(head.attention) if a),
        num_head_channels=head.head_dim, **{**common, "num_res_blocks": head.depth}).eval()
    with torch.no_grad():  # the official code zero-initialises the output convs; lively weights expose misplacement
        for p in [*reference.parameters(), *classifier.parameters()]:
            p.add_(0.2 * torch.randn_like(p))
    model = api.build(loaded).eval()
    model.components["unet"].load_state_dict(GDR.adm_to_mmspec(reference), strict=True)
    model.components["classifier"].load_state_dict(GDR.adm_to_mmspec(classifier), strict=True)
    return model, reference, classifier


def test_guided_diffusion_weights_reproduce_unet_and_classifier(guided_parity):
    model, reference, classifier = guided_parity
    torch.manual_seed(1)
    x, t, y = torch.randn(2, 3, 8, 8), torch.tensor([3, 870]), torch.tensor([1, 4])  # B,3,8,8; B; B
    with torch.no_grad():
        got = dict(zip(model.output_names, model({"x_t": x, "timestep": t, "label": y}), strict=True))
        theirs = reference(x, t, y)  # B,6,8,8
        logits = classifier(x, t)  # B,5
        other = model({"x_t": x, "timestep": t, "label": (y + 1) % 5})[0]
    assert theirs.abs().max() > 0.5 and logits.abs().max() > 0.5
    ours = torch.cat([got["unet_eps"], got["unet_variance"]], 1)
    assert (ours - theirs).abs().max().item() <= PARITY_ATOL
    assert (got["classifier"] - logits).abs().max().item() <= PARITY_ATOL
    assert (other - got["unet_eps"]).abs().max() > 1e-3, "the class label does not reach the prediction"


def _log_prob_gradient(classifier, labels: np.ndarray):
    """gradient(x, t) of sum log p(labels | x_t) under the eager classifier (the guide)."""
    y = torch.from_numpy(labels)

    def gradient(x: np.ndarray, t: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(x).requires_grad_(True)
        logits = classifier({"input": {"pixels": xt}, "timestep": {"t": torch.from_numpy(t)}})["logits"]
        log_p = torch.log_softmax(logits, -1)[torch.arange(len(y)), y].sum()
        return torch.autograd.grad(log_p, xt)[0].numpy()  # B,3,H,W

    return gradient


def test_classifier_guided_ddim_on_ort_equals_eager(tmp_path):
    loaded = api.load_spec(GUIDED, "tiny")
    torch.manual_seed(0)
    model = api.build(loaded).eval()
    with torch.no_grad():  # lively weights: the zero-ish default output layers would make guidance invisible
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    graph = {g.name: g for g in loaded.plan.graphs}["denoiser"]
    gm, _ = api.optimize(api.capture(api.graph_views(model)["denoiser"]))
    with torch.no_grad():
        api.export(gm, loaded, tmp_path / "denoiser.onnx", graph=graph)
    ort = OnnxGraph(tmp_path / "denoiser.onnx")
    (eps,) = [n for n in ort.output_names if "eps" in n]
    labels = np.array([2, 3], dtype=np.int64)
    noise = np.random.default_rng(0).standard_normal((2, 3, 8, 8), dtype=np.float32)  # B,3,8,8
    schedule = alphas_cumprod(betas("linear"))
    classifier = model.components["classifier"]
    gradient = _log_prob_gradient(classifier, labels)

    def sample(g, scale):
        den = Denoiser(g, sample="x_t", timestep="timestep", eps=eps, cond={"label": labels})
        return ddim_sample(classifier_guidance(den, gradient, schedule, scale), noise, schedule=schedule, steps=10,
                           eta=0.5, seed=2)

    def log_prob(x: np.ndarray) -> float:
        with torch.no_grad():
            logits = classifier({"input": {"pixels": torch.from_numpy(x)}, "timestep": {"t": torch.zeros(2).long()}})
        return torch.log_softmax(logits["logits"], -1)[torch.arange(2), torch.from_numpy(labels)].sum().item()

    on_ort = sample(ort, 10.0)
    assert np.isfinite(on_ort).all()
    np.testing.assert_allclose(on_ort, sample(api.eager_graph(model, "denoiser"), 10.0), atol=SAMPLE_ATOL, rtol=0)
    unguided = sample(ort, 0.0)
    assert np.abs(on_ort - unguided).max() > 10 * SAMPLE_ATOL, "guidance does not change the sample"
    assert log_prob(on_ort) > log_prob(unguided), "guidance does not raise log p(y | x)"


def test_guided_diffusion_fit_lowers_the_loss():
    loaded = api.load_spec(GUIDED, "tiny")
    history = Trainer(loaded, lr=3e-3).fit(synthetic_batch(loaded, 4, 0), 15, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < 0.9 * first, history.losses[::3]


def test_unclip_counts_equal_prior_transformer_and_clip_text():
    loaded = api.load_spec(UNCLIP)
    counts = api.param_counts(api.build(loaded, device="meta"))
    with torch.device("meta"):
        prior, text = GDR.unclip()
    assert counts["by_component"]["prior"] == _count(prior)
    assert counts["by_component"]["text_tower"] + counts["by_component"]["text_proj"] == _count(text)
    assert counts["total"] == reference_count("unclip")[0]


def test_unclip_prior_weights_reproduce_prior_transformer():
    from diffusers import PriorTransformer

    loaded = api.load_spec(UNCLIP, "tiny")
    spec = loaded.spec
    prior_cfg, length = spec.encoders["prior"], spec.modalities["text"].length
    dim = spec.modalities["x_t"].dim
    torch.manual_seed(0)
    reference = PriorTransformer(num_attention_heads=prior_cfg.heads, attention_head_dim=prior_cfg.head_dim,
                                 num_layers=prior_cfg.layers, embedding_dim=dim, num_embeddings=length).eval()
    with torch.no_grad():  # zero-initialised positions, query and statistics: lively values expose misplacement
        for p in reference.parameters():
            p.add_(0.2 * torch.randn_like(p))
    model = api.build(loaded).eval()
    model.components["prior"].load_state_dict(GDR.prior_to_mmspec(reference), strict=True)
    x, t = torch.randn(2, dim), torch.tensor([4, 730])  # B,D; B
    embed, states = torch.randn(2, dim), torch.randn(2, length, dim)  # B,D; B,S,D
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])  # B,S: padding shows
    inputs = {"input": {"values": x}, "timestep": {"t": t}, "text_embed": {"embedding": embed},
              "text_states": {"sequence": states}, "text_mask": {"ids": mask, "mask": mask}}
    with torch.no_grad():
        got = model.components["prior"](inputs)
        theirs = reference(x, t, embed, encoder_hidden_states=states, attention_mask=mask.bool())
        expected = theirs.predicted_image_embedding  # B,D
        padded = model.components["prior"]({**inputs, "text_mask": {"mask": torch.ones_like(mask)}})["x0"]
    assert expected.abs().max() > 0.1
    assert (got["x0"] - expected).abs().max().item() <= PARITY_ATOL
    torch.testing.assert_close(got["image_embedding"], reference.post_process_latents(expected))
    assert (padded[0] - got["x0"][0]).abs().max() > 1e-4, "the padding mask does not reach the prediction"
