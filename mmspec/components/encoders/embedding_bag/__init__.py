"""Bags of tokens: one-hot counts (bag-of-words) and the mean or sum of embedding rows (word2vec, fastText).

The fastText n-gram hashing that turns a word into the ids this encoder reads is a torch-free preprocessing
function in `subwords.py`; it is not part of any graph (see the docstring there).
"""

from __future__ import annotations

from typing import Literal

from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_WORDS = {"type": "tokens", "vocab_size": 30, "length": "ctx", "max_length": 6, "mask": True}
EMBEDDING_BAG_EXAMPLES = (
    Example({"text": _WORDS}, {"input": "text", "dim": 8}, name="mean"),  # word2vec CBOW context, fastText word
    Example({"text": _WORDS}, {"input": "text", "dim": 3, "reduce": "sum"}, name="sum"),
)
BAG_OF_WORDS_EXAMPLES = (
    Example({"text": _WORDS}, {"input": "text"}, name="counts"),
    Example({"text": {**_WORDS, "mask": False}}, {"input": "text", "binary": True}, name="binary"),
)


def _token_ids(inputs: dict[str, Bundle], ctx, ref: str) -> TensorInfo:
    modality = ctx.spec.modalities.get(ref)
    ids = inputs["input"].get("ids")
    if modality is None or modality.type != "tokens" or ids is None:
        raise CheckError("input", f"reads token ids; {ref!r} is not a tokens modality")
    if ids.rank != 2:
        raise CheckError("input", f"needs ids [batch, length], but {ref!r} has shape {list(ids.shape)}")
    return ids


@register("encoders", examples=EMBEDDING_BAG_EXAMPLES)
class EmbeddingBag(ComponentConfig):
    """Token ids [batch, S] (+ mask) of a tokens modality -> `sequence` [batch, S, D], the rows of a
    vocab_size x `dim` table, and `pooled` [batch, D], their mean (or sum) over the unmasked positions.

    No positions, no non-linearity: word2vec's input vectors (CBOW averages the context window) and fastText's
    word vector (the mean of the word's row and its hashed n-gram rows, ids from `subwords.subword_ids`)."""

    type: Literal["embedding_bag"]
    input: Ref
    """A tokens modality; the table has one row per id of its vocab_size."""
    dim: PositiveInt
    """Width D of each row of the vocab_size x D table."""
    reduce: Literal["mean", "sum"] = "mean"
    """mean: sum / number of unmasked tokens (an empty bag gives zeros); sum: the plain sum."""

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        batch, length = _token_ids(inputs, ctx, self.input).shape
        return {"sequence": TensorInfo((batch, length, self.dim)), "pooled": TensorInfo((batch, self.dim))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        return ctx.spec.modalities[self.input].vocab_size * self.dim

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.embedding_bag.module import EmbeddingBagModule

        return EmbeddingBagModule(ctx.spec.modalities[self.input].vocab_size, self.dim, self.reduce)


@register("encoders", examples=BAG_OF_WORDS_EXAMPLES)
class BagOfWords(ComponentConfig):
    """Token ids [batch, S] (+ mask) -> `counts` [batch, vocab_size]: the sum of the unmasked tokens' one-hot
    vectors (with `binary`, 1 where the word occurs). No parameters; a `classifier` head on it is a linear
    model over bag-of-words features (W counts + b)."""

    type: Literal["bag_of_words"]
    input: Ref
    """A tokens modality; one feature per id of its vocab_size."""
    binary: bool = False
    """true: 1 where a word occurs at least once, instead of its count."""

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        batch, _ = _token_ids(inputs, ctx, self.input).shape
        return {"counts": TensorInfo((batch, ctx.spec.modalities[self.input].vocab_size))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        return 0

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.embedding_bag.module import BagOfWordsModule

        return BagOfWordsModule(ctx.spec.modalities[self.input].vocab_size, self.binary)
