"""Torch-free (numpy) preprocessing of the word-vector objectives: the negative-sampling noise distribution,
the Huffman tree of hierarchical softmax, GloVe's co-occurrence counts, word2vec's training pairs, the
perceptual pseudo-sentences of Hill & Korhonen 2014 and the count-matrix SVD mixing of Bruni et al. 2014.

These are statistical procedures over a corpus or its counts, run once before training; they produce the
objectives' fixed buffers (noise, tree paths) or the rows of the training batches (pairs, counts).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Sequence

import numpy as np


def zipf_counts(vocab: int) -> np.ndarray:
    """Counts proportional to 1 / (rank + 1): a stand-in when no corpus counts are given. word2vec, fastText and
    gensim sort their vocabulary by descending count, so id order is rank order."""
    return 1.0 / np.arange(1, vocab + 1, dtype=np.float64)


def unigram_noise(counts: Sequence[float] | np.ndarray, power: float = 0.75) -> np.ndarray:
    """Negative-sampling distribution P(w) = count(w)^power / sum_v count(v)^power (Mikolov et al. 2013: 3/4)."""
    weights = np.asarray(counts, dtype=np.float64) ** power
    return weights / weights.sum()


def huffman_paths(counts: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Huffman tree of word2vec's hierarchical softmax over V >= 2 words with these counts.

    Leaves are words 0..V-1, inner nodes V..2V-2 in the order they are merged (the root last). Each merge takes
    the two nodes of smallest count (ties: the lower node number first); the first gets code 0, the second 1.
    Returns (points [V, L] int64, codes [V, L] int64, lengths [V] int64), root to leaf, padded with 0 to the
    deepest word's L: points are inner-node numbers minus V (rows of the inner-node table, the root V - 2),
    codes the branch taken at each of them.
    """
    counts = np.asarray(counts, dtype=np.float64)
    vocab = len(counts)
    if vocab < 2:
        raise ValueError("a Huffman tree needs at least 2 words")
    parent = np.zeros(2 * vocab - 1, dtype=np.int64)
    branch = np.zeros(2 * vocab - 1, dtype=np.int64)
    heap = [(float(c), i) for i, c in enumerate(counts)]
    heapq.heapify(heap)
    for node in range(vocab, 2 * vocab - 1):
        (c1, a), (c2, b) = heapq.heappop(heap), heapq.heappop(heap)
        parent[a], parent[b], branch[b] = node, node, 1
        heapq.heappush(heap, (c1 + c2, node))
    root = 2 * vocab - 2
    up_nodes, up_codes = [], []  # leaf to root: step t of every word at once
    node = np.arange(vocab)
    depth = np.zeros(vocab, dtype=np.int64)
    while (node != root).any():
        active = node != root
        up_codes.append(np.where(active, branch[node], 0))
        node = np.where(active, parent[node], node)
        up_nodes.append(np.where(active, node - vocab, 0))
        depth += active
    up_p, up_c = np.stack(up_nodes, 1), np.stack(up_codes, 1)  # V,L leaf to root
    back = depth[:, None] - 1 - np.arange(up_p.shape[1])[None]  # V,L: the step at each root-to-leaf position
    valid = back >= 0
    points = np.where(valid, np.take_along_axis(up_p, back.clip(0), 1), 0)
    codes = np.where(valid, np.take_along_axis(up_c, back.clip(0), 1), 0)
    return points, codes, depth


def cooccurrence(tokens: Sequence[int], window: int = 10) -> dict[tuple[int, int], float]:
    """GloVe's co-occurrence counts X_ij of a token sequence: every pair of tokens d <= `window` apart adds 1/d
    to X[i, j] and to X[j, i] (a symmetric window, Pennington et al. 2014 section 4.2)."""
    counts: dict[tuple[int, int], float] = defaultdict(float)
    for p, i in enumerate(tokens):
        for d in range(1, window + 1):
            if p + d >= len(tokens):
                break
            j = tokens[p + d]
            counts[i, j] += 1.0 / d
            counts[j, i] += 1.0 / d
    return dict(counts)


def skipgram_pairs(tokens: Sequence[int], window: int = 5) -> list[tuple[int, int]]:
    """(centre, context) rows of skip-gram training: every token with each token at most `window` away (the fixed
    window; word2vec shrinks it to a random b <= window per centre word and subsamples frequent words)."""
    return [(c, tokens[q]) for p, c in enumerate(tokens)
            for q in range(max(0, p - window), min(len(tokens), p + window + 1)) if q != p]


def pseudo_sentences(sentences: Sequence[Sequence[int]], features: dict[int, Sequence[int]], alpha: float,
                     rng: np.random.Generator | None = None) -> list[list[int]]:
    """Hill & Korhonen 2014's data-side fusion: the corpus with perceptual pseudo-sentences interleaved. After each
    sentence, every word of it that has perceptual features (`features[w]`: feature-word ids, repeated by their
    strength) adds, with probability `alpha`, the pseudo-sentence [w, *features[w]]; skip-gram then trains on
    the result like ordinary text (`skipgram_pairs` per sentence). alpha 0 leaves the corpus unchanged."""
    rng = rng or np.random.default_rng(0)
    out: list[list[int]] = []
    for sentence in sentences:
        out.append(list(sentence))
        for w in sentence:
            if w in features and rng.random() < alpha:
                out.append([w, *features[w]])
    return out


def local_mutual_information(counts: np.ndarray) -> np.ndarray:
    """Bruni et al. 2014's weighting of a count matrix [words, contexts]: n_wc * log(n_wc N / (n_w n_c)),
    negative values and empty cells set to 0."""
    counts = np.asarray(counts, dtype=np.float64)
    total, rows, cols = counts.sum(), counts.sum(1, keepdims=True), counts.sum(0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        lmi = counts * np.log(counts * total / (rows * cols))
    return np.where(counts > 0, np.maximum(lmi, 0.0), 0.0)


def _unit_rows(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms > 0, norms, 1.0)


def mixed_matrices(text: np.ndarray, visual: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Bruni et al. 2014's multimodal mixing: the row-normalised text [words, Ct] and visual [words, Cv]
    matrices are concatenated, reduced to their best rank-k approximation U_k S_k V_k^T (truncated SVD), and split
    back into the "mixed" text and visual matrices, in which each modality's columns are smoothed by the other."""
    joint = np.concatenate([_unit_rows(text), _unit_rows(visual)], axis=1)  # V,Ct+Cv
    u, s, vt = np.linalg.svd(joint, full_matrices=False)
    low = (u[:, :k] * s[:k]) @ vt[:k]  # V,Ct+Cv
    return low[:, : text.shape[1]], low[:, text.shape[1]:]


def feature_fusion(text: np.ndarray, visual: np.ndarray, alpha: float) -> np.ndarray:
    """Feature-level fusion: alpha * text (+) (1 - alpha) * visual, each row L2-normalised first [V, Ct+Cv]."""
    return np.concatenate([alpha * _unit_rows(text), (1 - alpha) * _unit_rows(visual)], axis=1)


def score_fusion(text: np.ndarray, visual: np.ndarray, alpha: float) -> np.ndarray:
    """Score-level fusion: the word-by-word similarities alpha * cos_text + (1 - alpha) * cos_visual [V, V]."""
    t, v = _unit_rows(text), _unit_rows(visual)
    return alpha * t @ t.T + (1 - alpha) * v @ v.T
