"""Components that join two inputs refuse inputs with different batch axes at validation, with a located
diagnostic, instead of failing in torch at run time (found by the front-end fuzzer)."""

from __future__ import annotations

import pytest
import yaml

from mmspec.api import build, load_spec
from mmspec.errors import SpecError
from mmspec.registry import list_components
from mmspec.testing import write_example

MODALITIES = {"a": {"type": "vector", "dim": 4, "batch": "batch"},
              "b": {"type": "vector", "dim": 4, "batch": "rows"}}
IMAGE = {"type": "image", "channels": 3, "height": 16, "width": 16, "batch": "rows"}
HEADS = {
    "concat_classifier": ({"inputs": {"image": "a", "text": "b"}, "hidden": 4, "num_classes": 2}, {}, "inputs.text"),
    "dcgan_generator": ({"input": "a", "condition": "b", "widths": [4]}, {}, "condition"),
    "dfgan_generator": ({"input": "a", "condition": "b", "widths": [4, 4]}, {}, "condition"),
    "stackgan_refiner": ({"input": "img", "condition": "a", "encoder": [4, 4], "blocks": 1, "up": [4]},
                         {"img": IMAGE}, "condition"),
}


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_different_batch_axes_are_a_located_error(kind, tmp_path):
    node, extra, field = HEADS[kind]
    spec = {"mmspec": 1, "name": "joined", "modalities": {**MODALITIES, **extra},
            "heads": {"h": {"type": kind, **node}}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    text = err.value.render()
    assert "same batch axis" in text, text
    key = field.split(".")[-1] + ":"
    line = next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if ln.strip().startswith(key))
    assert f"spec.yaml:{line}:" in text, text


def _joined(example) -> bool:
    return len(example.modalities) >= 2


JOINED = [(c, ex) for c in list_components() for ex in c.examples if _joined(ex)]


@pytest.mark.parametrize(("component", "example"), JOINED, ids=[f"{c.slot}/{c.name}/{e.name}" for c, e in JOINED])
def test_every_example_with_a_second_batch_axis_is_refused_or_runs(component, example, tmp_path):
    """Each registry example that reads two or more modalities, with one of them moved to its own batch axis
    (`rows`, traced at a size other than `batch`'s): validation refuses it with a SpecError, or the built model
    runs on the two batch sizes. What it must not do is validate and then fail in torch (the fuzzer found
    attngan_stage doing that)."""
    import torch

    from mmspec.graph.inputs import make_inputs, trace_sizes

    tree = yaml.safe_load(write_example(component, example, tmp_path).read_text())
    for moved in list(tree["modalities"])[1:]:
        spec = {**tree, "modalities": {name: {**m, "batch": "rows"} if name == moved else m
                                       for name, m in tree["modalities"].items()}}
        path = tmp_path / f"{moved}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        try:
            loaded = load_spec(path)
        except SpecError:
            continue
        sizes = trace_sizes(loaded.plan)
        assert "rows" not in sizes or sizes["rows"] != sizes["batch"]
        with torch.no_grad():
            build(loaded)(make_inputs(loaded.plan, sizes, seed=1))
