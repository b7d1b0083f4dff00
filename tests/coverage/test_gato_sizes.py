"""MP-05 Gato (specs/gato.yaml): why no PaperSize is registered. The paper's figures (1.18B, 364M, 79M) cannot all
be reached by the printed hyperparameters' transformer, whatever its embedding tables: the trunk alone is above
1.18B at half-up rounding, and the rows of embedding width left by 364M and by 79M fall in disjoint intervals,
while every size shares one vocabulary and context. Counts come from the spec's own model on the meta device."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

import torch
from references import parse_figure

from mmspec import api

GATO = Path(__file__).resolve().parents[2] / "specs" / "gato.yaml"
PRINTED = {None: "1.18B", "gato_364m": "364M", "gato_79m": "79M"}


def _trunk_and_width(variant: str | None) -> tuple[int, int]:
    """(parameters outside the embedding tables, the width) of a size of the spec."""
    model = api.build(api.load_spec(GATO, variant), device="meta")
    tables = [m for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    embedded = sum(p.numel() for m in tables for p in m.parameters(recurse=False))
    return api.param_counts(model)["total"] - embedded, tables[0].embedding_dim


def _bounds(figure: str) -> tuple[Decimal, Decimal]:
    """The counts that round half up to `figure`: [low, high)."""
    value, unit = parse_figure(figure)
    half = Decimal(1).scaleb(value.as_tuple().exponent) / 2
    return (value - half) * unit, (value + half) * unit


def test_the_largest_trunk_alone_exceeds_the_printed_size():
    trunk, _ = _trunk_and_width(None)
    assert trunk >= _bounds(PRINTED[None])[1]


def test_the_smaller_sizes_leave_disjoint_embedding_rows():
    rows = {}
    for variant in ("gato_364m", "gato_79m"):
        trunk, width = _trunk_and_width(variant)
        low, high = _bounds(PRINTED[variant])
        rows[variant] = (math.ceil((low - trunk) / width), math.ceil((high - trunk) / width) - 1)
    (a_low, a_high), (b_low, b_high) = rows.values()
    assert a_low <= a_high and b_low <= b_high
    assert a_high < b_low or b_high < a_low, rows
