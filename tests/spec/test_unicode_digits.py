"""Only ASCII digits are numbers in spec paths and shape expressions: `int()` takes any Unicode decimal digit
('١' is 1) and raises on other digits ('²'), so `str.isdigit` alone let both through."""

from __future__ import annotations

import pytest

from mmspec.spec.tensors import dim_terms


@pytest.mark.parametrize("text", ["²*seq", "١*seq", "seq+٣", "２"])
def test_shape_expressions_take_ascii_integers_only(text):
    with pytest.raises(ValueError, match="is not a sum of products of axis names and integers"):
        dim_terms(text)


def test_ascii_integers_still_count():
    assert dim_terms("2*seq+3") == {("seq",): 2, (): 3}
