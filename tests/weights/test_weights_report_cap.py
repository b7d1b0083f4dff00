"""A checkpoint with hundreds of problems prints the first 50 diagnostics, a count of the rest and the summary
line, as spec errors do; the error keeps every diagnostic for callers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mmspec import cli
from mmspec.api import build, load_spec
from mmspec.errors import MAX_PRINTED_DIAGNOSTICS, WeightsError

ROOT = Path(__file__).resolve().parents[2]
BERT = ROOT / "specs" / "bert.yaml"


def test_a_flood_of_unexpected_tensors_is_capped(tmp_path, capsys):
    path = tmp_path / "many.safetensors"
    save_file({f"stray.{i}": torch.zeros(1) for i in range(300)}, str(path))
    with pytest.raises(WeightsError) as info:
        build(load_spec(BERT, "tiny"), weights=path)
    unexpected = [d for d in info.value.diagnostics if d.code == "unexpected-tensor"]
    assert len(unexpected) == MAX_PRINTED_DIAGNOSTICS  # the rest are counted, never turned into messages
    assert info.value.hidden == {"unexpected-tensor": 300 - MAX_PRINTED_DIAGNOSTICS}
    code = cli.run(["summary", str(BERT), "-v", "tiny", "--weights", str(path)])
    lines = capsys.readouterr().err.splitlines()
    located = [line for line in lines if ": error[" in line]
    hidden = len(info.value.diagnostics) + sum(info.value.hidden.values()) - MAX_PRINTED_DIAGNOSTICS
    assert code == 2 and len(located) == MAX_PRINTED_DIAGNOSTICS
    assert f"...and {hidden} more" in lines and lines[-1].startswith("error: cannot load weights")
