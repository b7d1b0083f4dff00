"""Checks shared by the block tests: symbolic torch.fx tracing bit for bit, and ONNX export run on ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import torch
from torch.export import Dim

ONNX_ATOL = 1e-5
ONNX_RTOL = 1e-5


def seeded(module: torch.nn.Module, seed: int = 0, std: float = 0.3) -> torch.nn.Module:
    """Every parameter redrawn from N(0, std) (biases and norm scales included), eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module.eval()


def flat(out) -> list[torch.Tensor]:
    """A module output (tensor, or nested tuple of tensors) as a flat list."""
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for item in out for t in flat(item)]


def assert_traceable(module: torch.nn.Module, *args, concrete_args: dict | None = None) -> torch.fx.GraphModule:
    """`torch.fx.symbolic_trace(module, concrete_args)` runs and its output equals eager bit for bit on `args`
    (eval mode; `args` go to both, concrete arguments in their places with their concrete values)."""
    module.eval()
    gm = torch.fx.symbolic_trace(module, concrete_args=concrete_args)
    with torch.no_grad():
        eager, traced = flat(module(*args)), flat(gm(*args))
    assert len(eager) == len(traced)
    for a, b in zip(eager, traced, strict=True):
        assert torch.equal(a, b), f"{type(module).__name__}: traced output differs from eager"
    return gm


def assert_onnx_matches(
    module: torch.nn.Module,
    example: tuple,
    names: list[str],
    dynamic: dict[str, dict[int, str | int]],
    path: Path,
    cases: list[tuple],
    min_sizes: dict[str, int] | None = None,
) -> None:
    """Export `module(*example)` with the dynamo exporter (inputs `names`, {input: {axis: dim name}} dynamic,
    each dim >= 1 unless `min_sizes` says otherwise), then run every input tuple of `cases` on ONNX Runtime
    and compare each output with eager within ONNX_ATOL/ONNX_RTOL."""
    module.eval()
    dims: dict[str, Dim] = {}
    for axes in dynamic.values():
        for name in axes.values():
            dims.setdefault(name, Dim(name, min=(min_sizes or {}).get(name, 1)))
    shapes = tuple({axis: dims[n] for axis, n in dynamic[name].items()} if name in dynamic else None for name in names)
    program = torch.onnx.export(module, example, dynamo=True, input_names=names, dynamic_shapes=shapes)
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for args in cases:
        with torch.no_grad():
            expected = flat(module(*args))
        got = session.run(None, {n: a.numpy() for n, a in zip(names, args, strict=True)})
        assert len(got) == len(expected)
        for e, g in zip(expected, got, strict=True):
            torch.testing.assert_close(torch.from_numpy(g), e, atol=ONNX_ATOL, rtol=ONNX_RTOL)
