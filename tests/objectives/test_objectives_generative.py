"""Generative objectives against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmspec.blocks.schedules import betas
from mmspec.components.objectives.generative.loss import (
    VAEELBO,
    DiffusionEps,
    GANLoss,
    GumbelELBO,
    R1Penalty,
    VQLoss,
    gumbel_softmax,
    straight_through,
)
from mmspec.components.objectives.runtime import Batch, StepContext


def _sp(x: float) -> float:  # softplus
    return math.log1p(math.exp(x))


def test_vae_elbo():
    args = {
        "input": {"x": torch.tensor([[1.0, 2.0]])},
        "target": {"x": torch.zeros(1, 2)},
        "mean": {"m": torch.tensor([[1.0, 0.0]])},
        "log_var": {"v": torch.tensor([[0.0, math.log(2.0)]])},
    }
    kl = -0.5 * ((1 + 0 - 1 - 1) + (1 + math.log(2) - 0 - 2))
    assert VAEELBO("gaussian", 0.5)(args, {}).item() == pytest.approx(0.5 * 5 + 0.5 * kl, abs=1e-6)
    # Bernoulli with target 0: -log(1 - sigmoid(x)) = softplus(x)
    assert VAEELBO("bernoulli", 1.0)(args, {}).item() == pytest.approx(_sp(1) + _sp(2) + kl, abs=1e-6)
    assert VAEELBO("laplace", 0.0)(args, {}).item() == pytest.approx(3.0, abs=1e-6)


def test_vq_losses_and_their_gradients():
    z_e = torch.tensor([[1.0, 2.0]], requires_grad=True)
    z_q = torch.tensor([[0.0, 0.0]], requires_grad=True)
    loss = VQLoss(0.25)({"input": {"z": z_e}, "quantized": {"z": z_q}}, {})
    assert loss.item() == pytest.approx(2.5 + 0.25 * 2.5)
    loss.backward()
    assert z_q.grad.tolist() == [[-1.0, -2.0]]  # codebook term only: d mean((z_q - z_e)^2) / d z_q
    assert z_e.grad.tolist() == [[0.25, 0.5]]  # commitment term only


def test_straight_through():
    latent = torch.tensor([0.3, -1.2], requires_grad=True)
    quantized = torch.tensor([1.0, -1.0], requires_grad=True)
    out = straight_through(latent, quantized)
    assert out.tolist() == [1.0, -1.0]
    (out * torch.tensor([2.0, 3.0])).sum().backward()
    assert latent.grad.tolist() == [2.0, 3.0]
    assert quantized.grad is None  # the quantizer's own output gets no gradient through the estimator


def test_gumbel_elbo_kl_to_uniform_and_beta_schedule():
    logits = torch.tensor([[[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])  # B=1, 2 positions, K=4
    q = [math.exp(2) / (math.exp(2) + 3)] + [1 / (math.exp(2) + 3)] * 3
    kl = sum(p * math.log(p * 4) for p in q)  # the uniform position contributes 0
    module = GumbelELBO("gaussian", 0.0, 1.0, 2, "linear")
    args = {"input": {"logits": logits}, "reconstruction": {"x": torch.ones(1, 3)}, "target": {"x": torch.zeros(1, 3)}}
    assert module(args, {}).item() == pytest.approx(1.5, abs=1e-6)  # beta 0 at step 0: NLL only
    module.after_step(0, 10)
    assert module(args, {}).item() == pytest.approx(1.5 + 0.5 * kl, abs=1e-6)


def test_gumbel_softmax_samples_the_categorical():
    probs = torch.tensor([0.1, 0.2, 0.7])
    logits = probs.log().expand(40000, 3)
    sample = gumbel_softmax(logits, 1.0, torch.Generator().manual_seed(0), hard=True)
    assert torch.equal(sample.sum(-1), torch.ones(40000)) and set(sample.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(sample.mean(0), probs, atol=0.01, rtol=0)
    soft = gumbel_softmax(logits[:4], 0.5, torch.Generator().manual_seed(0))
    torch.testing.assert_close(soft.sum(-1), torch.ones(4), atol=1e-6, rtol=0)


REAL, FAKE, MISMATCHED = [[0.0], [1.0]], [[0.0], [-1.0]], [[2.0], [2.0]]


@pytest.mark.parametrize(
    ("role", "kind", "mismatched", "expected"),
    [
        ("discriminator", "non_saturating", False, (_sp(0) + _sp(-1)) / 2 + (_sp(0) + _sp(-1)) / 2),
        ("discriminator", "minimax", False, (_sp(0) + _sp(-1)) / 2 + (_sp(0) + _sp(-1)) / 2),
        ("discriminator", "hinge", False, 1.0),
        ("discriminator", "non_saturating", True, (_sp(0) + _sp(-1)) / 2 + ((_sp(0) + _sp(-1)) / 2 + _sp(2)) / 2),
        ("discriminator", "hinge", True, 0.5 + (0.5 + 3.0) / 2),
        ("generator", "non_saturating", False, (_sp(0) + _sp(1)) / 2),
        ("generator", "minimax", False, -(_sp(0) + _sp(-1)) / 2),
        ("generator", "hinge", False, 0.5),
    ],
)
def test_gan_losses(role, kind, mismatched, expected):
    args = {"fake": {"l": torch.tensor(FAKE)}}
    if role == "discriminator":
        args["real"] = {"l": torch.tensor(REAL)}
    if mismatched:
        args["mismatched"] = {"l": torch.tensor(MISMATCHED)}
    assert GANLoss(role, kind)(args, {}).item() == pytest.approx(expected, abs=1e-6)


def test_r1_penalty_of_a_linear_discriminator():
    d = torch.nn.Linear(3, 1)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    ctx = StepContext({"input": {"logits": d(x)}}, {}, {}, {"data": x})
    penalty = R1Penalty(["data"], gamma=2.0).run(ctx)
    assert penalty.item() == pytest.approx((d.weight**2).sum().item(), abs=1e-6)  # gamma/2 * ||w||^2
    penalty.backward()
    torch.testing.assert_close(d.weight.grad, 2 * d.weight.detach(), atol=1e-6, rtol=0)


def test_noise_schedules():
    linear = betas("linear", 1000)
    assert linear[0].item() == pytest.approx(1e-4) and linear[-1].item() == pytest.approx(0.02) and len(linear) == 1000
    scaled = betas("scaled_linear", 10, 0.01, 0.04)
    assert scaled[0].item() == pytest.approx(0.01) and scaled[-1].item() == pytest.approx(0.04)
    assert scaled[5].item() == pytest.approx((0.1 + 5 / 9 * 0.1) ** 2)
    cosine = betas("squaredcos_cap_v2", 100)
    abar = torch.cumprod(1 - cosine, 0).numpy()
    t = np.arange(1, 101) / 100
    closed = np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2 / np.cos(0.008 / 1.008 * np.pi / 2) ** 2
    np.testing.assert_allclose(abar[:90], closed[:90], rtol=1e-9, atol=1e-12)  # the last betas are capped at 0.999


def test_diffusion_noising_timesteps_and_condition_dropout():
    steps = 50
    x0 = torch.randn(6, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    ids = torch.randint(5, 9, (6, 5), generator=torch.Generator().manual_seed(2))
    batch = Batch({"x": x0, "t": torch.zeros(6, 1), "text": ids, "text_mask": torch.ones(6, 5, dtype=torch.int64)}, {})
    module = DiffusionEps("x", "t", "linear", steps, 1e-4, 0.02, {"text": 0, "text_mask": 0}, drop_prob=0.5)
    derived = module.corrupt(batch, torch.Generator().manual_seed(3))
    abar = np.cumprod(1 - np.linspace(1e-4, 0.02, steps))
    t, eps = derived["timestep"], derived["noise"]
    assert batch.inputs["t"].view(-1).tolist() == [float(v) for v in t.tolist()]
    for i in range(6):
        expected = math.sqrt(abar[t[i]]) * x0[i] + math.sqrt(1 - abar[t[i]]) * eps[i]
        torch.testing.assert_close(batch.inputs["x"][i], expected, atol=1e-5, rtol=1e-5)
    dropped = (batch.inputs["text"] == 0).all(1)
    assert 0 < int(dropped.sum()) < 6  # with 6 rows and p = 0.5 (this seed drops some, not all)
    assert torch.equal(batch.inputs["text"][~dropped], ids[~dropped])
    assert torch.equal(batch.inputs["text_mask"].sum(1) == 0, dropped)
    pred = torch.zeros_like(eps)
    assert module({"input": {"eps": pred}}, derived).item() == pytest.approx(eps.pow(2).mean().item(), abs=1e-6)


def test_diffusion_condition_dropout_rate():
    batch = Batch({"x": torch.zeros(4000, 2), "t": torch.zeros(4000, 1), "c": torch.ones(4000, 3)}, {})
    DiffusionEps("x", "t", "linear", 10, 1e-4, 0.02, {"c": 0.0}, drop_prob=0.2).corrupt(
        batch, torch.Generator().manual_seed(0)
    )
    assert (batch.inputs["c"] == 0).all(1).float().mean().item() == pytest.approx(0.2, abs=0.02)


def test_diffusion_scalar_timestep_must_cover_the_schedule(tmp_path):
    from mmspec.api import load_spec
    from mmspec.errors import SpecError

    spec = """\
mmspec: 1
name: probe
modalities:
  x0: {type: vector, dim: 4}
  t: {type: scalar, dtype: int64, high: HIGH}
encoders:
  t_embed: {type: scalar, input: t, dim: 8}
fusion:
  noised: {type: concat, inputs: [x0, t_embed]}
heads:
  eps: {type: mlp, input: noised.fused, dim: 4}
objectives:
  diffusion: {type: diffusion_eps_mse, input: eps, image: x0, timestep: t, schedule: {steps: 30}}
"""
    path = tmp_path / "probe.yaml"
    path.write_text(spec.replace("HIGH", "30"))
    assert load_spec(path).spec.objectives["diffusion"].timestep == "t"
    path.write_text(spec.replace("HIGH", "29"))
    with pytest.raises(SpecError) as e:
        load_spec(path)
    (d,) = e.value.diagnostics
    assert (d.code, d.line) == ("check", 13) and "give it low: 0, high >= 30" in d.message
