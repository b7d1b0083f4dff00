"""Components that join two inputs refuse inputs with different batch axes at validation, with a located
diagnostic, instead of failing in torch at run time (found by the front-end fuzzer)."""

from __future__ import annotations

import pytest
import yaml

from mmspec.api import load_spec
from mmspec.errors import SpecError

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
