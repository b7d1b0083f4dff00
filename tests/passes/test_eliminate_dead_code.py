"""eliminate_dead_code: fire count, structure, parity, and the nodes and inputs it must keep."""

import torch
import torch.nn.functional as F
from torch import fx, nn

from mmspec.passes import EliminateDeadCode


class _DeadBranches(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)
        self.dead = nn.Linear(6, 6)
        self.encoder = nn.Module()
        self.encoder.scale = nn.Parameter(torch.randn(6))
        self.encoder.shift = nn.Parameter(torch.randn(6))

    def forward(self, x: torch.Tensor, unused: torch.Tensor) -> torch.Tensor:
        self.dead(x)  # result dropped
        _ = x * self.encoder.scale  # get_attr + mul, dropped
        y = torch.relu(x + self.encoder.shift)  # [N, 6]
        return self.fc(y)  # [N, 4]


def test_removes_dead_nodes_modules_and_parameters():
    model = _DeadBranches().eval()
    gm = fx.symbolic_trace(model)
    x, unused = torch.randn(3, 6), torch.randn(1)
    assert len(gm.graph.nodes) == 10

    p = EliminateDeadCode()
    result = p(gm)

    assert result.modified and p.fired == 3  # dead, encoder.scale, mul
    assert [n.op for n in gm.graph.nodes] == [
        "placeholder",
        "placeholder",
        "get_attr",
        "call_function",
        "call_function",
        "call_module",
        "output",
    ]
    assert sorted(p.deleted_attributes) == ["dead", "encoder.scale"]
    assert not hasattr(gm, "dead") and not hasattr(gm.encoder, "scale")
    assert hasattr(model, "dead") and hasattr(model.encoder, "scale")  # eager model untouched
    torch.testing.assert_close(gm(x, unused), model(x, unused), rtol=0, atol=0)


def test_keeps_unused_placeholders_and_clean_graphs():
    class Clean(nn.Module):
        def forward(self, x: torch.Tensor, unused: torch.Tensor) -> torch.Tensor:
            return x * 2

    gm = fx.symbolic_trace(Clean())
    code_before = gm.code

    p = EliminateDeadCode()
    result = p(gm)

    assert not result.modified and p.fired == 0 and p.deleted_attributes == []
    assert gm.code == code_before
    assert [n.name for n in gm.graph.find_nodes(op="placeholder")] == ["x", "unused"]


def test_keeps_in_place_ops_whose_result_is_unused():
    """symbolic_trace graphs mark none of these impure; erasing them would change the output."""

    class InPlace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act = nn.ReLU(inplace=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x * 1.0
            y.add_(1.0)  # call_method add_
            torch.sigmoid_(y)  # call_function sigmoid_
            F.hardtanh(y, 0.55, 0.7, True)  # inplace by position
            F.threshold(y, 0.6, 0.0, inplace=True)  # inplace by keyword
            y.sub_(0.65)
            self.act(y)  # module with inplace=True
            return y

    model = InPlace().eval()
    gm = fx.symbolic_trace(model)
    x = torch.randn(4, 5)
    nodes_before = len(gm.graph.nodes)

    p = EliminateDeadCode()
    p(gm)

    assert p.fired == 0, gm.graph
    assert len(gm.graph.nodes) == nodes_before
    torch.testing.assert_close(gm(x.clone()), model(x.clone()), rtol=0, atol=0)


def test_removes_orphan_submodule_and_parameter_without_touching_nodes():
    model = nn.Sequential(nn.Linear(3, 3)).eval()
    gm = fx.symbolic_trace(model)
    gm.add_submodule("orphan", nn.Linear(2, 2))
    gm.register_parameter("stray", nn.Parameter(torch.zeros(2)))
    x = torch.randn(2, 3)

    p = EliminateDeadCode()
    result = p(gm)

    assert result.modified and p.fired == 0
    assert sorted(p.deleted_attributes) == ["orphan", "stray"]
    assert [name for name, _ in gm.named_parameters()] == ["0.weight", "0.bias"]
    torch.testing.assert_close(gm(x), model(x), rtol=0, atol=0)
