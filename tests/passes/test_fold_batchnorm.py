"""fold_batchnorm: fire count, structure, parity with eager under randomised BN statistics, refusals."""

import pytest
import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from mmspec.passes import FoldBatchNorm, PassResult, PostconditionError, PreconditionError

RTOL, ATOL = 1e-5, 1e-5


def _randomize(model: nn.Module) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters; return eval model."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) and m.track_running_stats:
                m.running_mean.normal_(0.0, 2.0)
                m.running_var.uniform_(0.2, 3.0)
                if m.affine:
                    m.weight.normal_(1.0, 0.5)
                    m.bias.normal_(0.0, 1.0)
    return model.eval()


def _count(gm: fx.GraphModule, module_type: type[nn.Module]) -> int:
    return sum(
        n.op == "call_module" and type(gm.get_submodule(n.target)) is module_type for n in gm.graph.nodes
    )


class _Tracer(fx.Tracer):
    """Keeps _StandardizedConv a leaf, as mmspec's leaf-module registry would."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, _StandardizedConv) or super().is_leaf_module(m, qualname)


def _trace(model: nn.Module, x: torch.Tensor, shapes: bool = False) -> fx.GraphModule:
    gm = fx.GraphModule(model, _Tracer().trace(model))
    if shapes:
        ShapeProp(gm).propagate(x)
    return gm


CASES = {
    "conv2d": (
        lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
        (2, 3, 9, 9),
    ),
    "conv2d-no-bias": (
        lambda: nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8)),
        (2, 3, 9, 9),
    ),
    "conv2d-grouped": (lambda: nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.BatchNorm2d(8)), (2, 4, 7, 7)),
    "conv2d-bn-affine-false": (
        lambda: nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8, affine=False)),
        (2, 3, 5, 5),
    ),
    "conv-transpose2d-no-bias": (  # DC-GAN generator stage
        lambda: nn.Sequential(nn.ConvTranspose2d(3, 5, 4, 2, 1, bias=False), nn.BatchNorm2d(5), nn.ReLU()),
        (2, 3, 4, 4),
    ),
    "conv-transpose2d-bias": (lambda: nn.Sequential(nn.ConvTranspose2d(4, 6, 3), nn.BatchNorm2d(6)), (2, 4, 5, 5)),
    "conv1d": (lambda: nn.Sequential(nn.Conv1d(3, 6, 5, stride=2), nn.BatchNorm1d(6), nn.GELU()), (4, 3, 20)),
    "conv1d-no-bias": (lambda: nn.Sequential(nn.Conv1d(3, 6, 3, bias=False), nn.BatchNorm1d(6)), (4, 3, 20)),
    "linear-bn1d": (lambda: nn.Sequential(nn.Linear(10, 6), nn.BatchNorm1d(6), nn.ReLU()), (5, 10)),
    "linear-no-bias-bn1d": (lambda: nn.Sequential(nn.Linear(10, 6, bias=False), nn.BatchNorm1d(6)), (5, 10)),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_folds(case: str):
    make, shape = CASES[case]
    model = _randomize(make())
    x = torch.randn(shape)
    gm = _trace(model, x, shapes=True)
    producer = model[0]
    weight_before = producer.weight.detach().clone()
    nodes_before = len(gm.graph.nodes)

    p = FoldBatchNorm()
    result = p(gm)

    assert result.modified and p.fired == 1 and p.refusals == {}
    assert len(gm.graph.nodes) == nodes_before - 1
    assert _count(gm, nn.BatchNorm1d) + _count(gm, nn.BatchNorm2d) == 0
    assert _count(gm, type(producer)) == 1
    fused = gm.get_submodule("0")
    assert fused is not producer and fused.bias is not None
    assert not hasattr(gm, "1")  # the BatchNorm submodule is gone
    # the eager model is untouched: same module, same weight values, still no bias if it had none
    assert model[0] is producer
    torch.testing.assert_close(producer.weight, weight_before, rtol=0, atol=0)
    assert (producer.bias is None) == ("no-bias" in case)
    torch.testing.assert_close(gm(x), model(x), rtol=RTOL, atol=ATOL)


def test_folds_every_pair_in_a_deeper_net_and_keeps_the_rest():
    model = _randomize(
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.BatchNorm2d(8),  # BN after BN folds into the already fused conv
            nn.ReLU(),
            nn.BatchNorm2d(8),  # after a ReLU: not foldable
        )
    )
    x = torch.randn(2, 3, 8, 8)
    gm = _trace(model, x)

    p = FoldBatchNorm()
    assert p(gm).modified

    assert p.fired == 3
    assert _count(gm, nn.Conv2d) == 2 and _count(gm, nn.BatchNorm2d) == 1
    assert list(p.refusals.values()) == ["input comes from ReLU, not Conv2d/ConvTranspose2d"]
    torch.testing.assert_close(gm(x), model(x), rtol=RTOL, atol=ATOL)


def test_folds_a_nested_module_without_touching_the_eager_parent():
    model = nn.Sequential()
    model.add_module("enc", nn.Sequential(nn.Conv1d(2, 5, 3), nn.BatchNorm1d(5)))
    _randomize(model)
    x = torch.randn(3, 2, 11)
    gm = _trace(model, x)
    eager_conv = model.enc[0]

    p = FoldBatchNorm()
    assert p(gm).modified

    assert p.fired == 1
    assert [n.target for n in gm.graph.find_nodes(op="call_module")] == ["enc.0"]
    assert gm.get_submodule("enc.0") is not eager_conv and model.enc[0] is eager_conv
    assert len(model.enc) == 2
    torch.testing.assert_close(gm(x), model(x), rtol=RTOL, atol=ATOL)


class _ConvTwoUsers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y  # conv output feeds the BN and the add


class _SharedConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)
        self.bn_a = nn.BatchNorm2d(4)
        self.bn_b = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn_a(self.conv(x)) + self.bn_b(self.conv(x))  # one module, two calls


class _TiedWeights(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(4, 4, 1)
        self.conv_b = nn.Conv2d(4, 4, 1)
        self.conv_b.weight = self.conv_a.weight
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv_a(x)) + self.conv_b(x)


class _WeightReadDirectly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) * self.conv.weight.sum()  # get_attr conv.weight


class _StandardizedConv(nn.Conv2d):
    """A Conv2d subclass whose forward normalises the weight: folding BN into it would be wrong."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = (self.weight - self.weight.mean()) / self.weight.std()
        return self._conv_forward(x, w, self.bias)


NOT_FOLDED = {
    "conv-output-two-users": (_ConvTwoUsers, (2, 3, 6, 6), "2 users"),
    "shared-conv-module": (_SharedConv, (2, 4, 5, 5), "also used by"),
    "tied-weights": (_TiedWeights, (2, 4, 5, 5), "also used by"),
    "weight-read-by-get-attr": (_WeightReadDirectly, (2, 4, 5, 5), "also used by"),
    "conv-subclass": (
        lambda: nn.Sequential(_StandardizedConv(3, 4, 3), nn.BatchNorm2d(4)),
        (2, 3, 6, 6),
        "input comes from _StandardizedConv",
    ),
    "grouped-conv-transpose": (
        lambda: nn.Sequential(nn.ConvTranspose2d(4, 6, 3, groups=2), nn.BatchNorm2d(6)),
        (2, 4, 5, 5),
        "grouped ConvTranspose2d",
    ),
    "no-running-stats": (
        lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)),
        (2, 3, 6, 6),
        "no running statistics",
    ),
}


@pytest.mark.parametrize("case", NOT_FOLDED, ids=list(NOT_FOLDED))
def test_does_not_fold(case: str):
    make, shape, reason = NOT_FOLDED[case]
    model = _randomize(make())
    x = torch.randn(shape)
    gm = _trace(model, x)
    code_before = gm.code

    p = FoldBatchNorm()
    result = p(gm)

    assert not result.modified and p.fired == 0
    assert gm.code == code_before
    assert p.refusals and all(reason in r for r in p.refusals.values()), p.refusals
    torch.testing.assert_close(gm(x), model(x), rtol=0, atol=0)


def test_linear_without_recorded_shape_is_not_folded():
    model = _randomize(nn.Sequential(nn.Linear(10, 6), nn.BatchNorm1d(6)))
    gm = _trace(model, torch.randn(5, 10), shapes=False)

    p = FoldBatchNorm()

    assert not p(gm).modified and p.fired == 0
    assert "Linear output rank unknown" in p.refusals["_1"]


def test_linear_on_sequence_is_not_folded():
    """BatchNorm1d on [N, L, C] normalises L; with L == C the eager model runs, but folding would be wrong."""
    model = _randomize(nn.Sequential(nn.Linear(10, 6), nn.BatchNorm1d(6)))
    x = torch.randn(5, 6, 10)  # [N, L=6, C_in]
    gm = _trace(model, x, shapes=True)

    p = FoldBatchNorm()

    assert not p(gm).modified and p.fired == 0
    assert "rank 3" in p.refusals["_1"]
    torch.testing.assert_close(gm(x), model(x), rtol=0, atol=0)


def test_training_mode_is_a_precondition_error():
    gm = fx.symbolic_trace(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train())
    with pytest.raises(PreconditionError, match="eval-mode"):
        FoldBatchNorm()(gm)


def test_ensures_catches_a_pass_that_leaves_a_foldable_pair():
    class DoesNothing(FoldBatchNorm):
        def call(self, gm: fx.GraphModule) -> PassResult:
            return PassResult(gm, False)

    gm = fx.symbolic_trace(_randomize(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))))
    with pytest.raises(PostconditionError, match="foldable"):
        DoesNothing()(gm)
