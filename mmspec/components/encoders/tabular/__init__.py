"""Tabular features: categorical columns (one embedding per column) and numeric columns, and the wide linear
model over raw and crossed categorical features (Wide & Deep's wide part, a linear Cox term)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.common import require_float
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveInt, Probability, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_CAT = {"type": "categorical", "levels": [3, 5, 2]}
_NUM = {"type": "vector", "dim": 2}
TABULAR_EXAMPLES = (
    Example({"cat": _CAT, "num": _NUM}, {"inputs": {"categorical": "cat", "numeric": "num"}, "embed_dims": [2, 3, 1],
                                         "numeric_norm": "batch", "dropout": 0.1}, name="mixed"),
    Example({"cnv": {"type": "categorical", "levels": [3, 3, 3, 3]}}, {"inputs": {"categorical": "cnv"},
                                                                       "embed_dims": 2}, name="shared_width"),
)
WIDE_EXAMPLES = (
    Example({"cat": _CAT, "num": _NUM}, {"inputs": {"categorical": "cat", "numeric": "num"}, "crosses": [[0, 1],
                                                                                                        [0, 1, 2]]},
            name="crosses"),
    Example({"num": _NUM}, {"inputs": {"numeric": "num"}, "bias": False}, name="linear_cox_term"),
)
Port = Literal["categorical", "numeric"]


def _columns(inputs: dict[str, Bundle], ctx, refs: dict[str, str]) -> tuple[list[int], int, TensorInfo, bool]:
    """(levels of the categorical columns, number of numeric columns, a tensor that carries the batch axis,
    whether the numeric input is a scalar [batch])."""
    levels, numeric, lead, scalar = [], 0, None, False
    if "categorical" in refs:
        ref = refs["categorical"]
        modality = ctx.spec.modalities.get(ref)
        if modality is None or modality.type != "categorical":
            raise CheckError(("inputs", "categorical"), f"{ref!r} is not a categorical modality; declare "
                                                        f"`{{type: categorical, levels: [...]}}` and reference it")
        levels, lead = modality.column_levels, inputs["categorical"]["ids"]
    if "numeric" in refs:
        ref, bundle = refs["numeric"], inputs["numeric"]
        x = next(iter(bundle.values())) if len(bundle) == 1 else bundle.get("values")
        if x is None or x.rank not in (1, 2) or (x.rank == 2 and not isinstance(x.width, int)):
            raise CheckError(("inputs", "numeric"), f"{ref!r} is not numeric columns; reference a vector [batch, N] "
                                                    f"or a scalar [batch] (e.g. '{ref}.values')")
        require_float(x, ref, ("inputs", "numeric"))
        numeric, scalar = (1, True) if x.rank == 1 else (x.width, False)
        if lead is not None and x.shape[0] != lead.shape[0]:
            raise CheckError(("inputs", "numeric"), f"{ref!r} has batch axis {x.shape[0]!r} but "
                                                    f"{refs['categorical']!r} has {lead.shape[0]!r}")
        lead = lead or x
    return levels, numeric, lead, scalar


@register("encoders", examples=TABULAR_EXAMPLES)
class Tabular(ComponentConfig):
    """Categorical columns [batch, C] (a `categorical` modality) and numeric columns [batch, N] -> `features`
    [batch, sum(embed_dims) + N]: each categorical column's embedding (columns of one width share one packed
    table), then the numeric columns (optionally batch-normalised). MultiSurv's clinical and CNV inputs,
    Wide & Deep's deep-part input. `dropout` drops embedding entries while training."""

    type: Literal["tabular"]
    inputs: dict[Port, Ref] = Field(min_length=1)
    embed_dims: PositiveInt | list[PositiveInt] = 8
    """Embedding width of each categorical column (one per column), or one width for all."""
    numeric_norm: Literal["none", "batch"] = "none"
    """`batch`: BatchNorm over the numeric columns before they are concatenated; `none`: as they are."""
    dropout: Probability = 0.0

    def _dims(self, levels: list[int]) -> list[int]:
        if isinstance(self.embed_dims, int):
            return [self.embed_dims] * len(levels)
        if len(self.embed_dims) != len(levels):
            raise CheckError("embed_dims", f"embed_dims has {len(self.embed_dims)} widths but "
                                           f"{self.inputs.get('categorical')!r} has {len(levels)} columns; give one "
                                           f"per column or one width for all")
        return list(self.embed_dims)

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        levels, numeric, lead, _ = _columns(inputs, ctx, self.inputs)
        if "numeric" not in self.inputs and self.numeric_norm != "none":
            raise CheckError("numeric_norm", "numeric_norm without numeric columns; add `inputs.numeric` or remove it")
        return {"features": TensorInfo((lead.shape[0], sum(self._dims(levels)) + numeric))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        levels, numeric, _, _ = _columns(inputs, ctx, self.inputs)
        norm = 2 * numeric if self.numeric_norm == "batch" else 0
        return sum(n * d for n, d in zip(levels, self._dims(levels), strict=True)) + norm

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.tabular.module import TabularModule

        levels, numeric, _, scalar = _columns(inputs, ctx, self.inputs)
        return TabularModule(levels, self._dims(levels), numeric, scalar, self.numeric_norm, self.dropout)


@register("encoders", examples=WIDE_EXAMPLES)
class Wide(ComponentConfig):
    """The wide linear model -> `logits` [batch, dim]: w^T [x, phi(x)] + b over the one-hot categorical columns
    x_cat, their cross products phi (one weight per combination of the levels of the columns in each of
    `crosses`: Cheng et al.'s AND(gender=female, language=en)) and the raw numeric columns. Pölsterl et al.'s
    interpretable linear Cox term is a wide model over numeric columns with `bias: false`."""

    type: Literal["wide"]
    inputs: dict[Port, Ref] = Field(min_length=1)
    crosses: list[Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=2)]] = []
    """Column index groups of the categorical input; each adds prod(levels of its columns) weights per output."""
    dim: PositiveInt = 1
    """Output width: one logit per output (1 for a binary task or a log-risk)."""
    bias: bool = True
    """false: no intercept (a Cox model's linear term has none)."""

    def _crossed(self, levels: list[int]) -> list[int]:
        """Number of combinations of each cross; CheckError for an unknown or repeated column."""
        if self.crosses and "categorical" not in self.inputs:
            raise CheckError("crosses", "crosses combine categorical columns; add `inputs.categorical`")
        sizes = []
        for i, cross in enumerate(self.crosses):
            for j, column in enumerate(cross):
                if column >= len(levels):
                    raise CheckError(("crosses", i, j), f"column {column} does not exist: "
                                                        f"{self.inputs['categorical']!r} has {len(levels)} columns "
                                                        f"(0..{len(levels) - 1})")
            if len(set(cross)) != len(cross):
                raise CheckError(("crosses", i), f"cross {cross} repeats a column; a cross product combines "
                                                 f"distinct columns")
            sizes.append(math.prod(levels[c] for c in cross))
        return sizes

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        levels, _, lead, _ = _columns(inputs, ctx, self.inputs)
        self._crossed(levels)
        return {"logits": TensorInfo((lead.shape[0], self.dim))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        levels, numeric, _, _ = _columns(inputs, ctx, self.inputs)
        return (sum(levels) + sum(self._crossed(levels)) + numeric + int(self.bias)) * self.dim

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.tabular.module import WideModule

        levels, numeric, _, scalar = _columns(inputs, ctx, self.inputs)
        return WideModule(levels, self.crosses, numeric, scalar, self.dim, self.bias)
