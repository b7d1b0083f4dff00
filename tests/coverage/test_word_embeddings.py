"""Word vectors (NLP-01..05): the preprocessing functions against hand-checkable cases and the papers' definitions,
each objective's loss against a direct computation, parameter counts, training, and objective-free exports."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmspec.api import build, capture, fit, load_spec, param_counts
from mmspec.components.encoders.embedding_bag.subwords import char_ngrams, fnv1a32, subword_ids
from mmspec.components.objectives.word_vectors.loss import Glove, HierarchicalSoftmax, NegativeSampling
from mmspec.components.objectives.word_vectors.preprocess import (
    cooccurrence,
    huffman_paths,
    skipgram_pairs,
    unigram_noise,
)
from mmspec.errors import SpecError
from mmspec.graph.capture import example_call
from mmspec.graph.inputs import make_inputs, trace_sizes

SPECS = Path(__file__).resolve().parents[2] / "specs"
TOL = {"atol": 1e-6, "rtol": 1e-5}


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ---- fastText subwords -------------------------------------------------------------------------------------------

def test_fnv1a_matches_the_published_test_vectors():
    """FNV-1a 32-bit test vectors (Fowler/Noll/Vo): "", "a", "foobar"."""
    assert fnv1a32(b"", signed_bytes=False) == 0x811C9DC5
    assert fnv1a32(b"a", signed_bytes=False) == 0xE40C292C
    assert fnv1a32(b"foobar", signed_bytes=False) == 0xBF9CF968
    assert fnv1a32(b"foobar") == 0xBF9CF968  # ASCII: fastText's signed bytes change nothing


def test_fastText_sign_extends_bytes_above_0x7f():
    one_step = ((0x811C9DC5 ^ 0xFFFFFFE9) * 16777619) % 2**32  # the byte 0xe9 read as the signed char -23
    assert fnv1a32(b"\xe9") == one_step != fnv1a32(b"\xe9", signed_bytes=False)


def test_char_ngrams_of_the_papers_example():
    """Bojanowski et al. section 3.2: the 3-grams of "where" are <wh, whe, her, ere, re>."""
    assert char_ngrams("where", 3, 3) == [b"<wh", b"whe", b"her", b"ere", b"re>"]
    assert len(char_ngrams("where")) == 5 + 4 + 3 + 2  # n = 3..6 of the 7 characters "<where>"
    assert char_ngrams("é", 3, 6) == ["<é>".encode()]  # a character is a code point, not a byte


def test_subword_ids_are_the_word_then_hashed_buckets():
    ids = subword_ids("where", 7, nwords=30, buckets=40)
    assert ids[0] == 7 and len(ids) == 15
    assert ids[1:] == [30 + fnv1a32(g) % 40 for g in char_ngrams("where")]
    assert subword_ids("where", None, nwords=30, buckets=40) == ids[1:]


def test_fasttext_word_vector_is_the_mean_of_its_subword_rows():
    loaded = load_spec(SPECS / "fasttext.yaml", "tiny")
    model = build(loaded).eval()
    ids = subword_ids("where", 3, nwords=loaded.spec.objectives["loss"].vocab, buckets=40)
    table = model.components["fasttext"].table.weight
    assert table.shape[0] == 70  # 30 words + 40 buckets
    inputs = {"subwords": torch.tensor([ids]), "subwords_mask": torch.ones(1, len(ids), dtype=torch.int64)}
    with torch.no_grad():
        (vector,) = model(inputs)
    torch.testing.assert_close(vector[0], table[ids].mean(0), **TOL)


# ---- bag of words and embedding bags -----------------------------------------------------------------------------

def test_bag_of_words_equals_summed_one_hot_vectors_and_the_linear_reference():
    loaded = load_spec(SPECS / "bow.yaml", "tiny")
    model = build(loaded).eval()
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=3)
    ids, mask = inputs["text"], inputs["text_mask"]
    assert not mask.all()  # padding is present and must not count
    with torch.no_grad():
        counts = model.node_values(inputs)["bow"]["counts"]
        (logits,) = model(inputs)
    expected = (F.one_hot(ids, 40) * mask[..., None]).sum(1).float()  # B,V
    assert torch.equal(counts, expected)
    head = model.components["logits"].mlp[0]
    torch.testing.assert_close(logits, expected @ head.weight.T + head.bias, **TOL)
    with torch.device("meta"):
        reference = torch.nn.Linear(50000, 4)  # the canonical size: 50,000 words, 4 classes
    full = build(load_spec(SPECS / "bow.yaml"), device="meta")
    assert param_counts(full)["total"] == sum(p.numel() for p in reference.parameters())


def test_embedding_bag_mean_equals_torch_embedding_bag_over_the_unmasked_ids():
    loaded = load_spec(SPECS / "word2vec.yaml", "tiny_cbow")
    model = build(loaded).eval()
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=1)
    with torch.no_grad():
        pooled = model.node_values(inputs)["w2v"]["pooled"]
    table = model.components["w2v"].table.weight
    mask = inputs["words_mask"].bool()
    flat = inputs["words"][mask]
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), mask.sum(1).cumsum(0)[:-1]])
    reference = F.embedding_bag(flat, table, offsets, mode="mean")
    torch.testing.assert_close(pooled, reference, **TOL)


# ---- preprocessing -----------------------------------------------------------------------------------------------

def test_huffman_tree_of_a_hand_built_case():
    """counts 5,2,1,1: merge 1+1 (node 4: word 2 code 0, word 3 code 1), then word 1 and node 4 (2 each: word 1
    first, code 0), then node 5 (4) and word 0 (5); inner rows are node - 4, the root row 2."""
    points, codes, lengths = huffman_paths([5, 2, 1, 1])
    assert lengths.tolist() == [1, 2, 3, 3]
    assert points.tolist() == [[2, 0, 0], [2, 1, 0], [2, 1, 0], [2, 1, 0]]
    assert codes.tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_huffman_codes_are_prefix_free_complete_and_optimal():
    counts = np.random.default_rng(0).integers(1, 1000, size=37)
    points, codes, lengths = huffman_paths(counts)
    words = ["".join(map(str, codes[w, : lengths[w]])) for w in range(37)]
    assert not any(a != b and b.startswith(a) for a in words for b in words)
    assert sum(2.0 ** -len(c) for c in words) == pytest.approx(1.0, abs=1e-12)  # Kraft: a full binary tree
    merged, queue = 0, sorted(counts.tolist())  # optimal cost = sum of the merged weights
    while len(queue) > 1:
        a, b, *queue = queue
        merged += a + b
        queue = sorted([*queue, a + b])
    assert int((counts * lengths).sum()) == merged
    assert points[:, 0].tolist() == [35] * 37  # every path starts at the root, the last inner node


def test_cooccurrence_weights_pairs_by_inverse_distance():
    x = cooccurrence([0, 1, 2, 0], window=2)
    assert x == {(0, 1): 1.5, (1, 0): 1.5, (0, 2): 1.5, (2, 0): 1.5, (1, 2): 1.0, (2, 1): 1.0}
    assert cooccurrence([4, 4], window=10) == {(4, 4): 2.0}


def test_skipgram_pairs_and_unigram_noise():
    assert skipgram_pairs([7, 8, 9], window=1) == [(7, 8), (8, 7), (8, 9), (9, 8)]
    np.testing.assert_allclose(unigram_noise([1, 16]), [1 / 9, 8 / 9], rtol=1e-12)


# ---- objectives against direct computations ----------------------------------------------------------------------

def test_negative_sampling_loss_and_noise_draws():
    torch.manual_seed(0)
    module = NegativeSampling(6, 4, "pooled", negatives=3, power=0.75, counts="uniform")
    torch.nn.init.normal_(module.output.weight)
    h = torch.randn(2, 4)
    target = torch.tensor([1, 4])
    negatives = torch.tensor([[0, 1, 5], [2, 3, 3]])  # row 0 draws its own target once: skipped
    loss = module({"input": {"pooled": h}}, {"target": target, "negatives": negatives})
    u, hn = module.output.weight.detach().numpy(), h.numpy()
    rows = []
    for b, (t, negs) in enumerate(zip(target.tolist(), negatives.tolist(), strict=True)):
        value = -np.log(_sigmoid(hn[b] @ u[t]))
        value -= sum(np.log(_sigmoid(-hn[b] @ u[n])) for n in negs if n != t)
        rows.append(value)
    assert loss.item() == pytest.approx(float(np.mean(rows)), rel=1e-5)

    module.set_counts(np.array([1, 16, 0, 0, 0, 0]))
    g = torch.Generator().manual_seed(0)
    batch = type("B", (), {"size": 4000})()
    draws = module.corrupt(batch, g)["negatives"]  # 4000,3
    assert draws.shape == (4000, 3)
    share = (draws == 1).float().mean().item()
    assert share == pytest.approx(8 / 9, abs=0.01)  # 16^0.75 / (1 + 16^0.75)
    assert set(draws.unique().tolist()) == {0, 1}


def test_hierarchical_softmax_loss_and_that_it_is_a_distribution():
    torch.manual_seed(0)
    module = HierarchicalSoftmax(4, 3, "pooled", counts="uniform")
    module.set_counts([5, 2, 1, 1])
    torch.nn.init.normal_(module.inner.weight)
    h = torch.randn(1, 3)
    v, hn = module.inner.weight.detach().numpy(), h.numpy()[0]
    loss = module({"input": {"pooled": h}}, {"target": torch.tensor([3])})
    direct = -(np.log(_sigmoid(hn @ v[2])) + np.log(_sigmoid(-hn @ v[1])) + np.log(_sigmoid(-hn @ v[0])))
    assert loss.item() == pytest.approx(direct, rel=1e-5)  # word 3: root (code 0), node 5 (1), node 4 (1)
    probs = [math.exp(-module({"input": {"pooled": h}}, {"target": torch.tensor([w])}).item()) for w in range(4)]
    assert sum(probs) == pytest.approx(1.0, abs=1e-6)


def test_glove_loss_equals_the_weighted_least_squares_formula():
    torch.manual_seed(0)
    module = Glove(5, 4, "pooled", x_max=10.0, alpha=0.75)
    w = torch.randn(3, 4)
    i, j = torch.tensor([0, 2, 4]), torch.tensor([1, 2, 3])
    x = torch.tensor([0.5, 10.0, 30.0])  # below, at and above x_max
    loss = module({"input": {"pooled": w}, "tokens": {"ids": i[:, None]}}, {"context": j, "count": x})
    wc, b, bc = (t.detach().numpy() for t in (module.context.weight, module.bias, module.context_bias))
    wn, xn = w.numpy(), x.numpy()
    f = np.array([(0.5 / 10.0) ** 0.75, 1.0, 1.0])
    diff = np.array([wn[r] @ wc[j[r]] + b[i[r]] + bc[j[r]] - np.log(xn[r]) for r in range(3)])
    assert loss.item() == pytest.approx(float(np.mean(f * diff**2)), rel=1e-5)


# ---- specs: sizes, training, exports -----------------------------------------------------------------------------

PAPER_CONFIGS = {  # the papers' configurations (words, dim): see each spec's reference.notes
    "word2vec": (3_000_000, 300),  # GoogleNews-vectors-negative300
    "fasttext": (2_000_000, 300),  # crawl-300d-2M-subword, K = 2e6 buckets
    "glove": (400_000, 300),  # 6B
}


@pytest.mark.parametrize(("spec", "variant", "formula"), [
    ("word2vec", None, lambda v, d: 2 * v * d),  # input + output vectors
    ("word2vec", "hs", lambda v, d: v * d + (v - 1) * d),  # input + Huffman inner nodes
    ("fasttext", None, lambda v, d: (v + 2_000_000) * d + v * d),  # words + buckets, output vectors
    ("glove", None, lambda v, d: 2 * v * (d + 1)),  # W, W~, b, b~
])
def test_canonical_counts_follow_the_papers_configuration(spec, variant, formula):
    counts = param_counts(build(load_spec(SPECS / f"{spec}.yaml", variant), device="meta"))
    assert counts["total"] == formula(*PAPER_CONFIGS[spec])


@pytest.mark.parametrize(("spec", "variant"), [
    ("word2vec", "tiny"), ("word2vec", "tiny_cbow"), ("word2vec", "tiny_hs"), ("fasttext", "tiny"),
    ("glove", "tiny"), ("bow", "tiny"),
])
def test_fit_lowers_the_loss(spec, variant):
    history = fit(SPECS / f"{spec}.yaml", steps=40, variant=variant, lr=0.05)
    losses = history["losses"]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0], losses[::8]


@pytest.mark.parametrize(("spec", "variant"), [("word2vec", "tiny_hs"), ("fasttext", "tiny"), ("glove", "tiny")])
def test_exported_graph_is_the_lookup_alone(spec, variant):
    loaded = load_spec(SPECS / f"{spec}.yaml", variant)
    model = build(loaded).eval()
    gm = capture(model)
    names = [n for n, _ in gm.named_parameters()]
    encoder = next(iter(loaded.spec.encoders))
    assert names == [f"components.{encoder}.table.weight"]
    assert not any(n.startswith("objectives") for n, _ in gm.named_buffers())
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=2)
    with torch.no_grad():
        torch.testing.assert_close(example_call(gm, inputs)[0], model(inputs)[0], atol=0, rtol=0)


@pytest.mark.parametrize(("spec", "sets", "where", "message"), [
    ("glove", ["modalities.word.length=2"], "objectives.loss", "a tokens modality of length 1"),
    ("glove", ["objectives.loss.input=word"], "objectives.loss", "needs float vectors"),
    ("word2vec", ["objectives.loss.input=words"], "objectives.loss", "needs float vectors"),
    ("word2vec", ["modalities.words={type: vector, dim: 4}"], "encoders.w2v", "is not a tokens modality"),
])
def test_shape_rules_are_located(spec, sets, where, message):
    with pytest.raises(SpecError) as info:
        load_spec(SPECS / f"{spec}.yaml", "tiny", sets)
    text = str(info.value)
    assert re.match(rf"(\S+{spec}\.yaml|--set #1):\d+:\d+: error\[check\]: {where}: ", text), text
    assert message in text, text
