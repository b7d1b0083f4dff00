"""Node names that torch's module container already uses are refused by the planner, at the node's key."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from mmspec import api
from mmspec.errors import SpecError
from mmspec.spec.base import Name
from mmspec.spec.model import RESERVED_NODE_NAMES

SPEC = """\
mmspec: 1
name: names
modalities:
  x: {{type: vector, dim: 4}}
heads:
  {node}: {{type: classifier, input: x, num_classes: 3}}
"""


def test_the_reserved_names_are_the_installed_torch_containers_attributes():
    """In a fresh interpreter: other libraries imported in this one patch nn.Module (transformers adds
    `smart_apply`)."""
    code = "import torch.nn as nn; print('\\n'.join(dir(nn.ModuleDict())))"
    names = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    pattern = re.compile(Name.__metadata__[0].pattern)
    assert frozenset(n for n in names.stdout.split() if pattern.fullmatch(n)) == RESERVED_NODE_NAMES


@pytest.mark.parametrize("node", ["forward", "keys", "training", "float"])
def test_a_reserved_node_name_is_a_located_error(node, tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(node=node))
    with pytest.raises(SpecError) as info:
        api.load_spec(path)
    (d,) = info.value.diagnostics
    assert (d.code, d.line, d.col) == ("bad-name", 6, 3) and "rename the node" in d.message, d


@pytest.mark.parametrize("node", ["backward", "plan", "forward_"])
def test_other_names_build(node, tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(node=node))
    api.build(api.load_spec(path))
