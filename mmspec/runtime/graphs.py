"""`Graph`: one compiled graph as a callable on numpy arrays; `OnnxGraph`: an ONNX file on ONNX Runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


class Graph(Protocol):
    """{input name: array} -> {output name: array}, with the names it takes and returns."""

    input_names: list[str]
    output_names: list[str]

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class OnnxGraph:
    """An ONNX file on ONNX Runtime (CPU, or CUDA with CPU fallback), full graph optimizations, quiet logging."""

    def __init__(self, path: str | Path, device: str = "cpu", threads: int = 0):
        if device not in ("cpu", "cuda"):
            raise ValueError(f"unknown device {device!r}; use 'cpu' or 'cuda'")
        if device == "cuda" and CUDA not in ort.get_available_providers():
            raise RuntimeError(f"onnxruntime {ort.__version__} has no {CUDA}")
        options = ort.SessionOptions()
        options.log_severity_level = 4  # errors reach the caller as exceptions; ORT prints nothing itself
        options.intra_op_num_threads = threads
        providers = [(CUDA, {"use_tf32": "0"}), CPU] if device == "cuda" else [CPU]
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise KeyError(f"{self.path.name}: missing inputs {missing}; it takes {self.input_names}")
        outs = self.session.run(self.output_names, {n: feeds[n] for n in self.input_names})
        return dict(zip(self.output_names, outs, strict=True))
