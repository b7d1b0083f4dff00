"""Every registered component, through every one of its registry examples (mmspec.testing.check_example):
plan, bit-exact capture, parameter formula vs meta device, ONNX export verified on ORT, a training step for
objectives, weight-layout round trips. A component without examples, or a layout no example covers, fails."""

from __future__ import annotations

import pytest

from mmspec.registry import list_components
from mmspec.testing import check_example, covered_layouts

CASES = [(c, ex) for c in list_components() for ex in c.examples]


@pytest.mark.parametrize("component", list_components(), ids=lambda c: f"{c.slot}/{c.name}")
def test_every_component_has_examples_and_a_summary(component):
    assert component.examples, f"{component.slot}/{component.name}: register it with at least one Example"
    names = [ex.name for ex in component.examples]
    assert len(set(names)) == len(names), f"{component.name}: example names repeat: {names}"
    assert component.summary, f"{component.name}: the config class needs a docstring (shown by `mmspec components`)"


@pytest.mark.parametrize(("component", "example"), CASES, ids=[f"{c.slot}/{c.name}/{e.name}" for c, e in CASES])
def test_example(component, example, tmp_path):
    report = check_example(component, example, tmp_path)
    expected = {"plan", "capture"} | ({"export"} if component.exportable else set())
    expected |= {"fit"} if component.slot == "objectives" else set()
    expected |= {"params"} if hasattr(component.config, "estimate_params") else set()
    assert expected <= set(report.checked), f"{component.name}: {sorted(expected - set(report.checked))} not checked"


@pytest.mark.parametrize("component", [c for c in list_components() if c.config.weight_layouts],
                         ids=lambda c: f"{c.slot}/{c.name}")
def test_every_weight_layout_is_covered_by_an_example(component, tmp_path):
    covered: set[str] = set()
    for example in component.examples:
        covered |= set(covered_layouts(component, example, tmp_path))
    missing = sorted(set(component.config.weight_layouts) - covered)
    assert not missing, f"{component.name}: layouts {missing} name only part of every example's tensors"
