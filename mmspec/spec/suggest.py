"""Did-you-mean suggestions for misspelled keys and names (optimal-string-alignment distance)."""

from __future__ import annotations

from collections.abc import Iterable


def _osa_distance(a: str, b: str, cap: int | None = None) -> int:
    """Edit distance counting insertion, deletion, substitution and adjacent transposition as 1.

    With `cap`, only the diagonal band |i - j| <= cap is computed (cells outside it exceed `cap`) and
    any result above `cap` is reported as ``cap + 1``.
    """
    n = _common_prefix(a, b)  # a shared prefix or suffix never changes the distance
    a, b = a[n:], b[n:]
    n = _common_prefix(a[::-1], b[::-1])
    a, b = a[: len(a) - n], b[: len(b) - n]
    width = len(a) + len(b) if cap is None else cap
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [width + 1] * len(b)
        for j in range(max(1, i - width), min(len(b), i + width) + 1):
            cb = b[j - 1]
            d = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and cb == a[i - 2] and prev2[j - 2] + 1 < d:
                d = prev2[j - 2] + 1
            cur[j] = d
        if min(cur) > width:  # row minima never decrease
            return width + 1
        prev2, prev = prev, cur
    return prev[-1] if cap is None else min(prev[-1], cap + 1)


def _common_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to `word` (case-insensitive), or None when nothing is plausibly meant.

    Allows one edit against candidates of up to 4 characters and two against longer ones. Ties go to
    a candidate with the same letters (a transposition), then the longer shared prefix, then the
    alphabetically first.
    """
    low = word.lower()
    best: tuple | None = None
    for cand in set(candidates):
        c = cand.lower()
        limit = 1 if len(c) <= 4 else 2
        if abs(len(c) - len(low)) > limit or (dist := _osa_distance(low, c, limit)) > limit:
            continue
        rank = (dist, sorted(c) != sorted(low), -_common_prefix(low, c), cand)
        if best is None or rank < best:
            best = rank
    return None if best is None else best[-1]


def suggestion_text(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for use at the end of a message, or ``""`` when there is no suggestion."""
    match = did_you_mean(word, candidates)
    return f" (did you mean {match!r}?)" if match else ""
