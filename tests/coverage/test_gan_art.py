"""Generative art with GANs (issue 12): GA-03 StyleGAN, GA-04 The Big Sleep and GA-05 StyleCLIP. StyleGAN's
mapping, synthesis and discriminator equal the counts of NVlabs/stylegan's networks (derived variable by variable in
tests/gan_art_references.py); mapping and synthesis export as two graphs that compose to eager on ONNX Runtime;
noise is drawn while training and fixed in exports; truncation pulls w to its running mean; `fit` alternates the
networks and lowers the discriminator's loss. The Big Sleep: The spec's BigGAN-deep generator equals
pytorch-pretrained-biggan's BigGAN in parameter count (BigGANConfig(), BigGAN-deep 128) and, with the reference's
weights mapped (tests/gan_art_references.py), in its images; its CLIP critic has CLIPModel's count; the generator
exports alone and equals eager on ONNX Runtime; the Big Sleep loop (examples/big_sleep.py) raises CLIP's score of
the prompt while both networks stay frozen. StyleCLIP: the mapper, the StyleGAN2 generator and CLIP equal the official
counts (latent_mappers.py, models/stylegan2/model.py, CLIPModel); the modulated conv equals the paper's
per-example modulated and demodulated weights; the edit graph (W+ -> image) equals eager on ONNX Runtime;
examples/styleclip.py lowers the CLIP + L2 loss moving only the mapper."""

from __future__ import annotations

import runpy
from pathlib import Path

import gan_art_references as GART
import numpy as np
import onnxruntime as ort
import torch
import transformers as tf
from pytorch_pretrained_biggan import BigGAN, BigGANConfig
from references import reference_count
from torch.nn import functional as F

from mmspec import api
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
BIG_SLEEP = ROOT / "specs" / "big_sleep.yaml"
ATOL, RTOL = 1e-5, 1e-4  # the same weights in both networks, fp32 on CPU


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_big_sleep_counts_equal_biggan_and_clip():
    model = api.build(api.load_spec(BIG_SLEEP), device="meta")
    with torch.device("meta"):
        biggan, clip = BigGAN(BigGANConfig()), tf.CLIPModel(tf.CLIPConfig())
    assert _count(model.components["generator"]) == _count(biggan)
    critic = sum(_count(model.components[n]) for n in ("vision", "text_tower", "image_proj", "text_proj", "clip"))
    assert critic == _count(clip)
    assert api.param_counts(model)["total"] == reference_count("big_sleep")[0]


def test_biggan_generator_equals_the_reference_with_its_weights():
    """BigGAN-deep with the reference's rules (first multiplier 16, halving, last 1, width >= 3) on 64 pixels."""
    sets = ["modalities.noise.dim=4", "heads.generator.embed_dim=4", "heads.generator.width=4",
            "heads.generator.channels=[16, 8, 4, 2, 1]", "heads.generator.attention=16", "heads.generator.rgb_conv=4"]
    model = api.build(api.load_spec(BIG_SLEEP, "tiny", sets=sets)).eval()
    reference = GART.randomize_biggan(GART.biggan(4, 4, [16, 8, 4, 2, 1], 16, 5))
    generator = model.components["generator"]
    generator.net.load_state_dict(GART.biggan_state(reference))
    torch.manual_seed(1)
    z = torch.randn(3, 4)  # B,nz
    y = torch.softmax(2 * torch.randn(3, 5), 1)  # B,K: a soft class mixture
    with torch.no_grad():
        ours = generator({"input": {"values": z}, "condition": {"values": y}})["image"]  # B,3,64,64
        theirs = reference(z, y, 1.0)
    assert ours.shape == (3, 3, 64, 64) and ours.std() > 0.05
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=RTOL)


def test_the_generator_exports_alone_and_equals_eager(tiny_export):
    out, _ = tiny_export(BIG_SLEEP)
    loaded = api.load_spec(BIG_SLEEP, "tiny")
    model = api.build(loaded).eval()
    session = ort.InferenceSession(str(out / "big_sleep-tiny.generate.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["noise", "classes"]
    g = torch.Generator().manual_seed(2)
    z, y = torch.randn(3, 4, generator=g), torch.rand(3, 5, generator=g)
    (image,) = session.run(None, {"noise": z.numpy(), "classes": y.numpy()})
    with torch.no_grad():
        eager = model.components["generator"]({"input": {"values": z}, "condition": {"values": y}})["image"]
    np.testing.assert_allclose(image, eager.numpy(), atol=1e-4, rtol=1e-3)
    critic = ort.InferenceSession(str(out / "big_sleep-tiny.critic.onnx"), providers=["CPUExecutionProvider"])
    assert {i.name for i in critic.get_inputs()} == {"image", "text"}


def test_the_big_sleep_loop_raises_clips_score_with_frozen_networks():
    loaded = api.load_spec(BIG_SLEEP, "tiny")
    model = api.build(loaded)
    assert not any(p.requires_grad for p in model.parameters())  # every network is frozen
    dream = runpy.run_path(str(ROOT / "examples" / "big_sleep.py"))["dream"]
    before, after, image = dream(steps=15)
    assert after > before + 0.01, (before, after)
    assert image.shape == (1, 3, 16, 16)


# GA-03 StyleGAN
STYLEGAN = ROOT / "specs" / "stylegan.yaml"


def test_stylegan_networks_equal_the_official_counts():
    model = api.build(api.load_spec(STYLEGAN), device="meta")
    official = GART.stylegan_official_counts()
    assert {name: _count(model.components[name]) for name in official} == official
    generator = official["mapping"] + official["synthesis"]
    assert round(generator / 1e6, 1) == 26.2  # the paper's Section 2: "a total of 26.2M trainable parameters"


def test_stylegan_exports_mapping_and_synthesis_that_compose_to_eager(tiny_export):
    out, _ = tiny_export(STYLEGAN)
    model = api.build(api.load_spec(STYLEGAN, "tiny")).eval()
    mapping = ort.InferenceSession(str(out / "stylegan-tiny.mapping.onnx"), providers=["CPUExecutionProvider"])
    synthesis = ort.InferenceSession(str(out / "stylegan-tiny.synthesis.onnx"),
                                     providers=["CPUExecutionProvider"])
    assert [i.name for i in mapping.get_inputs()] == ["noise"]
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(3))  # B,nz
    (w,) = mapping.run(None, {"noise": z.numpy()})
    (image,) = synthesis.run(None, {synthesis.get_inputs()[0].name: w})
    with torch.no_grad():
        w_eager = model.components["mapping"]({"input": {"values": z}})["w"]  # B,D
        eager = model.components["synthesis"]({"input": {"w": w_eager}})["image"]  # B,3,16,16
    np.testing.assert_allclose(w, w_eager.numpy(), atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(image, eager.numpy(), atol=1e-4, rtol=1e-3)


def test_stylegan_noise_is_fresh_while_training_and_fixed_in_eval_and_truncation_pulls_to_the_mean():
    loaded = api.load_spec(STYLEGAN, "tiny", sets=["heads.mapping.psi=0.5"])
    model = api.build(loaded)
    synthesis, mapping = model.components["synthesis"], model.components["mapping"]
    with torch.no_grad():
        for layer in synthesis.net.layers:
            layer.noise_strength.fill_(0.5)
        w = torch.randn(2, 8)  # B,D
        model.train()
        a, b = (synthesis({"input": {"w": w}})["image"] for _ in range(2))
        assert not torch.allclose(a, b)  # per-pixel noise drawn anew
        mapping({"input": {"values": torch.randn(64, 8)}})  # tracks w_avg
        model.eval()
        c, d = (synthesis({"input": {"w": w}})["image"] for _ in range(2))
        assert torch.equal(c, d)
        z = torch.randn(4, 8)
        truncated = mapping({"input": {"values": z}})["w"]
        mapping.psi = 1.0
        free = mapping({"input": {"values": z}})["w"]
    torch.testing.assert_close(truncated, mapping.w_avg + 0.5 * (free - mapping.w_avg))


def test_stylegan_fit_alternates_the_networks_and_lowers_the_discriminator_loss():
    loaded = api.load_spec(STYLEGAN, "tiny")
    trainer = Trainer(loaded, lr=3e-3)
    parts = trainer.model.components
    by_group = {tuple(sorted(grp.losses)): {id(p) for p in grp.params} for grp in trainer.groups}
    assert by_group[("d_loss", "r1")] == {id(p) for p in parts["discriminator"].parameters()}
    assert by_group[("g_loss",)] == {id(p) for n in ("mapping", "synthesis") for p in parts[n].parameters()}
    before = [p.detach().clone() for p in parts["synthesis"].parameters()]
    history = trainer.fit(synthetic_batch(loaded, 4, 0), 30, seed=0)
    d = history.objectives["d_loss"]
    assert sum(d[-3:]) / 3 < 0.97 * d[0], d[::5]
    assert any(not torch.equal(a, b) for a, b in zip(before, parts["synthesis"].parameters(), strict=True))


# GA-05 StyleCLIP
STYLECLIP = ROOT / "specs" / "styleclip.yaml"


def test_styleclip_counts_equal_the_official_mapper_generator_and_clip():
    model = api.build(api.load_spec(STYLECLIP), device="meta")
    generator = GART.stylegan2_rosinality_counts()
    assert _count(model.components["mapper"]) == GART.styleclip_mapper_count()
    assert {n: _count(model.components[n]) for n in generator} == generator
    with torch.device("meta"):
        clip = tf.CLIPModel(tf.CLIPConfig())
    critic = sum(_count(model.components[n]) for n in ("vision", "text_tower", "image_proj", "text_proj", "clip"))
    assert critic == _count(clip)
    assert api.param_counts(model)["total"] == reference_count("styleclip")[0]


def test_modulated_conv_equals_per_example_modulated_and_demodulated_weights():
    """StyleGAN2's Eq. 1-3: w'_ijk = s_i w_ijk, w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + eps), one conv per
    example; the module modulates the input and demodulates the output instead."""
    from mmspec.components.heads.stylegan.module import ModulatedConv

    torch.manual_seed(4)
    for up in (False, True):
        conv = ModulatedConv(3, 5, 3, 6, True, up)
        with torch.no_grad():
            conv.modulation.bias.normal_()
        x, w = torch.randn(2, 3, 4, 4), torch.randn(2, 6)  # B,C,H,W; B,D
        with torch.no_grad():
            ours = conv(x, w)
            style = conv.modulation(w)  # B,Cin
            expected = []
            for b in range(2):
                weight = conv.weight * conv.scale * style[b][None, :, None, None]  # Cout,Cin,3,3
                weight = weight * torch.rsqrt(weight.pow(2).sum((1, 2, 3)) + 1e-8)[:, None, None, None]
                if up:
                    y = F.conv_transpose2d(x[b : b + 1], weight.transpose(0, 1), stride=2)
                    y = F.conv2d(y, conv.blur, padding=1, groups=5)
                else:
                    y = F.conv2d(x[b : b + 1], weight, padding=1)
                expected.append(y)
        torch.testing.assert_close(ours, torch.cat(expected), atol=1e-5, rtol=1e-4)


def test_styleclip_edit_graph_equals_eager(tiny_export):
    out, _ = tiny_export(STYLECLIP)
    model = api.build(api.load_spec(STYLECLIP, "tiny")).eval()
    session = ort.InferenceSession(str(out / "styleclip-tiny.edit.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["wplus"]
    w = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(5))  # B,L,D
    (image,) = session.run(None, {"wplus": w.numpy()})
    with torch.no_grad():
        edited = model.components["mapper"]({"input": {"values": w}})["edited"]
        eager = model.components["synthesis"]({"input": {"edited": edited}})["image"]  # B,3,16,16
    assert eager.std() > 0.01
    np.testing.assert_allclose(image, eager.numpy(), atol=1e-4, rtol=1e-3)


def test_styleclip_mapper_training_lowers_the_loss_and_moves_only_the_mapper():
    train = runpy.run_path(str(ROOT / "examples" / "styleclip.py"))["train"]
    losses, model, before = train(steps=12)
    assert losses[-1] < losses[0] - 1e-3, losses
    assert any(not torch.equal(a, b) for a, b in zip(before, model.components["mapper"].parameters(), strict=True))
    frozen = [n for n in model.components if n != "mapper"]
    assert not any(p.requires_grad for n in frozen for p in model.components[n].parameters())
