"""Survival, mixture-of-experts, reconstruction objectives and modality dropout against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmspec.components.objectives.auxiliary.loss import ModalityDropout, MoELoadBalancing, Reconstruction, patchify
from mmspec.components.objectives.runtime import Batch
from mmspec.components.objectives.survival.loss import CoxPartialLikelihood, DiscreteTimeSurvival


def _cox(eta, time, event, ties):
    return CoxPartialLikelihood(ties)(
        {"input": {"logits": torch.tensor(eta)[:, None]}}, {"time": torch.tensor(time), "event": torch.tensor(event)}
    ).item()


def test_cox_breslow():
    eta, e = [0.5, 1.0, -0.5], math.exp
    expected = -((0.5 - math.log(e(0.5) + e(1.0) + e(-0.5))) + (1.0 - math.log(e(1.0) + e(-0.5)))) / 2
    assert _cox(eta, [1.0, 2.0, 3.0], [1, 1, 0], "breslow") == pytest.approx(expected, abs=1e-6)


def test_cox_efron_and_breslow_with_ties():
    eta, e = [0.1, 0.2, 0.3, 0.4], math.exp
    time, event = [1.0, 1.0, 2.0, 3.0], [1, 1, 1, 0]
    s_all, s_tied = sum(e(v) for v in eta), e(0.1) + e(0.2)
    efron = -((0.1 + 0.2 - math.log(s_all) - math.log(s_all - 0.5 * s_tied)) + (0.3 - math.log(e(0.3) + e(0.4)))) / 3
    breslow = -((0.1 + 0.2 - 2 * math.log(s_all)) + (0.3 - math.log(e(0.3) + e(0.4)))) / 3
    assert _cox(eta, time, event, "efron") == pytest.approx(efron, abs=1e-6)
    assert _cox(eta, time, event, "breslow") == pytest.approx(breslow, abs=1e-6)


def test_discrete_time_survival_logistic_hazard():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])  # hazards 0.5, 0.75
    targets = {"interval": torch.tensor([1, 0]), "event": torch.tensor([1, 0])}
    # event in interval 1: survived interval 0, hazard in 1; censored in interval 0: survived interval 0
    expected = (-(math.log(0.5) + math.log(0.75)) - math.log(0.5)) / 2
    assert DiscreteTimeSurvival()({"input": {"logits": logits}}, targets).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("token1", "kind", "expected"),
    [
        ([0.0, math.log(3.0)], "switch", 2 * (0.5 * 0.5 + 0.5 * 0.5)),  # balanced: f = P = [.5, .5]
        ([math.log(3.0), 0.0], "switch", 2 * (1.0 * 0.75 + 0.0 * 0.25)),  # both tokens to expert 0
        ([0.0, math.log(3.0)], "importance", 0.0),
        ([math.log(3.0), 0.0], "importance", 0.25),  # importance [1.5, .5]: var .25 / mean^2 1
    ],
)
def test_moe_load_balancing(token1, kind, expected):
    logits = torch.tensor([[[math.log(3.0), 0.0], token1]])  # token 0: probabilities [.75, .25]
    got = MoELoadBalancing(kind, 1)({"input": {"logits": logits}}, {})
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_moe_top2_counts_both_experts():
    logits = torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]])  # top-2: {1, 2} and {0, 1}
    probs = torch.softmax(logits, -1).mean(0)
    f = torch.tensor([0.5, 1.0, 0.5])
    expected = 3 * (f * probs).sum().item()
    assert MoELoadBalancing("switch", 2)({"input": {"logits": logits}}, {}).item() == pytest.approx(expected, abs=1e-6)


def test_patchify_is_mae_layout():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)
    patches = patchify(x, 2)
    for i in range(2):
        for j in range(2):
            manual = x[0, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].permute(1, 2, 0).reshape(-1)
            assert torch.equal(patches[0, 2 * i + j], manual)


def test_masked_patch_reconstruction():
    x = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    target = x.numpy()
    masked = torch.tensor([[True, False, False, True]])
    pred = torch.zeros(1, 4, 8)
    patches = [target[0, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2] for i in (0, 1) for j in (0, 1)]
    mse = np.mean(np.concatenate([patches[0].ravel(), patches[3].ravel()]) ** 2)
    module = Reconstruction("mse", "image", 0.5, 2, normalize=False)
    got = module({"input": {"p": pred}, "target": {"pixels": x}}, {"masked": masked})
    assert got.item() == pytest.approx(float(mse), rel=1e-5)
    normed = [(p.transpose(1, 2, 0).ravel() - p.mean()) / math.sqrt(p.var(ddof=1) + 1e-6) for p in patches]
    expected = np.mean(np.abs(np.concatenate([normed[0], normed[3]])))
    l1 = Reconstruction("l1", "image", 0.5, 2, normalize=True)
    assert l1({"input": {"p": pred}, "target": {"pixels": x}}, {"masked": masked}).item() == pytest.approx(
        float(expected), rel=1e-5
    )


def test_reconstruction_masking_zeroes_the_masked_patches():
    x = torch.rand(3, 1, 8, 8) + 1
    batch = Batch({"image": x}, {})
    masked = Reconstruction("mse", "image", 0.5, 4, False).corrupt(batch, torch.Generator().manual_seed(0))["masked"]
    assert masked.sum(1).tolist() == [2, 2, 2]
    zero = patchify(batch.inputs["image"], 4).eq(0).all(-1)
    assert torch.equal(zero, masked)


def test_plain_l1_and_mse():
    pred, target = torch.tensor([[1.0, -1.0]]), torch.tensor([[0.0, 1.0]])
    args = {"input": {"x": pred}, "target": {"x": target}}
    assert Reconstruction("l1", None, 0.0, 1, False)(args, {}).item() == pytest.approx(1.5)
    assert Reconstruction("mse", None, 0.0, 1, False)(args, {}).item() == pytest.approx(2.5)


def test_modality_dropout_never_drops_everything():
    b = 500
    batch = Batch(
        {
            "a": torch.ones(b, 3),
            "b": torch.ones(b, 2, dtype=torch.int64) * 7,
            "b_mask": torch.ones(b, 2, dtype=torch.int64),
        },
        {},
    )
    module = ModalityDropout([{"a": 0.0}, {"b": 1, "b_mask": 0}], prob=0.9)
    dropped = module.corrupt(batch, torch.Generator().manual_seed(0))["dropped"]
    assert not dropped.all(1).any()
    assert torch.equal((batch.inputs["a"] == 0).all(1), dropped[:, 0])
    assert torch.equal((batch.inputs["b"] == 1).all(1), dropped[:, 1])
    assert torch.equal((batch.inputs["b_mask"] == 0).all(1), dropped[:, 1])
    assert dropped.float().mean().item() == pytest.approx(0.5, abs=0.05)  # 0.9 each, then one of a pair restored
