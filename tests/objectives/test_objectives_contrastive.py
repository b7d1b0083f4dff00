"""Contrastive and self-distillation objectives against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from mmspec.blocks.masking import span_mask, uniform_mask
from mmspec.blocks.schedules import momentum
from mmspec.components.objectives.contrastive.loss import BYOL, NTXent
from mmspec.components.objectives.contrastive.loss import Data2Vec as Data2VecModule
from mmspec.components.objectives.runtime import Batch
from mmspec.components.objectives.supervised.loss import SymmetricInfoNCE

VIEWS = {"names": ["image"], "image": True, "flip": False, "crop": 1.0, "brightness": 0.0, "noise": 0.0}


def _ce(row: list[float], k: int) -> float:
    return -(row[k] - math.log(sum(math.exp(v) for v in row)))


def test_symmetric_infonce_and_clamp():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    scale = torch.nn.Parameter(torch.tensor(0.0))  # exp(0) = 1
    module = SymmetricInfoNCE("image", "text", scale, max_scale=100.0)
    loss = module({"input": {"image_embeds": a, "text_embeds": b}}, {})
    # a.b^T = [[1, .6], [0, .8]], b.a^T = [[1, 0], [.6, .8]]; labels are the diagonal
    per_a = (_ce([1.0, 0.6], 0) + _ce([0.0, 0.8], 1)) / 2
    per_b = (_ce([1.0, 0.0], 0) + _ce([0.6, 0.8], 1)) / 2
    assert loss.item() == pytest.approx((per_a + per_b) / 2, abs=1e-6)
    assert module.negatives == 1
    with torch.no_grad():
        scale.fill_(10.0)
    module.after_step(0, 1)
    assert scale.item() == pytest.approx(math.log(100.0), abs=1e-6)


def test_nt_xent():
    z = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])  # unit rows; pairs (0,1), (2,3)
    t = 0.5
    expected = 0.0
    for i in range(4):
        sims = [sum(x * y for x, y in zip(z[i].tolist(), z[j].tolist(), strict=True)) / t for j in range(4) if j != i]
        pos = i ^ 1
        expected += _ce(sims, pos if pos < i else pos - 1) / 4
    module = NTXent(t, **VIEWS)
    assert module({"input": {"embedding": 3 * z}}, {}).item() == pytest.approx(expected, abs=1e-6)
    assert module.negatives == 2


def test_views_pair_rows_and_copy_targets():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    batch = Batch({"image": x}, {"ce": {"labels": torch.tensor([4, 7])}})
    out = NTXent(0.5, **VIEWS).views(batch, torch.Generator().manual_seed(0))
    assert out.size == 4 and out.targets["ce"]["labels"].tolist() == [4, 4, 7, 7]
    assert torch.equal(out.inputs["image"][2], x[1]) and torch.equal(out.inputs["image"][3], x[1])
    flipped = NTXent(0.5, **{**VIEWS, "flip": True}).views(batch, torch.Generator().manual_seed(0))
    for row in range(4):
        assert torch.equal(flipped.inputs["image"][row], x[row // 2]) or torch.equal(
            flipped.inputs["image"][row], x[row // 2].flip(-1)
        )


@pytest.mark.parametrize("symmetric", [True, False])
def test_byol_normalized_mse(symmetric):
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    # row 0 predicts the teacher's row 1 (cos 1/sqrt 2), row 1 the teacher's row 0 (cos 0)
    loss = BYOL(symmetric, **VIEWS)({"input": {"embedding": p}, "target": {"embedding": t}}, {})
    expected = (2 - math.sqrt(2)) + 2 if symmetric else 2 - math.sqrt(2)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def _d2v(**kw):
    args = dict(
        name="text",
        mask_name=None,
        mask_token=3,
        kind="span",
        prob=0.5,
        length=2,
        top_k=2,
        target_norm="none",
        loss="l2",
        beta=1.0,
    )
    return Data2VecModule(**{**args, **kw})


def test_data2vec_regresses_the_mean_of_the_top_k_layers():
    layers = torch.tensor([[[[9.0, 9.0], [9.0, 9.0]], [[1.0, 2.0], [5.0, 5.0]], [[3.0, 6.0], [7.0, 7.0]]]])  # B,L,S,D
    pred = torch.tensor([[[0.0, 1.0], [0.0, 0.0]]])
    masked = torch.tensor([[True, False]])
    # top-2 mean at position 0: [2, 4]; squared errors [4, 9] averaged over D
    got = _d2v()({"input": {"embedding": pred}, "target": {"layers": layers}}, {"masked": masked})
    assert got.item() == pytest.approx(6.5, abs=1e-6)
    # parameter-free layer norm over D: [1, 2] and [3, 6] both become [-1, 1] (up to eps); smooth L1, beta 1
    ln = _d2v(target_norm="layer", loss="smooth_l1")
    got = ln({"input": {"embedding": pred}, "target": {"layers": layers}}, {"masked": masked})
    y = [-0.5 / math.sqrt(0.25 + 1e-5), 0.5 / math.sqrt(0.25 + 1e-5)]  # var of [1, 2] is 0.25, eps 1e-5
    errors = [abs(0.0 - y[0]), abs(1.0 - y[1])]
    smooth = [0.5 * e * e if e < 1 else e - 0.5 for e in errors]
    assert got.item() == pytest.approx(sum(smooth) / 2, abs=1e-5)


def test_data2vec_masks_tokens_and_floats():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 50, (4, 20), generator=g)
    batch = Batch({"text": ids}, {})
    masked = _d2v(prob=0.4, length=4).corrupt(batch, g)["masked"]
    assert torch.equal(batch.inputs["text"][masked], torch.full((int(masked.sum()),), 3))
    assert torch.equal(batch.inputs["text"][~masked], ids[~masked])
    feats = Batch({"text": torch.rand(4, 20, 3) + 1}, {})
    masked = _d2v(kind="uniform", prob=0.25).corrupt(feats, g)["masked"]
    assert masked.sum(1).tolist() == [5] * 4 and torch.equal((feats.inputs["text"] == 0).all(-1), masked)


def test_span_and_uniform_masks():
    mask = span_mask((6, 40), 0.3, 5, torch.Generator().manual_seed(2))
    for row in mask.tolist():  # round(0.3 * 40 / 5) = 2 spans of 5 (they may overlap)
        runs, n = [], 0
        for v in [*row, False]:
            if v:
                n += 1
            elif n:
                runs.append(n)
                n = 0
        assert 5 <= sum(runs) <= 10 and all(r >= 5 for r in runs)
    assert uniform_mask((3, 16), 0.75, torch.Generator().manual_seed(0)).sum(1).tolist() == [12, 12, 12]


def test_momentum_schedules():
    assert momentum(0.996, 1.0, "cosine", 0, 100) == pytest.approx(0.996)
    assert momentum(0.996, 1.0, "cosine", 50, 100) == pytest.approx(0.998)
    assert momentum(0.996, 1.0, "cosine", 100, 100) == pytest.approx(1.0)
    assert momentum(0.999, 0.9999, "linear", 5, 10) == pytest.approx(0.99945)
    assert momentum(0.999, 0.9999, "linear", 50, 10) == pytest.approx(0.9999)
    assert momentum(0.99, 0.5, "constant", 7, 10) == 0.99
