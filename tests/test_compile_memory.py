"""Compile memory: the eager model's weights are freed before ONNX Runtime loads the export, and the export is
written through external data, then inlined, so one compile holds at most two copies of the weights at a time
(the peak-RSS figures are measured by benchmarks/run, not here)."""

from __future__ import annotations

import gc
from pathlib import Path

import onnx
import pytest
import torch

import mmspec.api as api

ROOT = Path(__file__).resolve().parents[1]


def _live_parameter_bytes() -> int:
    gc.collect()
    return sum(o.untyped_storage().nbytes() for o in gc.get_objects()
               if isinstance(o, torch.nn.Parameter) and o.device.type == "cpu")


@pytest.mark.parametrize("spec", ["bert", "t5"])  # one graph; several graphs (exports:)
def test_weights_are_freed_before_verification(spec, tmp_path, monkeypatch):
    seen = []
    verify = api.verify_expected

    def spy(path, expected, *args, **kwargs):
        seen.append(_live_parameter_bytes())
        return verify(path, expected, *args, **kwargs)

    monkeypatch.setattr(api, "verify_expected", spy)
    report = api.compile(ROOT / "specs" / f"{spec}.yaml", tmp_path, "tiny")
    assert seen and max(seen) == 0
    assert report["params"]["total"] > 0  # counted before the weights were freed
    files = [g["onnx"]["path"] for g in report["graphs"].values()] if "graphs" in report else [report["onnx"]["path"]]
    for f in files:  # inlined again: one file each, loadable with its weights
        assert not Path(f + ".data").exists()
        assert onnx.load(f).graph.initializer
