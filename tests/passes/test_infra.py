"""PassManager and Pass contract: records, fixed point, interface invariant, error provenance."""

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from mmspec.errors import CompileError
from mmspec.passes import (
    DEFAULT_PIPELINE,
    EliminateDeadCode,
    FoldBatchNorm,
    Pass,
    PassError,
    PassManager,
    PassRecord,
    PassResult,
    PostconditionError,
    PreconditionError,
    RemoveDropout,
    run_default_pipeline,
)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4, 2)
        self.unused = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.drop(F.relu(self.bn(self.conv(x))))  # [N, 4, H, W]
        pooled = y.mean(dim=(2, 3))  # [N, 4]
        self.unused(pooled)
        return self.head(pooled), y


def _eval_net() -> _Net:
    model = _Net().eval()
    with torch.no_grad():
        model.bn.running_mean.normal_()
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.normal_()
        model.bn.bias.normal_()
    return model


class _Recorder(Pass):
    """Test-only: modifies nothing, counts calls."""

    name = "recorder"
    description = "count calls"

    def __init__(self, modify_times: int = 0) -> None:
        super().__init__()
        self.calls = 0
        self.modify_times = modify_times

    def call(self, gm: fx.GraphModule) -> PassResult:
        self.calls += 1
        return PassResult(gm, self.calls <= self.modify_times)


class _RenamePlaceholder(Pass):
    name = "rename_placeholder"
    description = "test-only: breaks the input interface"

    def call(self, gm: fx.GraphModule) -> PassResult:
        (x,) = gm.graph.find_nodes(op="placeholder")
        x.target = "renamed"
        gm.recompile()
        return PassResult(gm, True)


class _DropOutput(Pass):
    name = "drop_output"
    description = "test-only: breaks the output interface"

    def call(self, gm: fx.GraphModule) -> PassResult:
        (output,) = gm.graph.find_nodes(op="output")
        output.args = (output.args[0][:1],)
        gm.recompile()
        return PassResult(gm, True)


class _Boom(Pass):
    name = "boom"
    description = "test-only: fails"

    def call(self, gm: fx.GraphModule) -> PassResult:
        raise RuntimeError("kaboom")


class _NotInPlace(Pass):
    name = "not_in_place"
    description = "test-only: returns a copy"

    def call(self, gm: fx.GraphModule) -> PassResult:
        return PassResult(fx.GraphModule(gm, gm.graph), False)


def test_default_pipeline_order_and_records():
    names = [cls.name for cls in DEFAULT_PIPELINE]
    assert names == ["remove_dropout", "fold_batchnorm", "eliminate_dead_code"]
    model = _eval_net()
    gm = fx.symbolic_trace(model)
    x = torch.randn(2, 3, 6, 6)
    nodes_before = len(gm.graph.nodes)

    out_gm, records = run_default_pipeline(gm)

    assert out_gm is gm
    n = nodes_before
    assert [(r.name, r.modified, r.nodes_before, r.nodes_after) for r in records] == [
        ("remove_dropout", True, n, n - 1),  # drop
        ("fold_batchnorm", True, n - 1, n - 2),  # bn
        ("eliminate_dead_code", True, n - 2, n - 3),  # unused
    ]
    assert {name for name, _ in gm.named_modules()} == {"", "conv", "head"}
    for got, want in zip(gm(x), model(x), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_record_is_frozen_and_serialisable():
    record = PassRecord("p", False, 3, 3)
    assert record.as_dict() == {"name": "p", "modified": False, "nodes_before": 3, "nodes_after": 3}
    with pytest.raises(AttributeError):
        record.modified = True  # type: ignore[misc]


def test_manager_repeats_until_nothing_changes():
    gm = fx.symbolic_trace(nn.Sequential(nn.ReLU()).eval())
    a, b = _Recorder(modify_times=2), _Recorder()

    _, records = PassManager([a, b], max_iterations=5)(gm)

    assert a.calls == b.calls == 3  # modified in rounds 1 and 2, round 3 is the fixed point
    assert [r.modified for r in records] == [True, False, True, False, False, False]


def test_manager_stops_at_max_iterations():
    gm = fx.symbolic_trace(nn.Sequential(nn.ReLU()).eval())
    a = _Recorder(modify_times=10)

    _, records = PassManager([a], max_iterations=2)(gm)

    assert a.calls == 2 and len(records) == 2


@pytest.mark.parametrize(
    ("bad_pass", "match"),
    [
        (_RenamePlaceholder(), r"inputs \['x'\], 2 outputs -> inputs \['x \(target renamed\)'\]"),
        (_DropOutput(), r"2 outputs -> inputs \['x'\], 1 outputs"),
    ],
    ids=["renamed-placeholder", "dropped-output"],
)
def test_interface_change_is_a_postcondition_error(bad_pass: Pass, match: str):
    gm = fx.symbolic_trace(_eval_net())
    with pytest.raises(PostconditionError, match=match) as info:
        PassManager([RemoveDropout(), bad_pass])(gm)
    assert info.value.pass_name == bad_pass.name
    assert info.value.passes_run == ("remove_dropout",)


def test_failure_names_the_pass_and_the_passes_before_it():
    gm = fx.symbolic_trace(_eval_net())
    expected = r"pass 'boom' failed \(after \['remove_dropout', 'fold_batchnorm'\]\)"
    with pytest.raises(PassError, match=expected) as info:
        PassManager([RemoveDropout(), FoldBatchNorm(), _Boom()])(gm)
    assert type(info.value) is PassError
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "RuntimeError: kaboom" in str(info.value)


def test_precondition_error_keeps_its_type_through_the_manager():
    gm = fx.symbolic_trace(_Net().train())
    with pytest.raises(PreconditionError, match=r"pass 'remove_dropout' failed \(after \[\]\)") as info:
        PassManager([RemoveDropout()])(gm)
    assert info.value.pass_name == "remove_dropout"


def test_eval_check_ignores_fx_attribute_containers():
    """fx holds `block.scale` in a fresh nn.Module that starts in training mode; it never runs."""

    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = nn.Module()
            self.block.scale = nn.Parameter(torch.ones(3))
            self.drop = nn.Dropout()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.drop(x * self.block.scale)

    gm = fx.symbolic_trace(Scaled().eval())
    assert gm.block.training  # the container fx created
    assert RemoveDropout()(gm).modified


def test_a_pass_must_return_the_graph_module_it_was_given():
    gm = fx.symbolic_trace(nn.Sequential(nn.ReLU()).eval())
    with pytest.raises(PassError, match="in place"):
        _NotInPlace()(gm)


def test_manager_rejects_bad_arguments():
    with pytest.raises(TypeError, match="Pass instances"):
        PassManager(DEFAULT_PIPELINE)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_iterations"):
        PassManager([EliminateDeadCode()], max_iterations=0)


def test_errors_are_compile_errors():
    assert issubclass(PreconditionError, PassError) and issubclass(PostconditionError, PassError)
    assert issubclass(PassError, CompileError)
    assert PassError("x").exit_code == 1
