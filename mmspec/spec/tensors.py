"""Torch-free tensor signatures used for shape checks before anything is allocated."""

from __future__ import annotations

import re
from dataclasses import dataclass

Dim = int | str
"""A fixed size, the name of a dynamic axis, or a derived axis: a sum of products of named axes and constants
in canonical form (`regions + text_len`, `5*media`, `batch*media`; see `dim_sum`)."""

_NAME = re.compile(r"[a-z][a-z0-9_]*")
Terms = dict[tuple[str, ...], int]
"""A dim as a polynomial: sorted axis names of one product -> its coefficient; () is the constant term."""


def dim_terms(d: Dim) -> Terms:
    """`d` as a polynomial; raises ValueError for text that is not a sum of products of names and integers."""
    if isinstance(d, int):
        return {(): d} if d else {}
    terms: Terms = {}
    for term in d.split("+"):
        coef, names = 1, []
        for factor in term.split("*"):
            factor = factor.strip()
            if factor.isascii() and factor.isdigit():
                coef *= int(factor)
            elif _NAME.fullmatch(factor):
                names.append(factor)
            else:
                raise ValueError(f"{d!r} is not a sum of products of axis names and integers")
        key = tuple(sorted(names))
        terms[key] = terms.get(key, 0) + coef
    return {k: c for k, c in terms.items() if c}


def format_dim(terms: Terms) -> Dim:
    """The canonical Dim of a polynomial: an int when it is constant, else its terms in name order, the
    constant last, each as `coefficient*name*name` (coefficient 1 left out): equal dims have equal text."""
    named = sorted(k for k in terms if k)
    if not named:
        return terms.get((), 0)
    parts = ["*".join(((str(terms[k]),) if terms[k] != 1 else ()) + k) for k in named]
    return " + ".join(parts + ([str(terms[()])] if terms.get(()) else []))


def dim_sum(*dims: Dim) -> Dim:
    """`a + b + ...` in canonical form (sequence concatenation: `text_len` + `regions` -> `regions + text_len`)."""
    out: Terms = {}
    for d in dims:
        for k, c in dim_terms(d).items():
            out[k] = out.get(k, 0) + c
    return format_dim(out)


def dim_product(*dims: Dim) -> Dim:
    """`a * b * ...` in canonical form (items folded into the batch: `batch*media`; `media` times 5 -> `5*media`)."""
    out: Terms = {(): 1}
    for d in dims:
        nxt: Terms = {}
        for k1, c1 in out.items():
            for k2, c2 in dim_terms(d).items():
                key = tuple(sorted(k1 + k2))
                nxt[key] = nxt.get(key, 0) + c1 * c2
        out = nxt
    return format_dim(out)


def dim_axes(d: Dim) -> set[str]:
    """The named axes a dim depends on."""
    return {name for k in dim_terms(d) for name in k}


def dim_value(d: Dim, sizes: dict[str, int], default: int | None = None) -> int:
    """The size of `d` when the named axes have `sizes` (an axis missing from `sizes` is `default`, or KeyError).

    With every axis at its maximum this is the dim's upper bound (coefficients are positive)."""
    total = 0
    for k, c in dim_terms(d).items():
        for name in k:
            c *= sizes[name] if default is None or name in sizes else default
        total += c
    return total


@dataclass(frozen=True)
class TensorInfo:
    """Shape (fixed ints and named dynamic axes) and dtype (numpy name) of one tensor."""

    shape: tuple[Dim, ...]
    dtype: str = "float32"

    @property
    def width(self) -> Dim:
        return self.shape[-1]

    @property
    def rank(self) -> int:
        return len(self.shape)

    def with_shape(self, *shape: Dim) -> TensorInfo:
        return TensorInfo(tuple(shape), self.dtype)


Bundle = dict[str, TensorInfo]
"""What a node emits: named tensors, e.g. {"sequence": [batch, text_len, 768], "mask": [batch, text_len]}."""


class CheckError(Exception):
    """A cross-field problem found by a component's shape rules.

    `field` is the offending key inside the component's config (it locates the diagnostic);
    the message names both sides of the conflict and the fix.
    """

    def __init__(self, field: str | tuple[str | int, ...], message: str, code: str = "check"):
        self.field = (field,) if isinstance(field, str) else tuple(field)
        self.code = code
        super().__init__(message)
