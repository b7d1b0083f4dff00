"""Language and alignment objectives against hand-computed values (math on the numbers, not the module)."""

from __future__ import annotations

import math

import pytest
import torch

from mmspec.blocks.masking import bert_mask, t5_corrupt, t5_noise_mask
from mmspec.components.objectives.language.loss import AutoregressiveLM, SpanCorruption
from mmspec.components.objectives.runtime import Batch
from mmspec.components.objectives.supervised.loss import Alignment, CrossEntropyLoss, MaskedLM, MaskedRegionKL


def _log_softmax(row: list[float], k: int) -> float:
    return row[k] - math.log(sum(math.exp(v) for v in row))


def test_cross_entropy_with_label_smoothing():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, -1.0]])
    labels = torch.tensor([0, 2])
    eps = 0.1
    expected = 0.0
    for row, label in zip(logits.tolist(), labels.tolist(), strict=True):
        q = [eps / 3 + (1 - eps) * (k == label) for k in range(3)]
        expected += -sum(q[k] * _log_softmax(row, k) for k in range(3)) / 2
    loss = CrossEntropyLoss(eps)({"input": {"logits": logits}}, {"labels": labels})
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_bert_mask_80_10_10_never_pads():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 100, (400, 50), generator=g)
    valid = torch.ones_like(ids)
    valid[:, 40:] = 0
    out, labels = bert_mask(ids, valid, 0.15, mask_token=103, vocab=120, g=g)
    chosen = labels != -100
    assert not chosen[:, 40:].any() and torch.equal(out[:, 40:], ids[:, 40:])
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(out[~chosen], ids[~chosen])
    assert chosen[:, :40].float().mean().item() == pytest.approx(0.15, abs=0.01)
    n = chosen.sum().item()
    as_mask = (out[chosen] == 103).sum().item() / n
    kept = (out[chosen] == ids[chosen]).sum().item() / n
    assert as_mask == pytest.approx(0.8, abs=0.02)
    assert kept == pytest.approx(0.1 + 0.1 / 120, abs=0.02)  # kept, or a random id that happens to be the same


def test_masked_lm_is_ce_at_masked_positions_only():
    module = MaskedLM("text", "text_mask", 0.15, 3, 8, 0.1, 0.1)
    logits = torch.tensor([[[0.0, 1.0, 2.0], [1.0, 0.5, -1.0], [3.0, 0.0, 0.0]]])  # B=1,S=3,V=3
    labels = torch.tensor([[-100, 0, 2]])
    expected = -(_log_softmax([1.0, 0.5, -1.0], 0) + _log_softmax([3.0, 0.0, 0.0], 2)) / 2
    assert module({"input": {"logits": logits}}, {"labels": labels}).item() == pytest.approx(expected, abs=1e-6)


def test_masked_region_kl():
    logits = torch.tensor([[[0.0, math.log(3.0)], [5.0, -5.0]]])  # q0 = [1/4, 3/4]
    p = torch.tensor([[[0.5, 0.5], [0.0, 1.0]]])
    module = MaskedRegionKL("image", None, 0.15, 0.9)
    loss = module({"input": {"logits": logits}}, {"distribution": p, "masked": torch.tensor([[True, False]])})
    assert loss.item() == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3), abs=1e-6)


def test_masked_region_kl_corrupt_zeroes_chosen_regions():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, 30, 5) + 1  # no zero features before masking
    batch = Batch({"image": x, "image_mask": torch.ones(64, 30, dtype=torch.int64)}, {})
    derived = MaskedRegionKL("image", "image_mask", 0.5, 1.0).corrupt(batch, g)
    zeroed = (batch.inputs["image"] == 0).all(-1)
    assert torch.equal(zeroed, derived["masked"]) and derived["masked"].float().mean().item() == pytest.approx(
        0.5, abs=0.03
    )
    assert torch.equal(batch.inputs["image"][~zeroed], x[~zeroed])


@pytest.mark.parametrize("prob", [0.0, 1.0])
def test_alignment_swaps_rows_for_negatives(prob):
    feats = torch.arange(5.0).view(5, 1).expand(5, 3).clone()
    batch = Batch({"image": feats, "text": torch.zeros(5, 2, dtype=torch.int64)}, {})
    derived = Alignment(["image"], prob).corrupt(batch, torch.Generator().manual_seed(0))
    row_source = batch.inputs["image"][:, 0].long()
    if prob == 0.0:
        assert torch.equal(row_source, torch.arange(5)) and derived["labels"].tolist() == [1] * 5
    else:
        assert (row_source != torch.arange(5)).all() and derived["labels"].tolist() == [0] * 5


def test_autoregressive_lm_loss_mask_and_segment_weights():
    logits = torch.tensor([[[0.2, 1.0, -0.5], [1.5, 0.0, 0.3], [0.1, 0.1, 2.0], [0.0, 0.0, 0.0]]])  # B=1,S=4,V=3
    tokens = {
        "ids": torch.tensor([[0, 1, 2, 1]]),
        "mask": torch.ones(1, 4, dtype=torch.int64),
        "segments": torch.tensor([[0, 0, 1, 1]]),
    }
    loss_mask = torch.tensor([[1, 1, 0, 1]])
    module = AutoregressiveLM([0.25, 0.75], loss_mask=True)
    got = module({"input": {"logits": logits}, "tokens": tokens}, {"loss_mask": loss_mask})
    # targets at positions 1 (segment 0) and 3 (segment 1); position 2 is outside the loss mask
    expected = 0.25 * -_log_softmax([0.2, 1.0, -0.5], 1) + 0.75 * -_log_softmax([0.1, 0.1, 2.0], 1)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    plain = AutoregressiveLM(None, loss_mask=False)({"input": {"logits": logits}, "tokens": tokens}, {})
    expected_plain = (
        -(_log_softmax([0.2, 1.0, -0.5], 1) + _log_softmax([1.5, 0.0, 0.3], 2) + _log_softmax([0.1, 0.1, 2.0], 1)) / 3
    )
    assert plain.item() == pytest.approx(expected_plain, abs=1e-6)


def _smoothed(row: list[float], label: int, eps: float) -> float:
    """CE against (1 - eps) one-hot + eps uniform."""
    q = [eps / len(row) + (1 - eps) * (k == label) for k in range(len(row))]
    return -sum(q[k] * _log_softmax(row, k) for k in range(len(row)))


def test_autoregressive_lm_label_smoothing_skips_padding():
    """The Transformer's label smoothing (0.1) over the next tokens; the padded last position does not count."""
    logits = torch.tensor([[[0.2, 1.0, -0.5], [1.5, 0.0, 0.3], [0.1, 0.1, 2.0], [0.0, 0.0, 0.0]]])  # B=1,S=4,V=3
    tokens = {"ids": torch.tensor([[0, 1, 2, 0]]), "mask": torch.tensor([[1, 1, 1, 0]])}
    got = AutoregressiveLM(None, loss_mask=False, label_smoothing=0.1)({"input": {"logits": logits}, "tokens": tokens},
                                                                      {})
    expected = (_smoothed([0.2, 1.0, -0.5], 1, 0.1) + _smoothed([1.5, 0.0, 0.3], 2, 0.1)) / 2
    assert got.item() == pytest.approx(expected, abs=1e-6)
    assert expected != pytest.approx((_smoothed([0.2, 1.0, -0.5], 1, 0) + _smoothed([1.5, 0.0, 0.3], 2, 0)) / 2)


def test_autoregressive_lm_previous_direction():
    """A right-to-left model: logits at t predict token t-1; a padded target does not count."""
    logits = torch.tensor([[[0.2, 1.0, -0.5], [1.5, 0.0, 0.3], [0.1, 0.1, 2.0], [0.4, -1.0, 0.0]]])  # B=1,S=4,V=3
    tokens = {"ids": torch.tensor([[2, 1, 0, 1]]), "mask": torch.tensor([[0, 1, 1, 1]])}
    got = AutoregressiveLM(None, loss_mask=False, previous=True)({"input": {"logits": logits}, "tokens": tokens}, {})
    # position 1 -> the padded first token (no loss); 2 -> id 1; 3 -> id 0
    expected = -(_log_softmax([0.1, 0.1, 2.0], 1) + _log_softmax([0.4, -1.0, 0.0], 0)) / 2
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_t5_span_corruption_reproduces_the_paper_example():
    words = "Thank you for inviting me to your party last week .".split()
    ids = torch.arange(len(words))
    noise = torch.tensor([w in ("for", "inviting", "last") for w in words])
    source, target = t5_corrupt(ids, noise, first_sentinel=99)
    vocab = dict(enumerate(words)) | {99: "<X>", 98: "<Y>", 97: "<Z>"}
    assert [vocab[i] for i in source.tolist()] == "Thank you <X> me to your party <Y> week .".split()
    assert [vocab[i] for i in target.tolist()] == "<X> for inviting <Y> last <Z>".split()


def test_t5_noise_mask_has_the_requested_noise_and_spans():
    mask = t5_noise_mask(100, 0.15, 3.0, torch.Generator().manual_seed(3))
    runs = sum(1 for i in range(100) if mask[i] and (i == 0 or not mask[i - 1]))
    assert mask.sum().item() == 15 and runs == 5 and not mask[0]


def test_span_corruption_feeds_the_decoder_the_shifted_target():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 20, (3, 12), generator=g)
    batch = Batch(
        {
            "src": ids,
            "src_mask": torch.ones_like(ids),
            "dec": torch.zeros(3, 10, dtype=torch.int64),
            "dec_mask": torch.zeros(3, 10, dtype=torch.int64),
        },
        {},
    )
    module = SpanCorruption("src", "src_mask", "dec", "dec_mask", 0.25, 2.0, 31, 0, 0)
    labels = module.corrupt(batch, g)["labels"]
    for row in range(3):
        n = int((labels[row] != -100).sum())
        enc = batch.inputs["src"][row][batch.inputs["src_mask"][row].bool()]
        spans = int((enc >= 20).sum())  # sentinels 31, 30, ... (token ids are below 20)
        assert spans == 2 and n == 3 + spans and enc.numel() == 12 - 3 + spans  # 25 % of 12 tokens, mean span 2
        assert (enc[enc >= 20] == torch.tensor([31, 30])).all() and int((labels[row] >= 20).sum()) == spans
        assert batch.inputs["dec"][row, 0] == 0
        assert torch.equal(batch.inputs["dec"][row, 1:n], labels[row, : n - 1])
        assert int(batch.inputs["dec_mask"][row].sum()) == n
        # every original token is either kept in the encoder input or appears in the target
        kept = [t for t in enc.tolist() if t < 20]
        dropped = [t for t in labels[row, :n].tolist() if t < 20]
        assert sorted(kept + dropped) == sorted(ids[row].tolist())
    logits = torch.zeros(3, 10, 32)
    loss = module({"input": {"logits": logits}}, {"labels": labels})
    assert loss.item() == pytest.approx(math.log(32), abs=1e-5)
