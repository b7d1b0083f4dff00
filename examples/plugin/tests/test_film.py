"""The plugin's own tests: its component passes every check mmspec runs on its built-in components, and the
package's spec compiles to a verified ONNX file. Run with the package installed: `pytest examples/plugin/tests`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mmspec
from mmspec.registry import get_component
from mmspec.testing import check_example

SPEC = Path(__file__).resolve().parents[1] / "src" / "mmspec_film" / "film.yaml"


@pytest.mark.parametrize("example", [e.name for e in get_component("film").examples])
def test_examples_pass_the_registry_checks(example, tmp_path):
    component = get_component("film")
    check_example(component, next(e for e in component.examples if e.name == example), tmp_path)


def test_film_scales_and_shifts_each_channel_by_the_condition():
    from mmspec_film.module import FilmModule

    film = FilmModule(condition=3, channels=4, hidden=None)
    x, c = torch.randn(2, 5, 4), torch.randn(2, 3)
    gamma, beta = film.to_gamma_beta(c).chunk(2, dim=-1)
    out = film({"input": {"sequence": x}, "condition": {"pooled": c}})["fused"]
    torch.testing.assert_close(out, gamma[:, None] * x + beta[:, None], atol=1e-6, rtol=1e-6)


def test_the_package_spec_compiles_and_verifies(tmp_path):
    from mmspec_film.module import FilmModule

    report = mmspec.compile(SPEC, tmp_path, "tiny")
    assert report["verification"]["passed"]
    film = FilmModule(condition=8, channels=8, hidden=4)  # the tiny sizes: 8-wide towers, hidden 4
    assert report["params"]["by_component"]["modulated"] == sum(p.numel() for p in film.parameters())
