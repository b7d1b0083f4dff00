"""The spec generator (fuzz_specs.py) reports a component whose shape rule crashes instead of dropping it.

A shape rule refuses inputs with a CheckError (and a config with a pydantic ValidationError); any other
exception from `infer` is a bug that plan() would not catch either, so the generator must let it through.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import fuzz_specs as fs
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from mmspec.registry import Example, components, register, unregister
from mmspec.spec.base import ComponentConfig, Ref
from mmspec.spec.tensors import Bundle, CheckError

CRASHES = {"KeyError": KeyError, "TypeError": TypeError, "AttributeError": AttributeError, "IndexError": IndexError}


class CrashOffExample(ComponentConfig):
    """Accepts one float vector; its shape rule crashes (with `CRASH`) on any width but its example's 4."""

    type: Literal["crash_off_example"]
    a: Ref
    CRASH: ClassVar[type[Exception]] = KeyError

    def references(self) -> dict[str, str]:
        return {"a": self.a}

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        (info,) = inputs["a"].values() if len(inputs["a"]) == 1 else (None,)
        if info is None or info.rank != 2 or info.dtype != "float32":
            raise CheckError("a", "needs one float vector")
        if info.width != 4:
            raise type(self).CRASH("width")
        return {"out": info}


@pytest.fixture(params=sorted(CRASHES))
def crashing(request):
    """`crash_off_example` registered (as a fusion) for one test, raising the parametrized exception."""
    CrashOffExample.CRASH = CRASHES[request.param]
    register("fusion", examples=[Example({"v": {"type": "vector", "dim": 4}}, {"a": "v"})])(CrashOffExample)
    yield CRASHES[request.param]
    unregister("fusion", "crash_off_example")
    assert "crash_off_example" not in components("fusion")


def test_a_crash_in_infer_is_reported(crashing):
    drawn = []

    @settings(max_examples=300, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(spec=fs.specs())
    def draw(spec):
        drawn.append(spec)

    with pytest.raises(crashing, match="width"):
        draw()
    assert len(drawn) < 300
