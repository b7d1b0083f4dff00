"""Structured + unstructured data (SU-10 ... SU-16): parameter counts against the papers' layer tables
(tests/structured_references.py), the located shape rules of the new components, `fit` lowering the loss of each
tiny spec, and the statistical stages (piecewise-exponential expansion, orthogonalization, GP posterior)."""

from __future__ import annotations

from pathlib import Path

import pytest
import structured_references as R
import torch

from mmspec.api import build, load_spec, param_counts
from mmspec.errors import SpecError
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPECS = Path(__file__).resolve().parents[2] / "specs"


def _count(stem: str, variant: str | None = None) -> int:
    return param_counts(build(load_spec(SPECS / f"{stem}.yaml", variant), device="meta"))["total"]


def _reference(module) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in module().parameters())


def _fit(stem: str, steps: int = 30, lr: float = 1e-2) -> list[float]:
    loaded = load_spec(SPECS / f"{stem}.yaml", "tiny")
    trainer = Trainer(loaded, lr=lr)
    batch = synthetic_batch(loaded, 8, seed=0)
    return trainer.fit(batch, steps, seed=0).losses


def test_sirko_unet_matches_the_paper_layers():
    assert _count("sirko_buildings") == _reference(lambda: R.unet(3, [64, 128, 256, 512, 1024], 1))


def test_sirko_fit_lowers_the_pixel_loss():
    losses = _fit("sirko_buildings")
    assert losses[-1] < 0.8 * losses[0], losses[::5]


def test_unet_rejects_sizes_that_do_not_halve(tmp_path):
    text = (SPECS / "sirko_buildings.yaml").read_text().replace("height: 16", "height: 18")
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        build(load_spec(path, "tiny"), device="meta")
    line = text.splitlines().index("    encoders.unet.widths: [4, 8, 8]") + 1  # located at the widths in force
    assert "must divide by 4" in str(err.value) and f"odd.yaml:{line}:" in str(err.value)
