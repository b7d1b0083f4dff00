"""Reference parameter counts of the specs: which public implementation each spec's size is compared with.

`REFERENCES` maps a spec's `name` (its canonical size) or `name:variant` (a named size) to a zero-argument
callable that builds the reference with the same configuration; it runs under `torch.device("meta")`, so nothing
is allocated. It returns the reference `nn.Module`, or a `Formula` where the reference cannot be installed (a count
derived module by module from the official configuration). Where no implementation exists at all, `PAPER_SIZES`
holds the paper's reported size instead, and the spec's `reference.notes` must cite where the paper prints it
(the `source`, e.g. "Table 2.1").

Adding a reference is one line, e.g.

    "gpt2:medium": lambda: tf.GPT2LMHeadModel(tf.GPT2Config(n_embd=1024, n_layer=24, n_head=16)),
    "glide": PaperSize("3.5B", "Table 1"),    # in PAPER_SIZES; the notes of specs/glide.yaml cite "Table 1"

tests/test_coverage_doc.py checks every entry against the spec's own count (a registered reference must match),
and docs/coverage.md shows both numbers: rerun `python tests/regen_coverage.py` after adding one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import cache

import torch
import transformers as tf
from test_param_counts import OFFICIAL_VILBERT, _vilbert_official
from test_param_counts import REFERENCES as PARITY_REFERENCES


@dataclass(frozen=True)
class Formula:
    """A reference count computed without building a module (the implementation is not installable)."""

    label: str
    count: Callable[[], int]


@dataclass(frozen=True)
class PaperSize:
    """A size as the paper prints it ("110M", "3.5B", "12,345"), and where (table or section)."""

    figure: str
    source: str

    def matches(self, count: int) -> bool:
        """Whether `count` rounds to the figure at its printed precision (half up)."""
        value, unit = parse_figure(self.figure)
        places = Decimal(1).scaleb(value.as_tuple().exponent)
        return (Decimal(count) / unit).quantize(places, rounding=ROUND_HALF_UP) == value


_UNITS = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9}


def parse_figure(figure: str) -> tuple[Decimal, int]:
    """("110M") -> (Decimal("110"), 10**6); raises ValueError for anything but digits (commas, one decimal point)
    and an optional K/M/B."""
    m = re.fullmatch(r"(\d[\d,]*(?:\.\d+)?)\s*([KMB]?)", figure.strip())
    if m is None:
        raise ValueError(f"cannot read the size {figure!r}; write it like 110M, 3.5B or 12,345")
    return Decimal(m.group(1).replace(",", "")), _UNITS[m.group(2)]


REFERENCES: dict[str, Callable[[], torch.nn.Module] | Formula] = {
    **PARITY_REFERENCES,  # bert, clip, resnet50 (tests/test_param_counts.py)
    "visualbert": lambda: tf.VisualBertForPreTraining(tf.VisualBertConfig(visual_embedding_dim=2048)),
    "vilbert": Formula("official vilbert-multi-task configuration, counted module by module",
                       lambda: _vilbert_official(OFFICIAL_VILBERT)[0]),
}
"""`name` or `name:variant` -> the reference, built on the meta device."""

PAPER_SIZES: dict[str, PaperSize] = {}
"""`name` or `name:variant` -> the paper's reported size, for specs without any implementation to build."""


def key(name: str, variant: str | None = None) -> str:
    """The registry key of a spec's canonical size (variant None) or of one of its named sizes."""
    return name if variant is None else f"{name}:{variant}"


@cache
def reference_count(k: str) -> tuple[int, str]:
    """(parameter count, what was counted) of the registered reference `k`; KeyError when none is registered."""
    entry = REFERENCES[k]
    if isinstance(entry, Formula):
        return entry.count(), entry.label
    with torch.device("meta"):
        model = entry()
    label = f"{type(model).__module__.partition('.')[0]}.{type(model).__name__}"
    return sum(p.numel() for p in model.parameters()), label
