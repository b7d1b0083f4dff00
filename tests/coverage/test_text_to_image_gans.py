"""Text-to-image GANs (T2I-01 DC-GAN, T2I-02 GAN-INT-CLS, T2I-06 DF-GAN): the specs' generators and discriminators
equal the official networks rebuilt in tests/gan_references.py, in parameter count (canonical sizes) and, with the
same weights, in their outputs (small configurations of the same shape rules); the exported graph is the generator
alone (noise [+ text] -> image) and equals eager on ONNX Runtime; the discriminator's update touches only the
discriminator and the generator's only the generator; DF-GAN's MA-GP is the official formula; `fit` on each tiny
variant lowers the discriminator's loss while the generator's parameters move."""

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
def test_the_export_is_the_generator_alone_and_equals_eager(name, tmp_path):
    api.compile(SPECS / f"{name}.yaml", out_dir=tmp_path, variant="tiny")
    loaded = api.load_spec(SPECS / f"{name}.yaml", "tiny")
    model = api.build(loaded).eval()
    session = ort.InferenceSession(str(tmp_path / f"{name}-tiny.generate.onnx"), providers=["CPUExecutionProvider"])
    cond = CONDITION[name]
    assert [i.name for i in session.get_inputs()] == ["noise", *([cond] if cond else [])]
    g = torch.Generator().manual_seed(1)
    feeds = {i.name: torch.randn(5, loaded.spec.modalities[i.name].dim, generator=g) for i in session.get_inputs()}
    (image,) = session.run(None, {k: v.numpy() for k, v in feeds.items()})
    with torch.no_grad():
        eager = model.components["generator"]({"input": {"values": feeds["noise"]},
                                               **({"condition": {"values": feeds[cond]}} if cond else {})})["image"]
    np.testing.assert_allclose(image, eager.numpy(), atol=1e-4, rtol=1e-3)
    graph = onnx.load(str(tmp_path / f"{name}-tiny.generate.onnx")).graph
    onnx_params = sum(int(np.prod(t.dims)) for t in graph.initializer)
    assert onnx_params <= _count(model.components["generator"]) < api.param_counts(model)["total"]


@pytest.mark.parametrize("name", REFERENCES)
def test_fit_alternates_the_two_networks_and_lowers_the_discriminator_loss(name):
    loaded = api.load_spec(SPECS / f"{name}.yaml", "tiny")
    trainer = Trainer(loaded, lr=3e-3)
    gen, disc = trainer.model.components["generator"], trainer.model.components["discriminator"]
    by_group = {tuple(grp.losses): {id(p) for p in grp.params} for grp in trainer.groups}
    d_losses = tuple(n for n in by_group if "d_loss" in n)[0]
    assert by_group[d_losses] == {id(p) for p in disc.parameters()}
    assert by_group[("g_loss",)] == {id(p) for p in gen.parameters()}
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
