"""Tiny pieces that many families' registry `Example`s share (torch-free): modalities and a text encoder.

Examples are built, exported and verified in the default test suite, so every size here is as small as the
components allow."""

from __future__ import annotations

TEXT = {"type": "tokens", "vocab_size": 40, "length": "seq", "max_length": 12, "mask": True}
"""Token ids with a padding mask, up to 12 long."""
REGIONS = {"type": "regions", "dim": 5, "count": "regions", "max_count": 6, "boxes": 5, "mask": True}
"""Up to 6 detector regions of 5 features with 5-d boxes and a mask."""


def text_encoder(**fields) -> dict:
    """A one-layer, 8-wide transformer over `text` with a cls pool; `fields` override keys (None drops one)."""
    base = {
        "type": "transformer",
        "input": "text",
        "embed": {"type": "tokens", "positions": 12},
        "width": 8,
        "layers": 1,
        "heads": 2,
        "ffn": 16,
        "pool": {"type": "cls"},
    }
    return {k: v for k, v in {**base, **fields}.items() if v is not None}
