"""CIDEr-D (Vedantam et al. 2015, as coco-caption computes it), torch-free: the reward of self-critical training.

A caption is a sequence of hashable tokens (word strings or token ids). For n = 1..4, each caption becomes a
TF-IDF vector over its n-grams: term count x (log N - log max(1, df)), where df counts the documents (images)
whose reference set contains the n-gram and N is the number of documents. A candidate's score against one
reference is, per n, the cosine-like sum over the candidate's n-grams of min(cand, ref) * ref (the candidate's
weights clipped by the reference's) over the product of the two norms, times the Gaussian length penalty
exp(-(l_c - l_r)^2 / (2 sigma^2)), sigma 6; the score is 10 x the mean over n and over the references.
Lengths are counted as coco-caption's scorer does (its bigram count: words - 1, 0 for an empty caption); only
their difference matters.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

Caption = Sequence[Hashable]


def ngrams(caption: Caption, n: int = 4) -> Counter:
    """Counts of every k-gram of `caption`, k = 1..n, as tuples."""
    words = tuple(caption)
    return Counter(words[i : i + k] for k in range(1, n + 1) for i in range(len(words) - k + 1))


class CiderD:
    """CIDEr-D with document frequencies from a corpus: one reference set (a list of captions) per document.
    coco-caption takes them from the references of the evaluated images; M² from its training captions."""

    def __init__(self, corpus: Sequence[Sequence[Caption]], n: int = 4, sigma: float = 6.0):
        self.n, self.sigma = n, sigma
        self.df: Counter = Counter()
        for refs in corpus:
            self.df.update({g for ref in refs for g in ngrams(ref, n)})
        self.log_docs = math.log(float(len(corpus))) if corpus else 0.0

    def _vector(self, caption: Caption) -> tuple[list[dict], list[float], int]:
        """Per n: TF-IDF weights by n-gram and their norm; and the caption's length (its bigram count)."""
        vec: list[dict] = [{} for _ in range(self.n)]
        norm = [0.0] * self.n
        length = 0
        for gram, tf in ngrams(caption, self.n).items():
            k = len(gram) - 1
            w = float(tf) * (self.log_docs - math.log(max(1.0, float(self.df[gram]))))
            vec[k][gram] = w
            norm[k] += w * w
            length += tf if k == 1 else 0
        return vec, [math.sqrt(x) for x in norm], length

    def score(self, candidate: Caption, references: Sequence[Caption]) -> float:
        """CIDEr-D of one candidate against its image's references (0.0 without references)."""
        if not references:
            return 0.0
        vc, nc, lc = self._vector(candidate)
        total = [0.0] * self.n
        for ref in references:
            vr, nr, lr = self._vector(ref)
            penalty = math.exp(-float(lc - lr) ** 2 / (2 * self.sigma**2))
            for k in range(self.n):
                val = sum(min(w, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, w in vc[k].items())
                if nc[k] != 0 and nr[k] != 0:
                    val /= nc[k] * nr[k]
                total[k] += val * penalty
        return sum(total) / self.n / len(references) * 10.0


def cider_d(candidates: Sequence[Caption], references: Sequence[Sequence[Caption]]) -> list[float]:
    """Each candidate's CIDEr-D against its references, document frequencies over these reference sets
    (coco-caption's `Cider().compute_score`, which gives the mean of these and these)."""
    scorer = CiderD(references)
    return [scorer.score(c, r) for c, r in zip(candidates, references, strict=True)]
