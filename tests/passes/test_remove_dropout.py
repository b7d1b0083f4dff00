"""remove_dropout: fire count, structure, exact parity with eager, and the cases it must leave alone."""

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from mmspec.passes import PassResult, PostconditionError, PreconditionError, RemoveDropout


def _op_kinds(gm: fx.GraphModule) -> list[str]:
    return [n.op for n in gm.graph.nodes]


class _Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.drop = nn.Dropout(0.3)
        self.alpha = nn.AlphaDropout(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.fc(x))
        x = F.dropout(x, 0.5, training=False)
        x = F.dropout(x, 0.5, False)
        return self.alpha(x)


def test_removes_modules_and_eval_functional_dropout():
    model = _Mixed().eval()
    gm = fx.symbolic_trace(model)
    x = torch.randn(4, 8)
    assert len(gm.graph.nodes) == 7

    p = RemoveDropout()
    result = p(gm)

    assert result.modified and result.graph_module is gm
    assert p.fired == 4
    assert _op_kinds(gm) == ["placeholder", "call_module", "output"]
    assert not hasattr(gm, "drop") and not hasattr(gm, "alpha")
    assert isinstance(model.drop, nn.Dropout)  # the eager model keeps its modules
    torch.testing.assert_close(gm(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("module", "shape"),
    [
        (nn.Dropout(0.9), (2, 3, 5)),
        (nn.Dropout1d(0.5), (2, 3, 5)),
        (nn.Dropout2d(0.5), (2, 3, 4, 5)),
        (nn.Dropout3d(0.5), (2, 3, 4, 4, 5)),
        (nn.AlphaDropout(0.5), (2, 3, 5)),
        (nn.FeatureAlphaDropout(0.5), (2, 3, 4, 5)),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else None,
)
def test_every_dropout_module_kind(module: nn.Module, shape: tuple[int, ...]):
    model = nn.Sequential(nn.Conv1d(3, 3, 1) if len(shape) == 3 else nn.Identity(), module, nn.ReLU()).eval()
    gm = fx.symbolic_trace(model)
    x = torch.randn(shape)
    nodes_before = len(gm.graph.nodes)

    p = RemoveDropout()
    assert p(gm).modified

    assert p.fired == 1
    assert len(gm.graph.nodes) == nodes_before - 1
    assert not any(type(m) is type(module) for m in gm.modules())
    torch.testing.assert_close(gm(x), model(x), rtol=0, atol=0)


def _functional_graph(call: tuple) -> fx.GraphModule:
    """x -> call(x) -> relu, built by hand so argument defaults stay absent."""
    graph = fx.Graph()
    x = graph.placeholder("x")
    target, args, kwargs = call
    y = graph.call_function(target, (x, *args), kwargs)
    graph.output(graph.call_function(torch.relu, (y,)))
    return fx.GraphModule(nn.Module().eval(), graph)


@pytest.mark.parametrize(
    "call",
    [
        (F.dropout, (), {}),  # training defaults to True
        (F.dropout, (0.5, True), {}),
        (F.dropout2d, (), {"training": True}),
    ],
    ids=["dropout-default", "dropout-positional-true", "dropout2d-kwarg-true"],
)
def test_leaves_training_functional_dropout(call: tuple):
    gm = _functional_graph(call)
    code_before = gm.code

    p = RemoveDropout()
    result = p(gm)

    assert not result.modified
    assert p.fired == 0
    assert gm.code == code_before


@pytest.mark.parametrize(
    "call",
    [
        (F.dropout, (), {"training": False}),
        (F.dropout, (0.5, False), {}),
        (F.alpha_dropout, (0.5,), {}),  # training defaults to False
        (F.feature_alpha_dropout, (), {}),
    ],
    ids=["dropout-kwarg-false", "dropout-positional-false", "alpha-default", "feature-alpha-default"],
)
def test_removes_eval_functional_dropout(call: tuple):
    gm = _functional_graph(call)
    target, args, kwargs = call
    x = torch.randn(2, 3, 4, 5)
    expected = torch.relu(target(x, *args, **kwargs))

    p = RemoveDropout()
    assert p(gm).modified

    assert p.fired == 1
    assert _op_kinds(gm) == ["placeholder", "call_function", "output"]
    torch.testing.assert_close(gm(x), expected, rtol=0, atol=0)


def test_training_mode_is_a_precondition_error():
    gm = fx.symbolic_trace(_Mixed().train())
    with pytest.raises(PreconditionError, match="eval-mode"):
        RemoveDropout()(gm)


def test_one_submodule_in_training_mode_is_a_precondition_error():
    model = _Mixed().eval()
    gm = fx.symbolic_trace(model)
    gm.drop.train()
    with pytest.raises(PreconditionError, match="drop"):
        RemoveDropout()(gm)


def test_ensures_catches_a_pass_that_leaves_dropout():
    class DoesNothing(RemoveDropout):
        def call(self, gm: fx.GraphModule) -> PassResult:
            return PassResult(gm, False)

    gm = fx.symbolic_trace(_Mixed().eval())
    with pytest.raises(PostconditionError, match="drop"):
        DoesNothing()(gm)
