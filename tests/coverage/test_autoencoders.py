"""VAE (T2I-07) and VQ-VAE (T2I-08): the vae_encoder / vq_encoder / vae_decoder components equal diffusers'
AutoencoderKL and VQModel in parameter count (Stable Diffusion's KL-f8, latent diffusion's VQ-f4, the tiny
variants; the EMA codebook counted as a buffer) and, through `--weights`, in the posterior moments, the latents,
the chosen codes and the decoded image; the KL latent is reparameterised while training only; the quantiser's
straight-through gradient and EMA codebook update; `fit` lowers each tiny variant's loss; the shape rules name
the field at fault. dVAE (T2I-09): the encoder equals transformers' FlavaImageCodebook (count, codes and
probabilities through `--weights`), the decoder the official count; codes are Gumbel-relaxed in training only.
"""

from __future__ import annotations

from pathlib import Path

import diffusion_references as DR
import pytest
import torch
from diffusers import AutoencoderKL, VQModel

from mmspec import api
from mmspec.errors import SpecError
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

VAE = Path(__file__).resolve().parents[2] / "specs" / "vae.yaml"
VQVAE = VAE.with_name("vqvae.yaml")
DVAE = VAE.with_name("dvae.yaml")
PARITY_ATOL = 1e-5  # docs/contracts.md: imported weights against the reference, fp32


def _kl_config(loaded) -> dict:
    image, enc = loaded.spec.modalities["image"], loaded.spec.encoders["vae"]
    n = len(enc.widths)
    return {"in_channels": image.channels, "out_channels": loaded.spec.heads["decoder"].channels,
            "block_out_channels": tuple(enc.widths), "layers_per_block": enc.depth, "latent_channels": enc.latent,
            "norm_num_groups": enc.groups, "down_block_types": ("DownEncoderBlock2D",) * n,
            "up_block_types": ("UpDecoderBlock2D",) * n, "sample_size": image.height}


@pytest.mark.parametrize(("variant", "reference"), [(None, DR.autoencoder_kl_f8), ("tiny", None)], ids=["f8", "tiny"])
def test_sizes_match_diffusers_autoencoderkl(variant, reference):
    loaded = api.load_spec(VAE, variant)
    with torch.device("meta"):
        model = reference() if reference else AutoencoderKL(**_kl_config(loaded))
        expected = sum(p.numel() for p in model.parameters())
    assert api.param_counts(api.build(loaded, device="meta"))["total"] == expected


def test_weights_reproduce_autoencoderkl(tmp_path):
    loaded = api.load_spec(VAE, "tiny")
    torch.manual_seed(0)
    reference = AutoencoderKL(**_kl_config(loaded))
    with torch.no_grad():  # perturbed so that a tensor loaded into the wrong place shows
        for p in reference.parameters():
            p.add_(0.1 * torch.randn_like(p))
    reference.eval().save_pretrained(tmp_path)
    model = api.build(loaded, weights=tmp_path / "diffusion_pytorch_model.safetensors").eval()
    assert not model.weights_report["new"] and not model.weights_report["ignored"]
    encoder, decoder = model.components["vae"], model.components["decoder"]
    image = torch.randn(2, 3, 8, 8)  # B,C,H,W
    z = torch.randn(2, 2, 4, 4)  # B,L,h,w
    with torch.no_grad():
        ours = encoder({"input": {"pixels": image}})
        posterior = reference.encode(image).latent_dist
        decoded, theirs = decoder({"input": {"latent": z}})["pixels"], reference.decode(z).sample  # B,3,8,8 each
    assert posterior.mean.abs().max() > 0.1 and theirs.abs().max() > 0.1
    for name, a, b in (("mean", ours["mean"], posterior.mean), ("log_var", ours["log_var"], posterior.logvar),
                       ("decoded", decoded, theirs)):
        diff = (a - b).abs().max().item()
        assert diff <= PARITY_ATOL, f"{name}: max abs diff {diff:.3g}"


def test_latent_is_reparameterised_in_training_only():
    model = api.build(api.load_spec(VAE, "tiny"))
    encoder = model.components["vae"]
    image = torch.randn(1, 3, 8, 8).expand(4000, -1, -1, -1)  # B,C,H,W: one image, many draws
    with torch.no_grad():
        out = encoder.train()({"input": {"pixels": image}})
        z = (out["latent"] - out["mean"]) / torch.exp(0.5 * out["log_var"])  # B,L,h,w: the standard normal draws
        assert abs(z.mean().item()) < 0.02 and abs(z.std().item() - 1.0) < 0.02
        out = encoder.eval()({"input": {"pixels": image[:2]}})
    assert torch.equal(out["latent"], out["mean"])


@pytest.mark.parametrize(
    ("spec", "lr", "ratio"),
    # dVAE: an L1 reconstruction of noise images through 4 tokens of 16 is floored near E|x| = 0.8 per pixel
    # (613 of the first 630), so it must fall by 2%
    [(VAE, 3e-3, 0.9), (VQVAE, 3e-3, 0.9), (DVAE, 1e-2, 0.98)],
    ids=["vae", "vqvae", "dvae"],
)
def test_fit_lowers_the_loss_of_the_tiny_variant(spec, lr, ratio):
    loaded = api.load_spec(spec, "tiny")
    history = Trainer(loaded, lr=lr).fit(synthetic_batch(loaded, 4, 0), 12, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < ratio * first, history.losses[::3]


@pytest.mark.parametrize(
    ("sets", "message", "node"),
    [
        (["encoders.vae.groups=3"], "do not divide the widths", "encoders.vae"),
        (["modalities.image.height=7"], "must divide by 2", "encoders.vae"),
        (["heads.decoder.groups=5"], "do not divide the widths", "heads.decoder"),
    ],
)
def test_shape_rules_are_located(sets, message, node):
    with pytest.raises(SpecError) as info:
        api.load_spec(VAE, "tiny", sets)
    text = str(info.value)
    assert message in text and node in text, text


def _vq_config(loaded) -> dict:
    image, enc = loaded.spec.modalities["image"], loaded.spec.encoders["vq"]
    n = len(enc.widths)
    return {"in_channels": image.channels, "out_channels": loaded.spec.heads["decoder"].channels,
            "block_out_channels": tuple(enc.widths), "layers_per_block": enc.depth, "latent_channels": enc.latent,
            "num_vq_embeddings": enc.codebook, "norm_num_groups": enc.groups,
            "down_block_types": ("DownEncoderBlock2D",) * n, "up_block_types": ("UpDecoderBlock2D",) * n,
            "sample_size": image.height}


@pytest.mark.parametrize(("variant", "reference"), [(None, DR.vq_f4), ("ema", DR.vq_f4), ("tiny", None)],
                         ids=["f4", "ema", "tiny"])
def test_vq_sizes_match_diffusers_vqmodel(variant, reference):
    """The EMA codebook is a buffer: the count is VQModel's less its K x D codebook parameter."""
    loaded = api.load_spec(VQVAE, variant)
    with torch.device("meta"):
        model = reference() if reference else VQModel(**_vq_config(loaded))
        expected = sum(p.numel() for p in model.parameters())
        if variant == "ema":
            expected -= model.quantize.embedding.weight.numel()
    assert api.param_counts(api.build(loaded, device="meta"))["total"] == expected


def test_weights_reproduce_vqmodel(tmp_path):
    loaded = api.load_spec(VQVAE, "tiny")
    torch.manual_seed(0)
    reference = VQModel(**_vq_config(loaded))
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.1 * torch.randn_like(p))
        reference.quantize.embedding.weight.normal_()  # spread codes, so that several are chosen
    reference.eval().save_pretrained(tmp_path)
    model = api.build(loaded, weights=tmp_path / "diffusion_pytorch_model.safetensors").eval()
    assert not model.weights_report["new"] and not model.weights_report["ignored"]
    image = torch.randn(2, 3, 8, 8)  # B,C,H,W
    with torch.no_grad():
        ours = model.components["vq"]({"input": {"pixels": image}})
        latent = reference.encode(image).latents  # B,3,4,4
        z_q, _, (_, _, codes) = reference.quantize(latent)
        decoded = model.components["decoder"]({"input": {"z": ours["quantized"]}})["pixels"]  # B,3,8,8
        theirs = reference.decode(latent).sample  # B,3,8,8
    assert torch.equal(ours["codes"], codes.view(2, -1)) and codes.unique().numel() > 2
    for name, a, b in (("latent", ours["latent"], latent), ("codebook_vectors", ours["codebook_vectors"], z_q),
                       ("decoded", decoded, theirs)):
        diff = (a - b).abs().max().item()
        assert diff <= PARITY_ATOL, f"{name}: max abs diff {diff:.3g}"


def test_straight_through_and_ema_codebook():
    """The decoder's gradient reaches z_e unchanged; an EMA step moves a chosen code towards its vectors' mean
    (with decay 0.5 and a single assigned vector: halfway, up to the Laplace smoothing) and leaves the rest."""
    from mmspec.blocks.quantize import VectorQuantizer

    torch.manual_seed(0)
    learned = VectorQuantizer(6, 2)
    z = torch.randn(1, 2, 1, 3, requires_grad=True)  # B,D,h,w
    _, straight, _ = learned(z)
    (straight * torch.arange(3.0)).sum().backward()
    torch.testing.assert_close(z.grad, torch.arange(3.0).expand(1, 2, 1, 3))
    ema = VectorQuantizer(4, 2, ema_decay=0.5).train()
    assert not list(ema.parameters())
    ema.embedding.weight.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0], [10.0, -10.0]]))
    ema.embedding.embed_sum.copy_(ema.embedding.weight)
    before = ema.embedding.weight.clone()
    _, _, codes = ema(torch.tensor([[[[1.0]], [[1.0]]]]))  # one vector (1, 1): nearest code 0
    assert codes.tolist() == [[0]]
    after = ema.embedding.weight
    torch.testing.assert_close(after[1:], before[1:], rtol=1e-4, atol=0)  # unused codes stay, up to the smoothing
    torch.testing.assert_close(after[0], torch.tensor([0.5, 0.5]), rtol=1e-4, atol=0)



def test_dvae_sizes():
    """Encoder = transformers FlavaImageCodebook on the meta device; the decoder's count is the official figure."""
    import transformers as tf

    counts = api.param_counts(api.build(api.load_spec(DVAE), device="meta"))["by_component"]
    with torch.device("meta"):
        codebook = tf.FlavaImageCodebook(tf.FlavaImageCodebookConfig())
    assert counts["dvae"] == sum(p.numel() for p in codebook.parameters())
    assert counts["decoder"] == DR.DALL_E_DECODER


def test_dvae_weights_reproduce_flava_image_codebook(tmp_path):
    import transformers as tf

    loaded = api.load_spec(DVAE, "tiny")
    enc = loaded.spec.encoders["dvae"]
    torch.manual_seed(0)
    reference = tf.FlavaImageCodebook(tf.FlavaImageCodebookConfig(hidden_size=enc.hidden, vocab_size=enc.vocab,
                                                                  num_blocks_per_group=enc.blocks))
    with torch.no_grad():  # fan-in scaled weights, zero biases, and output rows centred over their inputs, so that
        for name, p in reference.named_parameters():  # the post-ReLU features pick different codes at different places
            p.copy_(torch.randn_like(p) * (0.0 if name.endswith("bias") else (1.0 / p[0].numel()) ** 0.5))
        out = reference.blocks.output.conv.weight  # K,C,1,1
        out.sub_(out.mean(1, keepdim=True))
    reference.eval().save_pretrained(tmp_path)
    model = api.build(loaded, weights=tmp_path / "model.safetensors").eval()
    assert {n.split(".")[0] for n in model.weights_report["new"]} == {"decoder"}
    image = torch.randn(2, 3, 16, 16)  # B,C,H,W
    with torch.no_grad():
        ours = model.components["dvae"]({"input": {"pixels": image}})
        probs = reference.get_codebook_probs(image)  # B,K,h,w
        codes = reference.get_codebook_indices(image)  # B,h,w
    assert torch.equal(ours["codes"], codes.flatten(1)) and codes.unique().numel() > 1
    diff = (ours["logits"].softmax(-1) - probs.flatten(2).transpose(1, 2)).abs().max().item()
    assert diff <= PARITY_ATOL, f"max abs diff {diff:.3g}"
    assert torch.equal(ours["onehot"].argmax(1).flatten(1), ours["codes"])  # eval: one-hot of the argmax


def test_dvae_codes_are_relaxed_in_training_only():
    encoder = api.build(api.load_spec(DVAE, "tiny")).components["dvae"]
    image = torch.randn(2, 3, 16, 16)  # B,C,H,W
    with torch.no_grad():
        soft = encoder.train()({"input": {"pixels": image}})["onehot"]  # B,K,h,w
        hard = encoder.eval()({"input": {"pixels": image}})["onehot"]  # B,K,h,w
    torch.testing.assert_close(soft.sum(1), torch.ones(2, 2, 2))
    assert ((soft > 0) & (soft < 1)).any() and set(hard.unique().tolist()) == {0.0, 1.0}
