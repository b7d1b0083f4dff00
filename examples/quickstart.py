"""Compile the tiny BERT reference spec through the Python API and run the ONNX file on ONNX Runtime.

    python examples/quickstart.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import mmspec
from mmspec.graph.inputs import make_inputs, trace_sizes

SPEC = Path(__file__).resolve().parents[1] / "specs" / "bert.yaml"


def main() -> None:
    loaded = mmspec.load_spec(SPEC, variant="tiny")
    print(f"{loaded.stem}: inputs {[gi.name for gi in loaded.plan.graph_inputs]}, outputs "
          f"{[name for name, _, _ in loaded.plan.outputs]}")
    with tempfile.TemporaryDirectory() as out:
        report = mmspec.compile(SPEC, out_dir=out, variant="tiny")
        print(f"verified: {report['verification']['passed']} on {len(report['verification']['cases'])} runs")

        model = mmspec.build(loaded)  # same seed as the compile, so the same weights
        inputs = make_inputs(loaded.plan, {**trace_sizes(loaded.plan), "batch": 4})
        session = ort.InferenceSession(report["onnx"]["path"], providers=["CPUExecutionProvider"])
        got = session.run(None, {k: v.numpy() for k, v in inputs.items()})
        with torch.no_grad():
            expected = model(inputs)
        for name, a, b in zip(model.output_names, got, expected, strict=True):
            print(f"{name}: shape {list(a.shape)}, max |ort - eager| = {np.abs(a - b.numpy()).max():.2e}")
            assert np.allclose(a, b.numpy(), atol=1e-4, rtol=1e-3)


if __name__ == "__main__":
    main()
