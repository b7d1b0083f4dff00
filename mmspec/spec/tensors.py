"""Torch-free tensor signatures used for shape checks before anything is allocated."""

from __future__ import annotations

from dataclasses import dataclass

Dim = int | str
"""A fixed size, or the name of a dynamic axis."""


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
