"""Add a new fusion component in one file and use it in a spec: a learned gate between two vectors.

    python examples/custom_fusion.py

A component is a config class (its `type` literal is its name) with shape rules (`infer`, torch-free), a
builder (`build`) and at least one `Example`; `@register` binds them. The spec can then use `type: gated_sum`,
and `mmspec.testing.check_example` runs on it every check the built-in components pass (bit-exact capture,
ONNX export verified on ONNX Runtime, ...). In the package, the same component would be one folder under
mmspec/components/fusion/ (config in `__init__.py`, module in `module.py`) plus one line in FAMILIES.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

import torch
from torch import nn

import mmspec
from mmspec.registry import Example, get_component, register
from mmspec.spec.base import ComponentConfig, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo
from mmspec.testing import check_example


class GatedSumModule(nn.Module):
    """g * a + (1 - g) * b with g = sigmoid(W [a; b])."""

    def __init__(self, dim: int):
        super().__init__()
        self.gate = nn.Linear(2 * dim, dim)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        a = next(iter(inputs["a"].values()))  # B,D
        b = next(iter(inputs["b"].values()))  # B,D
        g = torch.sigmoid(self.gate(torch.cat([a, b], dim=-1)))  # B,D
        return {"fused": g * a + (1 - g) * b}


VECTORS = {"a": {"type": "vector", "dim": 6}, "b": {"type": "vector", "dim": 6}}


@register("fusion", examples=[Example(VECTORS, {"a": "a", "b": "b"})], notes="from examples/custom_fusion.py")
class GatedSum(ComponentConfig):
    """Gated sum of two equally wide vectors. Emits `fused`."""

    type: Literal["gated_sum"]
    a: Ref
    """The first vector [batch, D]."""
    b: Ref
    """The second vector, as wide as the first."""

    def references(self) -> dict[str, str]:
        return {"a": self.a, "b": self.b}

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        (ta,), (tb,) = inputs["a"].values(), inputs["b"].values()
        if ta.shape != tb.shape:
            raise CheckError("b", f"{self.b!r} has shape {list(tb.shape)} but {self.a!r} has {list(ta.shape)}")
        return {"fused": TensorInfo(ta.shape)}

    def build(self, inputs: dict[str, Bundle], ctx) -> nn.Module:
        return GatedSumModule(next(iter(inputs["a"].values())).width)


SPEC = """
mmspec: 1
name: gated_late_fusion
modalities:
  image: {type: image, channels: 3, height: 32, width: 32}
  tabular: {type: vector, dim: 12}
encoders:
  vision:
    type: transformer
    input: image
    embed: {type: patches, patch_size: 8}
    width: 16
    layers: 1
    heads: 2
    ffn: 32
    norm: pre
    pool: {type: cls}
fusion:
  gate: {type: gated_sum, a: vision.pooled, b: tabular_proj.embedding}
heads:
  tabular_proj: {type: projection, input: tabular, dim: 16}
  label: {type: classifier, input: gate.fused, num_classes: 3}
outputs: [label]
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        component = get_component("gated_sum")
        checked = check_example(component, component.examples[0], tmp)
        print(f"gated_sum passes the registry checks: {', '.join(checked.checked)}")
        path = Path(tmp) / "gated.yaml"
        path.write_text(SPEC)
        report = mmspec.compile(path, out_dir=tmp)
        print(f"{report['name']}: {report['params']['by_component']}; verified: {report['verification']['passed']}")


if __name__ == "__main__":
    main()
