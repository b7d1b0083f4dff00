"""Objectives of word vectors (training-only): word2vec's negative sampling and hierarchical softmax (Mikolov
et al. 2013), used by fastText too, and GloVe's weighted least squares (Pennington et al. 2014).

Each owns the tables that exist only for training (word2vec's output vectors or inner-node vectors, GloVe's
context vectors and biases); the exported graph is the encoder's lookup. Their fixed statistics (the noise
distribution, the Huffman tree) come from word counts through `preprocess.py`; without a corpus the counts are
a Zipf law over the ids (`counts: zipf`), and `set_counts` on the built module installs real ones.
"""

from __future__ import annotations

from typing import Any, Literal

from mmspec.components.objectives.base import (
    LOSS,
    Objective,
    Target,
    field_of,
    require_rank,
    tensor,
    upstream_modalities,
)
from mmspec.registry import Example, register
from mmspec.spec.base import Name, PositiveFloat, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_CONTEXT = {"type": "tokens", "vocab_size": 30, "length": 4, "mask": True}
_WORD = {"type": "tokens", "vocab_size": 30, "length": 1}
_BAG = {"encoders": {"w2v": {"type": "embedding_bag", "input": "context", "dim": 8}}}
_LOOKUP = {"encoders": {"w2v": {"type": "embedding_bag", "input": "word", "dim": 8}}}
NEGATIVE_SAMPLING_EXAMPLES = (
    Example({"context": _CONTEXT}, {"input": "w2v.pooled", "negatives": 3}, _BAG, ["w2v.pooled"], name="cbow"),
    Example({"word": _WORD}, {"input": "w2v.pooled", "counts": "uniform"}, _LOOKUP, ["w2v.pooled"],
            name="skipgram"),
)
HIERARCHICAL_SOFTMAX_EXAMPLES = (
    Example({"context": _CONTEXT}, {"input": "w2v.pooled"}, _BAG, ["w2v.pooled"], name="cbow"),
)
GLOVE_EXAMPLES = (
    Example({"word": _WORD}, {"input": "glove.pooled", "tokens": "word"},
            {"encoders": {"glove": {"type": "embedding_bag", "input": "word", "dim": 8}}}, ["glove.pooled"]),
)


class _WordPrediction(Objective):
    """Shared by negative sampling and hierarchical softmax: a vector per example predicts one word id."""

    input: Ref
    """Hidden vectors [batch, D]: the centre word's vector (skip-gram) or the context mean (CBOW)."""
    vocab: PositiveInt | None = None
    """Number of words predicted; default: the vocab_size of the one tokens modality upstream of `input`."""
    counts: Literal["zipf", "uniform"] = "zipf"
    """Word counts until real ones are installed: Zipf over the ids (rank order) or all equal."""

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        hidden = require_rank(tensor(inputs, "input", self.input, "pooled"), 2, "input", "vectors [batch, D]",
                              self.input)
        if hidden.dtype != "float32":
            raise CheckError("input", f"needs float vectors; {self.input!r} is {hidden.dtype}")
        self.words(ctx.spec)
        return LOSS

    def words(self, spec: Any) -> int:
        """The number of words predicted: `vocab`, else the upstream tokens modality's (located error if unclear)."""
        if self.vocab is not None:
            return self.vocab
        found = [m for m in upstream_modalities(spec, self.input) if spec.modalities[m].type == "tokens"]
        if len(found) != 1:
            raise CheckError("vocab", f"cannot tell the vocabulary: {self.input!r} reads tokens modalities "
                                      f"{found}; set `vocab:`")
        return spec.modalities[found[0]].vocab_size

    def targets(self, inputs: dict[str, Bundle], spec: Any) -> dict[str, Target]:
        batch = tensor(inputs, "input", self.input, "pooled").shape[0]
        return {"target": Target(TensorInfo((batch,), "int64"), "classes", self.words(spec))}

    def _dims(self, inputs: dict[str, Bundle], ctx) -> tuple[int, int, str]:
        hidden = tensor(inputs, "input", self.input, "pooled")
        return self.words(ctx.spec), hidden.shape[1], field_of(inputs, "input", "pooled")


@register("objectives", training_only=True, examples=NEGATIVE_SAMPLING_EXAMPLES)
class NegativeSampling(_WordPrediction):
    """word2vec negative sampling: -log s(h . u_target) - sum_k log s(-h . u_k) for `negatives` words k drawn
    from counts^`power` (negatives equal to the target are skipped, as word2vec does), mean over the batch.

    Owns the output table u (vocab x D, zeros at start as in word2vec). Batch target `target` [batch]: the word
    to predict (the centre word for CBOW, a context word for skip-gram)."""

    type: Literal["negative_sampling"]
    negatives: PositiveInt = 5
    """Negative words sampled per example."""
    power: PositiveFloat = 0.75
    """Exponent of the unigram counts in the negative-sampling distribution."""

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        vocab, dim, _ = self._dims(inputs, ctx)
        return vocab * dim

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.word_vectors.loss import NegativeSampling as Module

        vocab, dim, fld = self._dims(inputs, ctx)
        return Module(vocab, dim, fld, self.negatives, self.power, self.counts)


@register("objectives", training_only=True, examples=HIERARCHICAL_SOFTMAX_EXAMPLES)
class HierarchicalSoftmax(_WordPrediction):
    """word2vec hierarchical softmax: -sum over the inner nodes n on the target's Huffman path of
    log s((1 - 2 code_n) h . v_n), mean over the batch; code 0 is the first-merged (smaller) child.

    Owns the inner-node table v ((vocab - 1) x D, zeros at start) and the tree's paths (buffers built from
    the counts by `preprocess.huffman_paths`). Batch target `target` [batch] as for negative sampling."""

    type: Literal["hierarchical_softmax"]

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        out = super().check(inputs, ctx)
        if self.words(ctx.spec) < 2:
            raise CheckError("vocab", "a Huffman tree needs at least 2 words")
        return out

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        vocab, dim, _ = self._dims(inputs, ctx)
        return (vocab - 1) * dim

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.word_vectors.loss import HierarchicalSoftmax as Module

        vocab, dim, fld = self._dims(inputs, ctx)
        return Module(vocab, dim, fld, self.counts)


@register("objectives", training_only=True, examples=GLOVE_EXAMPLES)
class Glove(Objective):
    """GloVe: f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2, mean over the batch, f(x) = min(1, (x/x_max)^alpha).

    `input` holds w_i [batch, D] (the lookup of word i), `tokens` the length-1 tokens modality with i. The
    objective owns the context table w~ (vocab x D) and both biases. Batch targets: `context` [batch] (j) and
    `count` [batch] (X_ij > 0, from `preprocess.cooccurrence`). The paper's word vectors are w + w~."""

    type: Literal["glove"]
    input: Ref
    tokens: Name
    """The length-1 tokens modality with the word i of each row."""
    x_max: PositiveFloat = 100.0
    """Co-occurrence count at which the weighting f reaches 1."""
    alpha: PositiveFloat = 0.75
    """Exponent of the weighting f below x_max."""
    ref_fields = ("input", "tokens")

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        hidden = require_rank(tensor(inputs, "input", self.input, "pooled"), 2, "input", "vectors [batch, D]",
                              self.input)
        if hidden.dtype != "float32":
            raise CheckError("input", f"needs float vectors; {self.input!r} is {hidden.dtype}")
        modality = ctx.spec.modalities.get(self.tokens)
        if modality is None or modality.type != "tokens" or modality.length != 1:
            raise CheckError("tokens", f"names the modality of word i: a tokens modality of length 1; "
                                       f"{self.tokens!r} is not one")
        if hidden.shape[0] != inputs["tokens"]["ids"].shape[0]:
            raise CheckError("input", f"{self.input!r} has {hidden.shape[0]} rows, {self.tokens!r} "
                                      f"{inputs['tokens']['ids'].shape[0]}")
        return LOSS

    def targets(self, inputs: dict[str, Bundle], spec: Any) -> dict[str, Target]:
        batch = inputs["tokens"]["ids"].shape[0]
        vocab = spec.modalities[self.tokens].vocab_size
        return {"context": Target(TensorInfo((batch,), "int64"), "classes", vocab),
                "count": Target(TensorInfo((batch,)), "positive")}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        vocab = ctx.spec.modalities[self.tokens].vocab_size
        return vocab * (tensor(inputs, "input", self.input, "pooled").shape[1] + 2)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.word_vectors.loss import Glove as Module

        vocab = ctx.spec.modalities[self.tokens].vocab_size
        dim = tensor(inputs, "input", self.input, "pooled").shape[1]
        return Module(vocab, dim, field_of(inputs, "input", "pooled"), self.x_max, self.alpha)
