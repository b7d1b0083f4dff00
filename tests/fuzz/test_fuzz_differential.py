"""Differential fuzzing of the compiler: random valid specs from the registry (fuzz_specs.py), each checked
against eager PyTorch by the oracles in differential.py.

Profiles (tests/conftest.py): the default `ci` profile runs 200 derandomized specs through the
graph/pass oracles and 100 more, four to an export, through ONNX Runtime; `--hypothesis-profile nightly`
runs 5,000 and 2,500 with random seeds, and the nightly-marked tests add more opsets. Every failure
found is kept below as an explicit `@example` (the shrunk spec), next to the fix it led to.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

import fuzz_specs as fs
import pytest
import torch
from differential import check_eager_graph_passes, check_onnx, load
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from mmspec.registry import Example, components, register, unregister
from mmspec.spec.base import ComponentConfig, Ref
from mmspec.spec.budget import estimate
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo
from mmspec.testing import check_example


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine pay dearly for them (a
    200-spec run took 124 s with the default threads, 15 s with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                      HealthCheck.large_base_example])
SPECS_PER_EXPORT = 4
ONNX_EXAMPLES = max(1, settings.default.max_examples // (2 * SPECS_PER_EXPORT))
"""Exports through ONNX Runtime: half the profile's specs, four to an export (each export costs 10-15 s on 2 busy
cores, the default suite's longest test; the nightly profile still runs 2,500)."""


def batches(size: int = SPECS_PER_EXPORT) -> st.SearchStrategy[list[dict]]:
    """`size` independent specs with distinct name prefixes, to be exported as one model."""
    return st.tuples(*(fs.specs(prefix=f"{chr(ord('a') + i)}_", max_nodes=4) for i in range(size))).map(list)


def merged(parts: list[dict], directory: Path) -> dict:
    outputs = [[f"{node}.{field}" for _, node, field in load(p, directory, f"part{i}.yaml").plan.outputs]
               for i, p in enumerate(parts)]
    return fs.merge(parts, outputs)


# Regressions. The first failure the fuzzer found was a spec whose dynamic axis could only have size 1
# (`max_length: 1`): it validated, then the exporter refused it (`Dim(min=1, max=1)`). That spec is now a
# `check` error (tests/corpus/cross/dynamic_axis_max_1.yaml); its legal neighbour, an axis whose maximum is
# the trace size 2, is kept here, with an axis that is both a batch and a length axis (legal, if odd).
SMALLEST_DYNAMIC_AXIS = {
    "mmspec": 1, "name": "fuzz", "seed": 0,
    "modalities": {"m1": {"type": "tokens", "vocab_size": 2, "length": "seq", "max_length": 2, "mask": True},
                   "m2": {"type": "image", "channels": 1, "height": 4, "width": 4}},
    "encoders": {"res3": {"type": "resnet", "input": "m2", "block": "bottleneck", "reduction": 1, "depths": [1],
                          "widths": [1], "stem": 1},
                 "tra4": {"type": "transformer", "input": "m1", "embed": {"type": "tokens", "positions": 2},
                          "width": 2, "heads": 1, "layers": 1, "ffn": 2, "pool": {"type": "mean"}}},
    "heads": {"cla5": {"type": "classifier", "input": "tra4.pooled", "num_classes": 1}},
    "outputs": ["res3.features", "cla5.logits"],
}
BATCH_IS_LENGTH = {
    "mmspec": 1, "name": "fuzz", "seed": 3,
    "modalities": {"m1": {"type": "sequence", "batch": "seq", "dim": 3, "length": "seq", "max_length": 5}},
    "heads": {"mlp2": {"type": "mlp", "input": "m1", "dim": 2, "hidden": [4], "norm": "batch"}},
}


@FUZZ
@given(spec=fs.specs())
@example(spec=SMALLEST_DYNAMIC_AXIS)
@example(spec=BATCH_IS_LENGTH)
def test_captured_graph_and_every_pass_agree_with_eager(spec):
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load(spec, Path(tmp))
        facts = check_eager_graph_passes(loaded)
    for name in facts["fired"]:
        event(f"pass fired: {name}")
    event(f"finite cases: {facts['finite_cases']}/{facts['cases']}")


@settings(FUZZ, max_examples=ONNX_EXAMPLES)
@given(parts=batches())
@example(parts=[SMALLEST_DYNAMIC_AXIS])
@example(parts=[BATCH_IS_LENGTH])
def test_onnx_runtime_agrees_with_eager(parts):
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load(merged(parts, Path(tmp)), Path(tmp))
        check_onnx(loaded)


@FUZZ
@given(spec=fs.specs())
def test_generated_specs_are_valid_and_their_estimates_exact(spec):
    """Every generated spec loads (the strategy is not allowed to hide invalid specs by filtering them), and
    the budget formula equals the parameter count of a meta-device build."""
    from mmspec import api

    with tempfile.TemporaryDirectory() as tmp:
        loaded = load(spec, Path(tmp))
    est = estimate(loaded.spec, loaded.plan)
    counts = api.param_counts(api.build(loaded, device="meta"))["by_component"]
    assert {n: counts[n] for n in est.by_node} == est.by_node


def test_strategy_reaches_every_exportable_component():
    """Each exportable registered component can be generated: asked to place it first, the strategy produces a
    valid spec holding it within a few draws (the registry grows, so reaching each by chance is not checked)."""
    seen: set[tuple[str, str]] = set()

    def drawn(slot: str, name: str) -> bool:
        @settings(max_examples=5, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(spec=fs.specs(must=components(slot)[name]))
        def collect(spec):
            seen.update((s, c["type"]) for s in fs.EXPORT_SLOTS for c in spec.get(s, {}).values())

        collect()
        return (slot, name) in seen

    missing = [(slot, name) for slot, name in sorted(fs.registered_exportable()) if not drawn(slot, name)]
    assert not missing, f"the spec strategy never generates {missing}; give them an `Example` in the registry"


class GatedSumModule(torch.nn.Module):
    """g * a + (1 - g) * b with g = sigmoid(W [a; b])."""

    def __init__(self, dim: int):
        super().__init__()
        self.gate = torch.nn.Linear(2 * dim, dim)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        (a,), (b,) = inputs["a"].values(), inputs["b"].values()  # B,D each
        g = torch.sigmoid(self.gate(torch.cat([a, b], dim=-1)))  # B,D
        return {"fused": g * a + (1 - g) * b}


class GatedSum(ComponentConfig):
    """A learned gated sum of two equally shaped float vectors; registered by the `gated_sum` fixture only."""

    type: Literal["gated_sum"]
    a: Ref
    b: Ref

    def references(self) -> dict[str, str]:
        return {"a": self.a, "b": self.b}

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        a, b = (_vector(inputs[port], port) for port in ("a", "b"))
        if a.shape != b.shape:
            raise CheckError("b", f"{self.b!r} has shape {list(b.shape)} but {self.a!r} has {list(a.shape)}")
        return {"fused": a}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        width = _vector(inputs["a"], "a").width
        return 2 * width * width + width

    def build(self, inputs: dict[str, Bundle], ctx) -> torch.nn.Module:
        return GatedSumModule(_vector(inputs["a"], "a").width)


def _vector(bundle: Bundle, port: str) -> TensorInfo:
    (info,) = bundle.values() if len(bundle) == 1 else (None,)
    if info is None or info.rank != 2 or info.dtype != "float32" or not isinstance(info.width, int):
        raise CheckError(port, "gated_sum needs one float vector [batch, D] per input")
    return info


@pytest.fixture
def gated_sum():
    """`gated_sum` in the registry for one test only (other tests parametrize over the registry when collected)."""
    register("fusion", examples=[Example({"a": {"type": "vector", "dim": 4}, "b": {"type": "vector", "dim": 4}},
                                         {"a": "a", "b": "b"})])(GatedSum)
    yield
    unregister("fusion", "gated_sum")
    assert "gated_sum" not in components("fusion")


def test_a_component_registered_at_runtime_is_fuzzed(gated_sum, tmp_path):
    """A component registered by user code, with an example and no edit in tests/, passes the registry checks
    (built, captured, parameter formula, exported and verified), is exported in generated specs, also in
    positions its example does not have, and those specs pass the differential oracles."""
    component = components("fusion")["gated_sum"]
    report = check_example(component, component.examples[0], tmp_path)
    assert {"plan", "capture", "params", "export"} <= set(report.checked), report.checked
    positions: dict[tuple[str, ...], dict] = {}  # what the exported gated_sum nodes read -> the first such spec

    @settings(max_examples=300, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(spec=fs.specs())
    def collect(spec):
        if any(c["type"] == "gated_sum" for c in spec.get("fusion", {}).values()):
            with tempfile.TemporaryDirectory() as tmp:
                plan = load(spec, Path(tmp)).plan
            inputs = tuple(s for n in plan.export_nodes if n.config.type == "gated_sum" for s, _ in n.inputs.values())
            if inputs:
                positions.setdefault(inputs, spec)

    collect()
    assert positions, "the spec strategy never exports a gated_sum"
    # Its example reads two distinct modalities; the same tensor twice, or a node's output, is the generator's.
    rewired = [p for p, spec in positions.items() if len(set(p)) < len(p) or set(p) - set(spec["modalities"])]
    assert rewired, f"gated_sum is only ever exported reading {sorted(positions)}; references are not rewired"
    with tempfile.TemporaryDirectory() as tmp:
        for position in [rewired[0], *(p for p in positions if p != rewired[0])][:3]:
            check_eager_graph_passes(load(positions[position], Path(tmp)))
            check_onnx(load(positions[position], Path(tmp)))
