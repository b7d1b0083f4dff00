"""Generative art (issue 12): GA-01 DeepDream and GA-02 neural style transfer. The specs are the frozen networks
(GoogLeNet, VGG-19 features); the optimisation of the pixels is examples/deepdream.py and
examples/style_transfer.py. Checked here: the counts and outputs against torchvision's definitions rebuilt in
tests/ga_references.py (same weights, random BatchNorm statistics), and that each procedure moves its objective."""

from __future__ import annotations

import runpy
from pathlib import Path

import ga_references as GA
import pytest
import torch
from references import reference_count

import mmspec

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["modalities.image.height=64", "modalities.image.width=64"]  # the canonical network on a smaller image


def _spec_model(name: str):
    loaded = mmspec.load_spec(ROOT / "specs" / f"{name}.yaml", sets=SMALL)
    torch.manual_seed(0)
    model = mmspec.build(loaded).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a misplaced norm shows
        for name_, buffer in model.named_buffers():
            if name_.endswith("running_mean"):
                buffer.copy_(torch.randn_like(buffer) * 0.1)
            elif name_.endswith("running_var"):
                buffer.copy_(torch.rand_like(buffer) + 0.5)
    return model


@pytest.mark.parametrize("name", ["style_transfer", "deepdream"])
def test_canonical_count_equals_torchvision(name):
    loaded = mmspec.load_spec(ROOT / "specs" / f"{name}.yaml")
    with torch.device("meta"):
        model = mmspec.build(loaded)
    assert sum(p.numel() for p in model.parameters()) == reference_count(name)[0]


def test_vgg19_features_equal_torchvision():
    model = _spec_model("style_transfer")
    reference = GA.VGG(pool=torch.nn.AvgPool2d).features.eval()  # Gatys' average pooling
    prefix = "components.vgg.body."
    reference.load_state_dict({k.removeprefix(prefix): v for k, v in model.state_dict().items()})
    image = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        got = dict(zip(model.output_names, model({"image": image}), strict=True))
        expected, x = {}, image
        conv = -1
        for layer in reference:
            x = layer(x)
            if isinstance(layer, torch.nn.ReLU):
                conv += 1
                expected[f"vgg_layer_{conv}"] = x
    assert set(got) == {f"vgg_layer_{i}" for i in (0, 2, 4, 8, 9, 12)}
    for name, value in got.items():
        torch.testing.assert_close(value, expected[name], atol=1e-5, rtol=1e-4)


def test_googlenet_equals_torchvision():
    model = _spec_model("deepdream")
    reference = GA.GoogLeNet().eval()
    state = {k.removeprefix("components.googlenet."): v for k, v in model.state_dict().items()
             if k.startswith("components.googlenet.")}
    state |= {"fc.weight": model.state_dict()["components.classes.mlp.0.weight"],
              "fc.bias": model.state_dict()["components.classes.mlp.0.bias"]}
    reference.load_state_dict(state)
    image = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        got = dict(zip(model.output_names, model({"image": image}), strict=True))
        logits, taps = reference(image)
    torch.testing.assert_close(got["classes"], logits, atol=1e-5, rtol=1e-4)
    for block in ("3b", "4c", "4d", "5b"):
        torch.testing.assert_close(got[f"googlenet_inception_{block}"], taps[block], atol=1e-5, rtol=1e-4)


def test_paper_variant_has_true_5x5_convs():
    loaded = mmspec.load_spec(ROOT / "specs" / "deepdream.yaml", variant="paper")
    with torch.device("meta"):
        model = mmspec.build(loaded)
    assert model.state_dict()["components.googlenet.inception4c.branch3.1.conv.weight"].shape[-1] == 5


def test_deepdream_ascent_raises_the_activation():
    dream = runpy.run_path(str(ROOT / "examples" / "deepdream.py"))["dream"]
    before, after, image = dream()
    assert after > 2 * before
    assert image.shape == (1, 3, 32, 32)


def test_style_transfer_lowers_its_loss():
    transfer = runpy.run_path(str(ROOT / "examples" / "style_transfer.py"))["transfer"]
    losses, _ = transfer(steps=30)
    assert losses[-1] < 0.5 * losses[0]


def test_networks_are_frozen():
    for name in ("style_transfer", "deepdream"):
        model = mmspec.build(mmspec.load_spec(ROOT / "specs" / f"{name}.yaml", variant="tiny"))
        assert mmspec.api.param_counts(model)["trainable"] == 0
