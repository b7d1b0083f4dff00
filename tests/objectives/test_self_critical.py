"""Self-critical sequence training (`self_critical`): CIDEr-D equals coco-caption's scorer (pycocoevalcap), the
loss equals -mean((r - b) log p) computed by hand from the decoded captions (log p from the model run on each
caption alone, rewards from pycocoevalcap), decoding agrees with the runtime's greedy search, and bad configs are
located errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.cider.cider_scorer import CiderScorer

from mmspec import api
from mmspec.components.objectives.runtime import StepContext
from mmspec.components.objectives.self_critical.cider import CiderD, cider_d
from mmspec.errors import SpecError
from mmspec.runtime import greedy
from mmspec.runtime.decoding import FullDecoder
from mmspec.train.data import synthetic_batch

M2 = Path(__file__).resolve().parents[2] / "specs" / "m2_transformer.yaml"
TOL = 1e-9
NO_DROPOUT = ["encoders.encoder.dropout=0.0", "encoders.decoder.dropout=0.0"]

CORPUS = {  # image -> (candidate, references): repeats, a long and a short candidate, an empty one
    "a": ("a man riding a horse on a beach", ["a man rides a horse on the beach", "a person on a horse",
                                                "a man riding a brown horse along the sea shore"]),
    "b": ("a dog a dog a dog", ["a dog catches a frisbee", "a brown dog jumping in the grass"]),
    "c": ("two cats sleeping on a red couch together with a blanket and a pillow in the living room",
          ["two cats asleep on a couch", "a pair of cats sleeping on a red sofa", "cats on a couch",
           "two kittens napping", "two cats lie on a red couch"]),
    "d": ("", ["a plate of food", "food on a plate with a fork"]),
    "e": ("a plate", ["a plate of food on a table"]),
    "f": ("a horse on a beach", ["a horse on a beach"]),
}


def _coco(corpus: dict) -> np.ndarray:
    """pycocoevalcap's per-image CIDEr(-D) scores, in the corpus's order."""
    _, scores = Cider().compute_score({k: r for k, (_, r) in corpus.items()}, {k: [c] for k, (c, _) in corpus.items()})
    return np.asarray(scores)


def test_cider_d_equals_coco_caption():
    ours = cider_d([c.split() for c, _ in CORPUS.values()], [[r.split() for r in refs] for _, refs in CORPUS.values()])
    expected = _coco(CORPUS)
    assert np.abs(np.asarray(ours) - expected).max() <= TOL
    assert expected.min() == 0.0 and expected.max() > 1.0  # the empty candidate scores 0, a good one well above 1


def test_cider_d_on_token_ids_and_by_hand():
    """Token ids score as the words they stand for; a 4-word candidate equal to its only reference, whose n-grams
    no other document has, scores 10 (cosine 1 for every n, no length penalty); a corpus installed in CiderD gives
    the document frequencies, and a word every document has weighs 0."""
    vocab = {w: i for i, w in enumerate(sorted({w for c, refs in CORPUS.values() for s in [c, *refs]
                                                   for w in s.split()}))}
    ids = lambda s: [vocab[w] for w in s.split()]  # noqa: E731
    ours = cider_d([ids(c) for c, _ in CORPUS.values()], [[ids(r) for r in refs] for _, refs in CORPUS.values()])
    assert np.abs(np.asarray(ours) - _coco(CORPUS)).max() <= TOL
    unique = CiderD([[(1, 2, 3, 4)], [(4, 5)], [(6,)]])
    assert abs(unique.score((1, 2, 3, 4), [(1, 2, 3, 4)]) - 10.0) <= TOL
    assert abs(unique.score((1, 2, 3), [(1, 2, 3)]) - 10.0 * 3 / 4) <= TOL  # no 4-gram: n = 4 adds 0
    shared = CiderD([[(7, 1)], [(7, 2)], [(7, 3)]])  # word 7 is in every document: idf log(3) - log(3) = 0
    only_7 = shared.score((7,), [(7, 1)])
    assert only_7 == 0.0
    # (7, 1) against itself: unigram 1 and bigram (7, 1) have weight log 3; unigram 7 has 0: cos = 1 for n=1, 2
    assert abs(shared.score((7, 1), [(7, 1)]) - 10.0 * 2 / 4) <= TOL


def _setup(sets=()):
    loaded = api.load_spec(M2, "tiny_scst", [*NO_DROPOUT, *sets])
    torch.manual_seed(0)
    model = api.build(loaded).eval()
    batch = synthetic_batch(loaded, 3, 0)
    return loaded, model, batch


def _caption(seq, eos=3):
    out = []
    for w in seq[1:]:
        if w == eos:
            break
        out.append(w)
    return out


def _alone(model, batch, row: int, seq: list[int]) -> float:
    """log p of one decoded caption, the model run on that image and that caption (up to its eos) alone."""
    n = len(_caption(seq)) + (1 if 3 in seq[1:] else 0)  # the words, and the eos when there is one
    tokens = torch.tensor([seq[: n + 1]])
    inputs = {n: batch.inputs[n][row : row + 1] for n in ("regions", "regions_mask")} | {"caption": tokens}
    with torch.no_grad():
        logits = dict(zip(model.output_names, model(inputs), strict=True))["decoder"][0]  # T,V
    logp = torch.log_softmax(logits.double(), -1)
    return sum(logp[t, tokens[0, t + 1]].item() for t in range(n))


def _rewards(captions: list[list[int]], refs: list[list[list[int]]], k: int) -> np.ndarray:
    """pycocoevalcap's CIDEr-D of sample j of image i [B, k], one scorer per j (documents: the B images)."""
    out = np.zeros((len(refs), k))
    for j in range(k):
        scorer = CiderScorer(n=4, sigma=6.0)
        for i, r in enumerate(refs):
            scorer += (" ".join(map(str, captions[i * k + j])), [" ".join(map(str, x)) for x in r])
        out[:, j] = scorer.compute_score()[1]
    return out


def _references(targets) -> list[list[list[int]]]:
    """Each row's references: ids up to the first eos (3) or pad (1), empty ones dropped."""
    out = []
    for refs in targets.tolist():
        row = []
        for r in refs:
            words = []
            for w in r:
                if w in (1, 3):
                    break
                words.append(w)
            if words:
                row.append(words)
        out.append(row)
    return out


@pytest.mark.parametrize("sampling,baseline", [("beam", "mean"), ("multinomial", "greedy")])
def test_loss_equals_the_hand_computation(sampling, baseline):
    loaded, model, batch = _setup([f"objectives.scst.sampling={sampling}", f"objectives.scst.baseline={baseline}"])
    scst = model.objectives["scst"]
    k, b, cpu = 3, 3, torch.device("cpu")
    images = {n: batch.inputs[n] for n in ("regions", "regions_mask")}
    ctx = StepContext({}, batch.targets["scst"], batch.inputs, batch.inputs, model.node_values)
    torch.manual_seed(5)
    loss = scst.run(ctx)
    torch.manual_seed(5)  # the same draws again
    with torch.no_grad():
        if sampling == "beam":
            seqs = scst.beam(model.node_values, images, b, cpu)
        else:
            seqs = scst.decode(model.node_values, {n: x.repeat_interleave(k, 0) for n, x in images.items()}, b * k,
                               cpu, "multinomial")
        base_seqs = scst.decode(model.node_values, images, b, cpu, "greedy") if baseline == "greedy" else None
    seqs = seqs.tolist()
    refs = _references(batch.targets["scst"]["references"])
    rewards = _rewards([_caption(s) for s in seqs], refs, k)  # B,k
    if base_seqs is None:
        base = rewards.mean(1, keepdims=True)
    else:
        base = _rewards([_caption(s) for s in base_seqs.tolist()], refs, 1)  # B,1
    logp = np.array([_alone(model, batch, i // k, s) for i, s in enumerate(seqs)]).reshape(b, k)
    expected = -((rewards - base) * logp).mean()
    assert abs(loss.item() - expected) <= 1e-5 * max(1.0, abs(expected)), (loss.item(), expected)
    assert np.ptp(rewards) > 0 and expected != 0.0  # the case is not degenerate
    loss.backward()
    assert model.components["decoder"].out.weight.grad.abs().sum() > 0


def test_an_installed_corpus_gives_the_document_frequencies():
    """set_corpus replaces each batch's reference sets as CIDEr-D's documents: the batch's own sets give the same
    loss, a corpus where every reference word is everywhere (idf 0) makes every reward 0 and the loss 0."""
    loaded, model, batch = _setup()
    scst = model.objectives["scst"]
    ctx = StepContext({}, batch.targets["scst"], batch.inputs, batch.inputs, model.node_values)
    loss = scst.run(ctx)
    refs = scst.references(ctx)
    scst.set_corpus(refs)
    assert scst.run(ctx).item() == loss.item() != 0.0
    scst.set_corpus([[tuple(range(40))]])
    assert scst.run(ctx).item() == 0.0


def test_beams_are_the_best_first_and_one_beam_is_greedy():
    """Beams come out best first by their summed log-probability (recomputed by teacher forcing) and differ; with
    one beam, beam search is the greedy decode, which is the runtime's greedy search on the whole-sequence graph."""
    loaded, model, batch = _setup()
    scst = model.objectives["scst"]
    images = {n: batch.inputs[n] for n in ("regions", "regions_mask")}
    cpu = torch.device("cpu")
    with torch.no_grad():
        seqs = scst.beam(model.node_values, images, 3, cpu)  # B*k,L
        scores = scst.log_probs(model.node_values, {n: x.repeat_interleave(3, 0) for n, x in images.items()},
                                seqs).view(3, 3)
        assert (scores[:, :-1] >= scores[:, 1:] - 1e-6).all()
        assert len({tuple(s) for s in seqs.tolist()}) == 9
        ours = scst.decode(model.node_values, images, 3, cpu, "greedy")
        scst.samples = 1
        assert torch.equal(scst.beam(model.node_values, images, 3, cpu), ours)
    feeds = {n: x.numpy() for n, x in images.items()}
    start = np.full((3, 1), 2, np.int64)
    theirs = greedy(FullDecoder(api.eager_graph(model), "caption", "decoder", feeds), start, 7, eos_id=3)
    for row, ref in zip(ours.tolist(), theirs.tolist(), strict=True):
        n = len(_caption(row)) + 1
        assert row[1 : n + 1] == ref[-7:][:n]


HEAD = """\
mmspec: 1
name: probe
modalities:
  text: {type: tokens, vocab_size: 40, length: seq, max_length: 12}
  other: {type: tokens, vocab_size: 40, length: 4}
encoders:
  gpt: {type: transformer, input: text, embed: {type: tokens, positions: 12}, width: 8, layers: 1, heads: 2,
        ffn: 16, causal: true}
  bow: {type: transformer, input: other, embed: {type: tokens, positions: 4}, width: 8, layers: 1, heads: 2,
        ffn: 16}
heads:
  lm: {type: token_classifier, input: gpt.sequence, num_classes: 30}
  big: {type: token_classifier, input: gpt.sequence, num_classes: 50}
objectives:
"""


@pytest.mark.parametrize("entry,field,needle", [
    ("{type: self_critical, input: lm, tokens: text, samples: 1}", "samples", "baseline: mean needs samples >= 2"),
    ("{type: self_critical, input: lm, tokens: text, max_length: 20}", "max_length", "at most 12"),
    ("{type: self_critical, input: lm, tokens: text, eos: 35}", "eos", "eos 35 is not an id among the 30"),
    ("{type: self_critical, input: lm, tokens: other}", "tokens", "'lm' does not read 'other'"),
    ("{type: self_critical, input: lm, tokens: texts}", "tokens", "'texts', which is not a modality"),
    ("{type: self_critical, input: big, tokens: text}", "input", "50 classes, more than the vocab_size 40"),
    ("{type: self_critical, input: lm, tokens: text, samples: 31}", "samples", "31 beams need at least as many"),
])
def test_bad_configs_are_located(tmp_path, entry, field, needle):
    text = HEAD + f"  scst: {entry}\n"
    path = tmp_path / "probe.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as e:
        api.load_spec(path)
    (d,) = e.value.diagnostics
    line = text.splitlines()[d.line - 1]
    assert needle in d.message, d.message
    assert line.startswith("  scst:") and line[: d.col - 1].endswith(f"{field}: "), (d.line, d.col, line)


def test_sampling_must_be_known(tmp_path):
    path = tmp_path / "probe.yaml"
    path.write_text(HEAD + "  scst: {type: self_critical, input: lm, tokens: text, sampling: nucleus}\n")
    with pytest.raises(SpecError) as e:
        api.load_spec(path)
    assert [d.code for d in e.value.diagnostics] == ["value"] and "sampling" in e.value.diagnostics[0].message
    assert math.isfinite(e.value.diagnostics[0].line) and e.value.diagnostics[0].line == HEAD.count("\n") + 1
