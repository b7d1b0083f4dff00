"""Constrained decoding: a `Decoder` wrapper that keeps only the tokens a rule allows after each row's generated
prefix (transformers' prefix_allowed_tokens_fn), so greedy, sampling and beam search stay unchanged; numpy only.

Rules: `Trie` (the next tokens of a set of candidate sequences, e.g. OFA's answer trie for classification tasks,
then eos) and `TokenRange` (a fixed id range, e.g. OFA's image codes when it generates an image).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from mmspec.runtime.search import Decoder, State

Rule = Callable[[tuple[int, ...]], Sequence[int] | None]
"""The tokens allowed after a row's generated tokens (the prompt excluded); None: no constraint (e.g. after the
row finished)."""


class Trie:
    """The candidate token sequences as a prefix tree: after a prefix of some candidates, their next tokens, and
    `eos_id` once the prefix is a whole candidate; None for a prefix of no candidate (a finished row)."""

    def __init__(self, sequences: Iterable[Sequence[int]], eos_id: int):
        self.root: dict = {}
        self.eos_id = eos_id
        for seq in sequences:
            node = self.root
            for token in seq:
                node = node.setdefault(int(token), {})
            node[None] = {}  # end of a candidate
        if not self.root:
            raise ValueError("a Trie needs at least one candidate sequence")

    def __call__(self, prefix: tuple[int, ...]) -> list[int] | None:
        node = self.root
        for token in prefix:
            if token not in node:
                return None
            node = node[token]
        return sorted(t for t in node if t is not None) + ([self.eos_id] if None in node else [])


class TokenRange:
    """Every step allows the ids in [low, high) (and `eos_id` when given)."""

    def __init__(self, low: int, high: int, eos_id: int | None = None):
        if not 0 <= low < high:
            raise ValueError(f"TokenRange needs 0 <= low < high, got [{low}, {high})")
        self.allowed = list(range(low, high)) + ([eos_id] if eos_id is not None else [])

    def __call__(self, prefix: tuple[int, ...]) -> list[int]:
        return self.allowed


class ConstrainedDecoder:
    """`decoder` with the logits of tokens that `rule(generated prefix)` does not allow set to -inf (rows where
    the rule returns None keep theirs). The state carries each row's generated tokens and follows `reorder`."""

    def __init__(self, decoder: Decoder, rule: Rule):
        self.decoder, self.rule = decoder, rule

    def start(self, prompt: np.ndarray) -> tuple[np.ndarray, State]:
        logits, state = self.decoder.start(prompt)  # B,V
        prefixes = [()] * len(prompt)
        return self._mask(logits, prefixes), (state, prefixes)

    def step(self, tokens: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        inner, prefixes = state
        logits, inner = self.decoder.step(tokens, inner)  # B,V
        prefixes = [p + (int(t),) for p, t in zip(prefixes, tokens, strict=True)]
        return self._mask(logits, prefixes), (inner, prefixes)

    def reorder(self, state: State, index: np.ndarray) -> State:
        inner, prefixes = state
        return self.decoder.reorder(inner, index), [prefixes[i] for i in index]

    def _mask(self, logits: np.ndarray, prefixes: list[tuple[int, ...]]) -> np.ndarray:
        out = np.array(logits, dtype=np.float32)  # B,V
        for row, prefix in enumerate(prefixes):
            allowed = self.rule(prefix)
            if allowed is None:
                continue
            if not len(allowed):
                raise ValueError(f"the rule allows no token after {list(prefix)}")
            keep = np.full(out.shape[1], -np.inf, dtype=np.float32)  # V
            keep[list(allowed)] = 0.0
            out[row] += keep
        return out
