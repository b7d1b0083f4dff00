"""Compile memory: the eager model's weights are freed before ONNX Runtime loads the export, and the export is
written through external data, then inlined, so one compile holds at most two copies of the weights at a time
(the peak-RSS figures are measured by benchmarks/run, not here)."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import onnx
import pytest

import mmspec.api as api

ROOT = Path(__file__).resolve().parents[1]


def _bytes(params: list[weakref.ref]) -> int:
    gc.collect()
    return sum(p.untyped_storage().nbytes() for ref in params if (p := ref()) is not None)


@pytest.mark.parametrize("spec", ["bert", "t5"])  # one graph; several graphs (exports:)
def test_weights_are_freed_before_verification(spec, tmp_path, monkeypatch):
    params: list[weakref.ref] = []
    seen = []
    build, verify = api.build, api.verify_expected

    def built(*args, **kwargs):
        model = build(*args, **kwargs)
        params.extend(weakref.ref(p) for p in model.parameters())
        return model

    def spy(path, expected, *args, **kwargs):
        seen.append(_bytes(params))
        return verify(path, expected, *args, **kwargs)

    monkeypatch.setattr(api, "build", built)
    monkeypatch.setattr(api, "verify_expected", spy)
    report = api.compile(ROOT / "specs" / f"{spec}.yaml", tmp_path, "tiny")
    assert params and seen and max(seen) == 0
    assert report["params"]["total"] > 0  # counted before the weights were freed
    files = [g["onnx"]["path"] for g in report["graphs"].values()] if "graphs" in report else [report["onnx"]["path"]]
    for f in files:  # inlined again: one file each, loadable with its weights
        assert not Path(f + ".data").exists()
        assert onnx.load(f).graph.initializer
