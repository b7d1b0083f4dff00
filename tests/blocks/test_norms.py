"""Norms: RMSNorm against transformers' T5LayerNorm and torch.nn.RMSNorm, BatchNorm over the feature axis,
make_norm by name, fx tracing of each and ONNX export of RMSNorm."""

from __future__ import annotations

import pytest
import torch
from blockcheck import assert_onnx_matches, assert_traceable
from torch import nn
from transformers.models.t5.modeling_t5 import T5LayerNorm

from mmspec.blocks.norms import NORMS, BatchNorm, RMSNorm, make_norm

D = 12


def with_weight(norm: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in norm.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return norm.eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_matches_t5_layer_norm(dtype):
    ours, ref = with_weight(RMSNorm(D, eps=1e-6)), T5LayerNorm(D, eps=1e-6)
    ref.weight = nn.Parameter(ours.weight.detach().clone())
    ours, ref = ours.to(dtype), ref.to(dtype)
    x = (torch.randn(2, 5, D) * 3).to(dtype)  # B,S,D
    got = ours(x)  # B,S,D
    assert got.dtype == dtype
    torch.testing.assert_close(got, ref(x), atol=0.0, rtol=0.0)  # same fp32 statistics, same casts


def test_rms_norm_matches_torch_rms_norm():
    ours, ref = with_weight(RMSNorm(D, eps=1e-5)), nn.RMSNorm(D, eps=1e-5)
    ref.weight = nn.Parameter(ours.weight.detach().clone())
    x = torch.randn(3, 4, D) * 2  # B,S,D
    torch.testing.assert_close(ours(x), ref(x), atol=1e-6, rtol=1e-6)


def test_rms_norm_has_no_mean_subtraction_or_bias():
    norm = RMSNorm(D)
    assert [n for n, _ in norm.named_parameters()] == ["weight"]
    x = torch.full((1, D), 5.0)  # 1,D  constant rows stay constant (LayerNorm would give 0)
    torch.testing.assert_close(norm(x), torch.ones(1, D), atol=1e-5, rtol=0.0)


def test_batch_norm_normalizes_the_feature_axis_of_any_rank():
    ours = with_weight(BatchNorm(D, eps=1e-5)).train()
    ref = nn.BatchNorm1d(D, eps=1e-5).train()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, 5, D)  # B,S,D
    torch.testing.assert_close(ours(x), ref(x.reshape(15, D)).view(3, 5, D), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ours.running_mean, ref.running_mean, atol=1e-7, rtol=0.0)
    ours.eval(), ref.eval()
    v = torch.randn(4, D)  # B,D: plain BatchNorm1d
    torch.testing.assert_close(ours(v), ref(v), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("kind", NORMS)
def test_make_norm_by_name_keeps_shape_and_traces(kind):
    norm = with_weight(make_norm(kind, D, 1e-6))
    expected = {"layer": nn.LayerNorm, "rms": RMSNorm, "batch": BatchNorm, "none": nn.Identity}[kind]
    assert type(norm) is expected
    if kind in ("layer", "rms", "batch"):
        assert norm.eps == 1e-6
    x = torch.randn(2, 5, D)  # B,S,D
    assert norm(x).shape == x.shape
    assert_traceable(norm, x)


def test_make_norm_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown norm 'group'"):
        make_norm("group", D)


def test_rms_norm_exports_to_onnx(tmp_path):
    norm = with_weight(RMSNorm(D))
    x = torch.randn(2, 5, D) * 3  # B,S,D
    dynamic = {"x": {0: "batch", 1: "seq"}}
    assert_onnx_matches(norm, (x,), ["x"], dynamic, tmp_path / "rms.onnx", [(x,), (torch.randn(1, 9, D),)])
