"""The decoding loops of mmspec.runtime.search against numpy toy decoders whose answers the tests work out by hand
(argmax chains) or by brute force (every continuation of a tiny vocabulary)."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from mmspec.runtime import beam_search, greedy, sample


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return z - z.max() - np.log(np.exp(z - z.max()).sum())


class Bigram:
    """logits = table[last token]; the state is the last token of each row."""

    def __init__(self, table: np.ndarray):
        self.table = np.asarray(table, dtype=np.float32)  # V,V
        self.steps = 0

    def start(self, prompt):
        return self.table[prompt[:, -1]], prompt[:, -1]

    def step(self, tokens, state):
        assert tokens.shape == state.shape and tokens.dtype == np.int64
        self.steps += 1
        return self.table[tokens], tokens

    def reorder(self, state, index):
        return state[index]


class History:
    """logits depend on the whole history (last token and the sum of all tokens); the state is that history, so a
    loop that skips or botches `reorder`, or feeds the wrong token, gets other logits than `logits(history)`."""

    def __init__(self, vocab: int, seed: int, eos_bias: float = 0.0, eos_id: int | None = None):
        rng = np.random.default_rng(seed)
        self.last = rng.normal(size=(vocab, vocab)).astype(np.float32)  # V,V
        self.total = rng.normal(size=(vocab, vocab)).astype(np.float32)  # V,V
        if eos_id is not None:
            self.last[:, eos_id] += eos_bias
        self.vocab = vocab
        self.reorders: list[np.ndarray] = []

    def logits(self, history) -> np.ndarray:
        return self.last[history[-1]] + self.total[sum(history) % self.vocab]  # V

    def start(self, prompt):
        state = [tuple(int(x) for x in row) for row in prompt]
        return np.stack([self.logits(h) for h in state]), state

    def step(self, tokens, state):
        assert tokens.shape == (len(state),) and tokens.dtype == np.int64
        state = [h + (int(x),) for h, x in zip(state, tokens, strict=True)]
        return np.stack([self.logits(h) for h in state]), state

    def reorder(self, state, index):
        assert index.dtype == np.int64 and index.shape == (len(state),)
        self.reorders.append(index)
        return [state[i] for i in index]

    def score(self, prompt, new, length_penalty: float = 0.0) -> float:
        """sum log p(new | prompt) / len(new) ** length_penalty."""
        h, total = tuple(int(x) for x in prompt), 0.0
        for x in new:
            total += log_softmax(self.logits(h))[x]
            h += (int(x),)
        return total / len(new) ** length_penalty


def argmax_chain(decoder: History, prompt, n: int, eos_id: int | None = None) -> list[int]:
    h, out = tuple(int(x) for x in prompt), []
    for _ in range(n):
        out.append(int(np.argmax(decoder.logits(h))))
        h += (out[-1],)
        if out[-1] == eos_id:
            break
    return out


def exhaustive(decoder: History, prompt, n: int, eos_id: int | None, length_penalty: float) -> list[int]:
    """The best hypothesis over all of them: sequences that end at their first eos_id, or have n tokens."""
    hyps = [list(s) for m in range(1, n + 1) for s in itertools.product(range(decoder.vocab), repeat=m)
            if (eos_id is not None and s[-1] == eos_id and eos_id not in s[:-1]) or (m == n and eos_id not in s)]
    return max(hyps, key=lambda s: decoder.score(prompt, s, length_penalty))


def padded(rows: list[list[int]], prompt: np.ndarray, pad: int) -> np.ndarray:
    width = max(map(len, rows))
    return np.array([[*p, *r, *[pad] * (width - len(r))] for p, r in zip(prompt.tolist(), rows, strict=True)])


PROMPT = np.array([[1, 2, 0], [3, 3, 4]], dtype=np.int64)


def test_greedy_follows_the_argmax_chain():
    dec = History(vocab=7, seed=0)
    prompt = np.array([[1, 2, 0], [3, 3, 4], [6, 5, 5]])
    out = greedy(dec, prompt, 6)
    assert out.dtype == np.int64 and out.shape == (3, 9)
    assert out.tolist() == [[*p, *argmax_chain(dec, p, 6)] for p in prompt.tolist()]


def test_greedy_stops_a_row_at_eos_and_pads_it():
    # bigram: 0 -> 1 -> 3 (eos); 2 -> 2 -> 2 ...; 1 -> 3
    table = np.full((4, 4), -1.0)
    table[0, 1] = table[1, 3] = table[2, 2] = table[3, 0] = 1.0
    steps: list[int] = []
    out = greedy(Bigram(table), np.array([[2, 0], [0, 2]]), 4, eos_id=3, pad_id=9, progress=steps.append)
    assert out.tolist() == [[2, 0, 1, 3, 9, 9], [0, 2, 2, 2, 2, 2]]
    assert steps == [1, 2, 3, 4]
    out = greedy(Bigram(table), np.array([[2, 0], [3, 1]]), 5, eos_id=3)  # both rows finish: stop early
    assert out.tolist() == [[2, 0, 1, 3], [3, 1, 3, 3]]


def test_beam_search_with_one_beam_is_greedy():
    dec = History(vocab=6, seed=1, eos_bias=1.0, eos_id=5)
    assert np.array_equal(beam_search(dec, PROMPT, 5, beams=1), greedy(dec, PROMPT, 5))
    # with eos and no length normalization a single beam stops where greedy does
    out = beam_search(dec, PROMPT, 5, beams=1, eos_id=5, length_penalty=0.0, pad_id=7)
    assert np.array_equal(out, greedy(dec, PROMPT, 5, eos_id=5, pad_id=7))
    # an eos_id continuation ranked below the `beams` best is not a hypothesis (as transformers), though here
    # (1 2: log .27) it would beat the one kept (1 0 0: log .73 + log 1/3)
    table = np.array([[0.0, 0.0, 0.0], [1.0, -20.0, 0.0], [0.0, 0.0, 0.0]])
    prompt = np.array([[1]])
    assert greedy(Bigram(table), prompt, 2, eos_id=2).tolist() == [[1, 0, 0]]
    assert beam_search(Bigram(table), prompt, 2, beams=1, eos_id=2, length_penalty=0.0).tolist() == [[1, 0, 0]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_search_is_exhaustive_search_when_nothing_is_pruned(seed):
    # 5 tokens, 3 new, no eos: 25 beams keep every prefix of length 2, so the best of 125 is found
    dec = History(vocab=5, seed=seed)
    out = beam_search(dec, PROMPT, 3, beams=25)
    assert out.tolist() == [[*p, *exhaustive(dec, p, 3, None, 0.0)] for p in PROMPT.tolist()]
    assert any(not np.array_equal(i, np.arange(len(i))) for i in dec.reorders)  # beams were really reordered


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0, -1.0])
def test_beam_search_with_eos_is_exhaustive_search_when_nothing_is_pruned(length_penalty):
    dec = History(vocab=5, seed=3, eos_bias=1.5, eos_id=4)
    out = beam_search(dec, PROMPT, 3, beams=125, eos_id=4, length_penalty=length_penalty, pad_id=8)
    best = [exhaustive(dec, p, 3, 4, length_penalty) for p in PROMPT.tolist()]
    assert np.array_equal(out, padded(best, PROMPT, 8))


def test_beam_search_scores_at_least_greedy():
    """Not a theorem for every table (a pruned beam can lose greedy's path), but it holds for these seeds, and a
    beam search that ranks, reorders or keeps the wrong hypotheses does not."""
    for seed in range(10):
        dec = History(vocab=8, seed=seed)
        for p, b, g in zip(PROMPT, beam_search(dec, PROMPT, 4, beams=3), greedy(dec, PROMPT, 4), strict=True):
            assert dec.score(p, b[3:]) >= dec.score(p, g[3:]) - 1e-9


def test_beam_search_finds_the_garden_path_greedy_misses():
    # from 0: p(1) = .6, p(2) = .4; from 1: uniform; from 2: p(2) = .98. Greedy: 0 1 0 (.2); beams: 0 2 2 (.39)
    table = np.log(np.array([[1e-9, 0.6, 0.4], [1 / 3, 1 / 3, 1 / 3], [0.01, 0.01, 0.98]]))
    prompt = np.array([[0]])
    assert greedy(Bigram(table), prompt, 2).tolist() == [[0, 1, 0]]
    assert beam_search(Bigram(table), prompt, 2, beams=2).tolist() == [[0, 2, 2]]


def test_beam_search_stops_when_no_open_beam_can_win():
    table = np.zeros((4, 4))
    table[:, 3] = 12.0  # eos is almost certain everywhere
    dec = Bigram(table)
    steps: list[int] = []
    out = beam_search(dec, np.array([[0, 1], [2, 2]]), 6, beams=3, eos_id=3, progress=steps.append)
    assert out.tolist() == [[0, 1, 3], [2, 2, 3]]
    assert dec.steps == 0 and steps == [1]


def test_a_positive_length_penalty_waits_for_longer_hypotheses():
    # after 1: eos or 0 at .5 each, then 0 0 for sure. 1 2 scores log .5 / 1; 1 0 0 0 scores log .5 / 3 ** lp
    table = np.array([[20.0, -20.0, -20.0], [0.0, -20.0, 0.0], [0.0, 0.0, 0.0]])
    prompt = np.array([[1]])
    for length_penalty in (1.0, 2.0):
        assert beam_search(Bigram(table), prompt, 3, beams=2, eos_id=2, length_penalty=length_penalty).tolist() == [
            [1, 0, 0, 0]]
    assert beam_search(Bigram(table), prompt, 3, beams=2, eos_id=2, length_penalty=0.0).tolist() == [[1, 2]]


def test_sample_with_top_k_1_or_tiny_top_p_is_greedy():
    dec = History(vocab=9, seed=4)
    prompt = np.array([[1, 2, 0], [3, 3, 4], [8, 7, 6]])
    expected = greedy(dec, prompt, 6)
    assert np.array_equal(sample(dec, prompt, 6, top_k=1, seed=5), expected)
    assert np.array_equal(sample(dec, prompt, 6, top_p=1e-6, temperature=3.0, seed=6), expected)
    # two tokens at .5: the first (lowest id) already holds top_p = .5, so it is all that is kept
    tie = Bigram(np.array([[0.0, 0.0, -np.inf]] * 3))
    assert np.all(sample(tie, np.zeros((64, 1), dtype=np.int64), 3, top_p=0.5, seed=7) == 0)


def test_sample_seeds():
    flat = Bigram(np.zeros((50, 50)))
    prompt = np.zeros((4, 1), dtype=np.int64)
    a = sample(flat, prompt, 8, seed=1)
    assert np.array_equal(a, sample(flat, prompt, 8, seed=1))
    assert not np.array_equal(a, sample(flat, prompt, 8, seed=2))  # equal with probability 50 ** -32
    assert len(np.unique(a[:, 1:])) > 10  # the flat distribution is really sampled


def filtered_softmax(logits, temperature: float, top_k: int, top_p: float) -> np.ndarray:
    """The sampling distribution, worked out token by token (logits here have no ties)."""
    p = np.exp(log_softmax(np.asarray(logits) / temperature))
    ranked = sorted(range(len(p)), key=lambda i: -p[i])
    keep = ranked[:top_k] if top_k else ranked
    mass, kept = sum(p[i] for i in keep), []
    for i in keep:
        if sum(p[j] for j in kept) / mass >= top_p:
            break
        kept.append(i)
    q = np.zeros(len(p))
    q[kept] = p[kept] / p[kept].sum()
    return q


@pytest.mark.parametrize(("temperature", "top_k", "top_p", "kept"),
                         [(1.0, 0, 1.0, 6), (0.7, 4, 0.8, 2), (2.0, 3, 1.0, 3), (1.0, 0, 0.9, 4)])
def test_sample_frequencies_match_the_filtered_softmax(temperature, top_k, top_p, kept):
    """N = 20000 independent first tokens: each frequency has standard deviation sqrt(p (1 - p) / N) <= 0.0036,
    so 0.016 is over 4.4 deviations (a false failure is < 1e-4 per token, and the seed is fixed); a wrong
    temperature, order of filters or renormalization moves some probability by more than 0.03 here."""
    logits = np.array([2.0, 1.5, 1.0, 0.5, 0.0, -1.0])
    expected = filtered_softmax(logits, temperature, top_k, top_p)
    assert np.count_nonzero(expected) == kept  # the filters cut where the case says
    n = 20000
    out = sample(Bigram(np.tile(logits, (6, 1))), np.zeros((n, 1), dtype=np.int64), 1, temperature=temperature,
                 top_k=top_k, top_p=top_p, seed=11)
    freq = np.bincount(out[:, 1], minlength=6) / n
    assert np.all(freq[expected == 0] == 0)
    np.testing.assert_allclose(freq, expected, atol=0.016)


@pytest.mark.parametrize(("call", "match"), [
    (lambda d, p: beam_search(d, p, 3, beams=0), "beams"),
    (lambda d, p: sample(d, p, 3, top_p=0.0), "top_p"),
    (lambda d, p: sample(d, p, 3, top_p=1.5), "top_p"),
    (lambda d, p: sample(d, p, 3, top_k=-1), "top_k"),
    (lambda d, p: sample(d, p, 3, temperature=0.0), "temperature"),
    (lambda d, p: greedy(d, p[0], 3), "prompt"),
    (lambda d, p: greedy(d, p.astype(np.float32), 3), "prompt"),
    (lambda d, p: greedy(d, p[:, :0], 3), "prompt"),
    (lambda d, p: greedy(d, p, 0), "max_new_tokens"),
    (lambda d, p: greedy(d, p, 3, eos_id=-1), "eos_id"),
    (lambda d, p: greedy(d, p, 3, eos_id=10), "eos_id"),
])
def test_bad_arguments_raise_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(Bigram(np.zeros((5, 5))), PROMPT % 5)


def test_search_does_not_import_torch():
    code = "import mmspec.runtime.search, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
