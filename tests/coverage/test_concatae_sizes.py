"""SU-05 ConcatAE / CrossAE at the authors' sizes: the spec's networks against tests/survival_references.py's
rebuild of the official Q/P/C networks (1,000 features per modality, 128-wide hidden layers, 100-d codes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from survival_references import tong_autoencoders

from mmspec.api import build, load_spec, param_counts

CONCATAE = Path(__file__).resolve().parents[2] / "specs" / "concatae.yaml"
NODES = ["enc_methylation", "enc_mirna", "dec_methylation", "dec_mirna", "risk"]


@pytest.mark.parametrize(("variant", "fusion"), [(None, "concat"), ("crossae", "mean")])
def test_concatae_matches_the_official_networks_layer_by_layer(variant, fusion):
    model = build(load_spec(CONCATAE, variant), device="meta")
    reference = tong_autoencoders([1000, 1000], fusion=fusion).to("meta")
    ours = [p.shape for node in NODES for p in model.components[node].parameters()]
    assert ours == [p.shape for p in reference.parameters()]
    assert param_counts(model)["total"] == sum(p.numel() for p in reference.parameters())
