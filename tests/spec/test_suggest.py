"""Did-you-mean: near-misses get the intended name, unrelated words get nothing."""

from __future__ import annotations

import string

import pytest

from mmspec.spec.suggest import _osa_distance, did_you_mean, suggestion_text

VOCAB = [
    "type", "dim", "heads", "layers", "hidden_size", "num_heads", "num_layers", "dropout", "vocab_size",
    "max_len", "patch_size", "image_size", "channels", "mlp_ratio", "input", "inputs", "activation", "norm",
    "bias", "pool", "eps",
]


def single_edit_typos(word: str) -> set[str]:
    """Every insertion, deletion, substitution (letters a-z) and adjacent transposition of `word`."""
    out = set()
    for i in range(len(word) + 1):
        out.update(word[:i] + c + word[i:] for c in string.ascii_lowercase)
    for i in range(len(word)):
        out.add(word[:i] + word[i + 1 :])
        out.update(word[:i] + c + word[i + 1 :] for c in string.ascii_lowercase)
    for i in range(len(word) - 1):
        out.add(word[:i] + word[i + 1] + word[i] + word[i + 2 :])
    return out - {word}


def test_single_edit_typos_get_the_intended_key():
    total = right = 0
    for key in VOCAB:
        for typo in single_edit_typos(key) - set(VOCAB):  # a typo that is itself a key is not a typo
            total += 1
            right += did_you_mean(typo, VOCAB) == key
    assert total > 7000
    assert right / total >= 0.95, f"{right}/{total}"


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("dimm", "dim"), ("hedas", "heads"), ("num_layer", "num_layers"), ("dropuot", "dropout"),
        ("DIM", "dim"), ("Hidden_Size", "hidden_size"), ("hiden_sise", "hidden_size"), ("ep", "eps"),
        ("vocabsize", "vocab_size"), ("actvation", "activation"), ("inptus", "inputs"),
    ],
)
def test_examples(word, expected):
    assert did_you_mean(word, VOCAB) == expected
    assert suggestion_text(word, VOCAB) == f" (did you mean '{expected}'?)"


@pytest.mark.parametrize(
    "word", ["foo", "banana", "zzzz", "x", "", "model", "weights", "kind", "size", "lr", "name", "abcdefgh"]
)
def test_unrelated_words_get_no_suggestion(word):
    assert did_you_mean(word, VOCAB) is None
    assert suggestion_text(word, VOCAB) == ""


def test_ties_are_deterministic():
    # 'dmi' is one transposition from 'dim' and one substitution from 'dmx': the transposition wins
    assert did_you_mean("dmi", ["dmx", "dim"]) == "dim"
    # equal distance, no transposition: the longer shared prefix, then alphabetical order
    assert did_you_mean("abx", ["zbc", "abc"]) == "abc"
    assert did_you_mean("cat", ["cbt", "cut"]) == did_you_mean("cat", ["cut", "cbt"]) == "cbt"


def test_empty_and_generator_candidates():
    assert did_you_mean("dim", []) is None
    assert did_you_mean("dimm", (k for k in VOCAB)) == "dim"


@pytest.mark.parametrize(
    ("a", "b", "d"),
    [("", "", 0), ("abc", "", 3), ("dim", "dmi", 1), ("ca", "abc", 3),
     ("kitten", "sitting", 3), ("ab", "ba", 1)],
)
def test_osa_distance(a, b, d):
    assert _osa_distance(a, b) == _osa_distance(b, a) == d
