"""Differential fuzzing of the compiler: random valid specs from the registry (fuzz_specs.py), each checked
against eager PyTorch by the oracles in differential.py.

Profiles (tests/conftest.py): the default `ci` profile runs 200 derandomized specs through the
graph/pass oracles and 200 more, four to an export, through ONNX Runtime; `--hypothesis-profile nightly`
runs 5,000 of each with random seeds, and the nightly-marked tests add more opsets. Every failure
found is kept below as an explicit `@example` (the shrunk spec), next to the fix it led to.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import fuzz_specs as fs
import pytest
import torch
from differential import check_eager_graph_passes, check_onnx, load
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from mmspec.spec.budget import estimate


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
ONNX_EXAMPLES = max(1, settings.default.max_examples // SPECS_PER_EXPORT)


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
    """Each exportable registered component is generated (in some position) within a few hundred draws."""
    seen: set[tuple[str, str]] = set()

    @settings(max_examples=300, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(spec=fs.specs())
    def collect(spec):
        for slot in fs.EXPORT_SLOTS:
            seen.update((slot, c["type"]) for c in spec.get(slot, {}).values())

    collect()
    missing = sorted(set(fs.registered_exportable()) - seen)
    assert not missing, f"the spec strategy never generates {missing}; give them a recipe in fuzz_specs.py"


@pytest.mark.nightly
@pytest.mark.parametrize("opset", [18, 23])
@settings(FUZZ, max_examples=ONNX_EXAMPLES)
@given(parts=batches())
def test_onnx_runtime_agrees_with_eager_at_other_opsets(parts, opset):
    with tempfile.TemporaryDirectory() as tmp:
        check_onnx(load(merged(parts, Path(tmp)), Path(tmp)), opset=opset)
