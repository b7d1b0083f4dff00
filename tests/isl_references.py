"""Installed references for the grounded word models of the survey's section 3.3 (ISL-01, 02, 04, 05, 07), and the
official SkipThought encoder under ISL-09's sentence vector.

The text side of Kiela & Bottou 2014, Lazaridou et al. 2015, Kottur et al. 2016 and Hill & Korhonen 2014 is
word2vec; `gensim.models.Word2Vec` allocates its tables from a vocabulary (`build_vocab_from_freq`, no corpus
needed): the input vectors `wv.vectors` [V, d] and, for negative sampling, the output table `syn1neg` [V, d].
What those papers add on top (Lazaridou's mapping M, vis-w2v's scene-cluster layer) has no package and is a
torch.nn module here. Bruni et al. 2014's mixing is scikit-learn's `TruncatedSVD` (no centring: the rank-k
reconstruction of the joint matrix). None of these papers prints a vocabulary size that could be read, so the
references are built at a configuration the caller gives; tests/coverage/test_isl_references.py compares them
with the specs at the specs' widths, and nothing is registered in tests/references.py.
"""

from __future__ import annotations

import numpy as np
from torch import nn


def word2vec_tables(vocab: int, dim: int, *, output: bool = True) -> int:
    """Parameters of gensim's skip-gram with negative sampling over `vocab` words of `dim` dims: wv.vectors, plus
    syn1neg when `output` (training); the frequencies only order the vocabulary."""
    from gensim.models import Word2Vec

    model = Word2Vec(vector_size=dim, sg=1, negative=5, hs=0, min_count=1, workers=1)
    model.build_vocab_from_freq({f"w{i}": vocab - i for i in range(vocab)})
    assert len(model.wv) == vocab
    return model.wv.vectors.size + (model.syn1neg.size if output else 0)


def word2vec_sgd(syn0: np.ndarray, syn1neg: np.ndarray, sentence: list[int], lr: float, negative: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The tables after gensim's skip-gram trains once over `sentence` (ids into syn0's rows, window 1, no
    subsampling, constant rate `lr`) with one negative per pair, every draw forced to the id `negative` by
    overwriting the noise table (cum_table). gensim reads sigmoids from a 1,000-entry table over [-6, 6]."""
    from gensim.models import Word2Vec

    vocab, dim = syn0.shape
    model = Word2Vec(vector_size=dim, sg=1, negative=1, hs=0, window=1, sample=0, min_count=1, workers=1, seed=0)
    model.build_vocab_from_freq({f"w{i}": vocab - i for i in range(vocab)})  # key w{i} has index i
    model.wv.vectors[:], model.syn1neg[:] = syn0, syn1neg
    model.cum_table[:] = np.where(np.arange(vocab) < negative, 0, model.cum_table[-1])
    model.train([[f"w{i}" for i in sentence]], total_examples=1, epochs=1, start_alpha=lr, end_alpha=lr)
    return model.wv.vectors.copy(), model.syn1neg.copy()


def _count(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def kiela_bottou(vocab: int, dim: int = 100) -> int:
    """Skip-gram tables only: the CNN image embeddings are frozen inputs and the fusion is a concatenation."""
    return word2vec_tables(vocab, dim)


def mmskipgram(vocab: int, dim: int = 300, visual: int = 4096, mapped: bool = True) -> int:
    """Skip-gram tables and, for MMSkip-gram-B, the bias-free mapping M^{u->v} [visual, dim]."""
    return word2vec_tables(vocab, dim) + (_count(nn.Linear(dim, visual, bias=False)) if mapped else 0)


def hill_korhonen(vocab: int, dim: int = 200) -> int:
    """Plain skip-gram: the pseudo-sentences are data, their feature words part of the vocabulary."""
    return word2vec_tables(vocab, dim)


def vis_w2v(vocab: int, dim: int = 200, clusters: int = 25) -> int:
    """The pre-trained word2vec vectors (syn0; the refinement reads no output table) and refineFunctions.c's syn1,
    the bias-free K x d layer over the scene clusters."""
    return word2vec_tables(vocab, dim, output=False) + _count(nn.Linear(dim, clusters, bias=False))


def skipthought_encoder(n_words: int = 20_000, dim_word: int = 620, dim: int = 2_400) -> int:
    """The uni-skip encoder of ryankiros/skip-thoughts (training/train.py defaults, model.py init_params): Wemb
    [n_words, dim_word] and param_init_gru's W [dim_word, 2 dim], b [2 dim], U [dim, 2 dim], Wx [dim_word, dim],
    Ux [dim, dim], bx [dim]: one bias per gate (the candidate's reset applies to Ux h, which has none)."""
    gru = dim_word * 2 * dim + 2 * dim + dim * 2 * dim + dim_word * dim + dim * dim + dim
    return n_words * dim_word + gru


def truncated_svd_mixing(text: np.ndarray, visual: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Bruni et al.'s mixed matrices through scikit-learn: TruncatedSVD(k) of the row-normalised joint matrix,
    transformed and mapped back (X V_k V_k^T = U_k S_k V_k^T), split into the text and visual columns."""
    from sklearn.decomposition import TruncatedSVD

    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    joint = np.concatenate([unit(text), unit(visual)], axis=1)  # V,Ct+Cv
    svd = TruncatedSVD(n_components=k, algorithm="arpack", random_state=0).fit(joint)
    low = svd.inverse_transform(svd.transform(joint))  # V,Ct+Cv
    return low[:, : text.shape[1]], low[:, text.shape[1]:]
