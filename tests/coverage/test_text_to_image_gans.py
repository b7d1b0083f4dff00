"""Text-to-image GANs (T2I-01 DC-GAN, T2I-02 GAN-INT-CLS, T2I-03 StackGAN, T2I-06 DF-GAN): the specs' generators
and discriminators equal the official networks rebuilt in tests/gan_references.py, in parameter count (canonical
sizes) and, with the same weights, in their outputs (small configurations of the same shape rules); the exported
graph is the generator alone (noise [+ text] -> image) and equals eager on ONNX Runtime; the discriminator's update
touches only the discriminator and the generator's only the generator; DF-GAN's MA-GP is the official formula;
`fit` on each tiny variant lowers the discriminator's loss while the generator's parameters move. StackGAN: both
stages and both discriminators equal the official modules; conditioning augmentation samples while training and
exports its mean; each stage exports as its own graph."""

from __future__ import annotations

from pathlib import Path

import gan_references as GAN
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mmspec import api
from mmspec.components.objectives.generative.loss import R1Penalty
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPECS = Path(__file__).resolve().parents[2] / "specs"
ATOL, RTOL = 1e-5, 1e-4  # the same weights in both networks, fp32 on CPU
REFERENCES = {"dcgan": GAN.dcgan_example, "gan_int_cls": GAN.gan_int_cls, "dfgan": GAN.dfgan}
CONDITION = {"dcgan": None, "gan_int_cls": "text", "dfgan": "sentence"}
# Small configurations of each network: spec overrides, and the matching reference rebuild.
SMALL = {
    "dcgan": (["modalities.noise.dim=4", "heads.generator.widths=[16, 8, 4, 2]",
               "heads.discriminator.widths=[2, 4, 8, 16]"],
              lambda: GAN.dcgan_example(nz=4, ngf=2, ndf=2)),
    "gan_int_cls": (["modalities.noise.dim=4", "modalities.text.dim=6", "heads.generator.condition_dim=3",
                     "heads.generator.widths=[32, 16, 8, 4]", "heads.discriminator.widths=[2, 4, 8, 16]",
                     "heads.discriminator.condition_dim=3"],
                    lambda: (GAN.ReedGenerator(nz=4, txt=6, nt=3, ngf=4), GAN.ReedDiscriminator(txt=6, nt=3, ndf=2))),
    "dfgan": (["modalities.noise.dim=4", "modalities.sentence.dim=6", "modalities.image.height=32",
               "modalities.image.width=32", "heads.generator.widths=[16, 8, 4, 2]",
               "heads.discriminator.widths=[2, 4, 8, 16]", "heads.discriminator.joint=4"],
              lambda: (GAN.DFGANGenerator(nf=2, nz=4, cond=6, imsize=32), GAN.DFGANDiscriminator(nf=2, cond=6,
                                                                                                  imsize=32))),
}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", REFERENCES)
def test_canonical_sizes_equal_the_official_networks(name):
    model = api.build(api.load_spec(SPECS / f"{name}.yaml", budget=None), device="meta")
    with torch.device("meta"):
        g, d = REFERENCES[name]()
    assert _count(model.components["generator"]) == _count(g)
    assert _count(model.components["discriminator"]) == _count(d)


def _copy_in_order(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    """Random values (positive running variances) into `ours`, copied tensor by tensor into `theirs`, whose
    modules are declared in the same order; every shape must agree."""
    a, b = ours.state_dict(), theirs.state_dict()
    assert [tuple(t.shape) for t in a.values()] == [tuple(t.shape) for t in b.values()]
    with torch.no_grad():
        for (key, x), y in zip(a.items(), b.values(), strict=True):
            if x.dtype.is_floating_point:
                x.copy_(torch.rand_like(x) + 0.5 if key.endswith("running_var") else 0.3 * torch.randn_like(x))
            y.copy_(x)


@pytest.mark.parametrize("name", REFERENCES)
def test_outputs_equal_the_official_networks(name):
    sets, make = SMALL[name]
    loaded = api.load_spec(SPECS / f"{name}.yaml", sets=sets)
    model = api.build(loaded).eval()
    g, d = make()
    gen, disc = model.components["generator"], model.components["discriminator"]
    _copy_in_order(gen.net, g)
    _copy_in_order(disc.net, d)
    g.eval(), d.eval()
    torch.manual_seed(0)
    image = loaded.spec.modalities["image"]
    z = torch.randn(3, loaded.spec.modalities["noise"].dim)  # B,nz
    x = torch.randn(3, image.channels, image.height, image.width)  # B,C,H,W
    cond = CONDITION[name]
    c = torch.randn(3, loaded.spec.modalities[cond].dim) if cond else None  # B,C
    with torch.no_grad():
        ours = gen({"input": {"values": z}, **({"condition": {"values": c}} if cond else {})})["image"]  # B,C,H,W
        theirs = g(z) if c is None else g(z, c)
        assert ours.shape == (3, image.channels, image.height, image.width) and ours.abs().max() > 0.1
        torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=RTOL)
        conditioned = {"condition": {"values": c}} if cond else {}
        scores = disc({"real": {"pixels": x}, "fake": {"image": ours}, **conditioned})
        expected = {"real": d(x) if c is None else d(x, c), "fake": d(ours) if c is None else d(ours, c)}
        if c is not None:
            expected["mismatched"] = d(x, c.roll(1, 0))  # the real image with another example's condition
        assert scores.keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(scores[key], value, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("name", REFERENCES)
def test_the_export_is_the_generator_alone_and_equals_eager(name, tiny_export):
    out, _ = tiny_export(SPECS / f"{name}.yaml")
    loaded = api.load_spec(SPECS / f"{name}.yaml", "tiny")
    model = api.build(loaded).eval()
    session = ort.InferenceSession(str(out / f"{name}-tiny.generate.onnx"), providers=["CPUExecutionProvider"])
    cond = CONDITION[name]
    assert [i.name for i in session.get_inputs()] == ["noise", *([cond] if cond else [])]
    g = torch.Generator().manual_seed(1)
    feeds = {i.name: torch.randn(5, loaded.spec.modalities[i.name].dim, generator=g) for i in session.get_inputs()}
    (image,) = session.run(None, {k: v.numpy() for k, v in feeds.items()})
    with torch.no_grad():
        eager = model.components["generator"]({"input": {"values": feeds["noise"]},
                                               **({"condition": {"values": feeds[cond]}} if cond else {})})["image"]
    np.testing.assert_allclose(image, eager.numpy(), atol=1e-4, rtol=1e-3)
    graph = onnx.load(str(out / f"{name}-tiny.generate.onnx")).graph
    onnx_params = sum(int(np.prod(t.dims)) for t in graph.initializer)
    assert onnx_params <= _count(model.components["generator"]) < api.param_counts(model)["total"]


@pytest.mark.parametrize("name", REFERENCES)
def test_fit_alternates_the_two_networks_and_lowers_the_discriminator_loss(name):
    loaded = api.load_spec(SPECS / f"{name}.yaml", "tiny")
    trainer = Trainer(loaded, lr=3e-3)
    gen, disc = trainer.model.components["generator"], trainer.model.components["discriminator"]
    by_group = {tuple(grp.losses): {id(p) for p in grp.params} for grp in trainer.groups}
    d_losses = tuple(n for n in by_group if "d_loss" in n)[0]
    g_losses = tuple(n for n in by_group if "g_loss" in n)[0]  # with GAN-INT's g_int in gan_int_cls
    assert by_group[d_losses] == {id(p) for p in disc.parameters()}
    assert by_group[g_losses] == {id(p) for p in gen.parameters()}
    before = [p.detach().clone() for p in gen.parameters()]
    history = trainer.fit(synthetic_batch(loaded, 4, 0), 20, seed=0)
    d = history.objectives["d_loss"]
    assert sum(d[-3:]) / 3 < 0.95 * d[0], d[::4]
    assert any(not torch.equal(a, b) for a, b in zip(before, gen.parameters(), strict=True))


def test_matching_aware_gradient_penalty_is_the_official_formula():
    """DF-GAN's MA-GP: 2 * mean(||(d D / d image, d D / d sentence)||_2 ^ 6) on real pairs."""
    loaded = api.load_spec(SPECS / "dfgan.yaml", "tiny")
    model = api.build(loaded).train()
    disc = model.components["discriminator"]
    with torch.no_grad():
        for block in disc.net.blocks:
            block.gamma.fill_(0.7)  # the residual paths start closed; open them so that they count
    x = torch.randn(3, 3, 16, 16, requires_grad=True)  # B,C,H,W
    s = torch.randn(3, 6, requires_grad=True)  # B,C
    fake = torch.randn(3, 3, 16, 16)
    real = disc({"real": {"pixels": x}, "fake": {"image": fake}, "condition": {"values": s}})["real"]  # B,1
    penalty = R1Penalty(["image", "sentence"], gamma=4.0, power=6.0)
    ours = penalty.run(type("Ctx", (), {"args": {"input": {"real": real}}, "student": {"image": x, "sentence": s}}))
    gx, gs = torch.autograd.grad(real.sum(), (x, s), create_graph=True)
    norm = torch.cat([gx.flatten(1), gs.flatten(1)], 1).pow(2).sum(1).sqrt()  # B
    official = 2.0 * norm.pow(6).mean()
    assert official > 1e-6
    torch.testing.assert_close(ours, official, rtol=1e-4, atol=0)
    ours.backward()  # the penalty trains the discriminator (second-order gradients)
    assert all(p.grad is not None for p in disc.net.stem.parameters())


# StackGAN (T2I-03): two stages, each with its conditioning augmentation and discriminator.
STACK_SMALL = ["modalities.noise.dim=4", "modalities.text.dim=6", "heads.ca1.dim=3", "heads.ca2.dim=3",
               "heads.stage1.widths=[32, 16, 8, 4, 2]", "heads.d1.widths=[2, 4, 8, 16]",
               "heads.stage2.encoder=[4, 8, 16]", "heads.stage2.blocks=1", "heads.stage2.up=[8, 4, 2, 1]",
               "heads.d2.widths=[2, 4, 8, 16, 32, 64]", "heads.d2.tail=[32, 16]"]


def test_stackgan_stages_equal_the_official_modules():
    model = api.build(api.load_spec(SPECS / "stackgan.yaml", budget=None), device="meta")
    with torch.device("meta"):
        g1, d1, g2, d2 = GAN.stackgan()
    c = model.components
    assert _count(c["ca1"]) + _count(c["stage1"]) == _count(g1)
    assert _count(c["ca2"]) + _count(c["stage2"]) == _count(g2)
    assert (_count(c["d1"]), _count(c["d2"])) == (_count(d1), _count(d2))


def test_stackgan_outputs_equal_the_official_modules():
    loaded = api.load_spec(SPECS / "stackgan.yaml", sets=STACK_SMALL)
    model = api.build(loaded).eval()
    c = model.components
    g1, d1, g2, d2 = GAN.stackgan(gf=4, df=2, c=3, r=1)
    g1.ca_net = GAN.StackCA(6, 3)  # the small text width
    g1.fc[0] = torch.nn.Linear(4 + 3, 32 * 16, bias=False)
    g2.ca_net = GAN.StackCA(6, 3)
    for ours, theirs in (((c["ca1"].net, c["stage1"].net), g1), ((c["ca2"].net, c["stage2"].net), g2),
                         ((c["d1"].net,), d1), ((c["d2"].net,), d2)):
        _copy_in_order(torch.nn.ModuleList(ours), theirs)
        theirs.eval()
    torch.manual_seed(0)
    z, t = torch.randn(2, 4), torch.randn(2, 6)  # B,nz / B,T
    x64, x256 = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 256, 256)  # B,C,H,W
    with torch.no_grad():
        ca1, ca2 = c["ca1"]({"input": {"values": t}}), c["ca2"]({"input": {"values": t}})
        low = c["stage1"]({"input": {"values": z}, "condition": {"code": ca1["code"]}})["image"]  # B,3,64,64
        torch.testing.assert_close(low, g1(z, t), atol=ATOL, rtol=RTOL)
        high = c["stage2"]({"input": {"image": low}, "condition": {"code": ca2["code"]}})["image"]  # B,3,256,256
        assert high.shape == (2, 3, 256, 256) and high.abs().max() > 0.1
        torch.testing.assert_close(high, g2(low, t), atol=ATOL, rtol=RTOL)
        s1 = c["d1"]({"real": {"pixels": x64}, "fake": {"image": low}, "condition": {"mean": ca1["mean"]}})
        torch.testing.assert_close(s1["real"], d1(x64, ca1["mean"]), atol=ATOL, rtol=RTOL)
        s2 = c["d2"]({"real": {"pixels": x256}, "fake": {"image": high}, "condition": {"mean": ca2["mean"]}})
        cond, uncond = d2(x256, ca2["mean"])
        torch.testing.assert_close(s2["real"], cond, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(s2["real_uncond"], uncond, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(s2["mismatched"], d2(x256, ca2["mean"].roll(1, 0))[0], atol=ATOL, rtol=RTOL)


def test_conditioning_augmentation_samples_while_training_only():
    model = api.build(api.load_spec(SPECS / "stackgan.yaml", "tiny"))
    ca = model.components["ca1"]
    t = torch.randn(1, 6).expand(20000, -1)  # B,T: one caption, many draws
    with torch.no_grad():
        out = ca.train()({"input": {"values": t}})
        eps = (out["code"] - out["mean"]) / (0.5 * out["log_var"]).exp()  # B,c: the standard normal draws
        assert abs(eps.mean().item()) < 0.03 and abs(eps.std().item() - 1.0) < 0.03
        out = ca.eval()({"input": {"values": t[:2]}})
        assert torch.equal(out["code"], out["mean"])


def test_stackgan_exports_both_stages_and_fit_trains_them(tiny_export):
    out, _ = tiny_export(SPECS / "stackgan.yaml")
    inputs = {g: [i.name for i in ort.InferenceSession(str(out / f"stackgan-tiny.{g}.onnx"),
                                                       providers=["CPUExecutionProvider"]).get_inputs()]
              for g in ("stage1", "stage2")}
    assert inputs == {"stage1": ["noise", "text"], "stage2": ["stage1", "text"]}  # stage 2 takes stage 1's image
    loaded = api.load_spec(SPECS / "stackgan.yaml", "tiny")
    trainer = Trainer(loaded, lr=3e-3)
    assert [g.key for g in trainer.groups] == [("d1",), ("ca1", "stage1"), ("d2",), ("ca2", "stage2")]
    history = trainer.fit(synthetic_batch(loaded, 4, 0), 16, seed=0).objectives
    for name in ("d1_loss", "d2_loss", "kl1", "kl2"):
        assert sum(history[name][-3:]) / 3 < 0.95 * history[name][0], (name, history[name][::4])
