"""DDPM residual blocks, stages and 2x resampling: shapes, parameter counts and outputs against hand computations
of diffusers' ResnetBlock2D / Downsample2D / Upsample2D (diffusers is not installed), fx tracing, ONNX export."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from blockcheck import assert_onnx_matches, assert_traceable, seeded
from torch import nn

from mmspec.blocks.conv import ResidualBlock, ResnetBlock, ResnetStage
from mmspec.blocks.sampling import Downsample, Upsample

ATOL, RTOL = 1e-5, 1e-5
GROUPS = 4



def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def resnet_block_params(cin: int, cout: int, temb: int | None, scale_shift: bool) -> int:
    """ResnetBlock2D by hand: two GroupNorms, two 3x3 convs, the time projection, the 1x1 shortcut."""
    time = (temb + 1) * cout * (2 if scale_shift else 1) if temb else 0
    shortcut = cin * cout + cout if cin != cout else 0
    return 2 * cin + 9 * cin * cout + cout + time + 2 * cout + 9 * cout * cout + cout + shortcut


def resnet_block_reference(block: ResnetBlock, x: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
    """diffusers ResnetBlock2D.forward (eval, output_scale_factor 1), written out with torch.nn.functional."""
    n1, n2 = block.norm1, block.norm2
    h = F.silu(F.group_norm(x, n1.num_groups, n1.weight, n1.bias, n1.eps))  # B,C,H,W
    h = F.conv2d(h, block.conv1.weight, block.conv1.bias, padding=1)  # B,C',H,W
    t = F.linear(F.silu(temb), block.time_emb_proj.weight, block.time_emb_proj.bias)[:, :, None, None]  # B,*,1,1
    if block.time_norm == "default":
        h = F.group_norm(h + t, n2.num_groups, n2.weight, n2.bias, n2.eps)  # B,C',H,W
    else:
        scale, shift = t.chunk(2, dim=1)  # B,C',1,1 each
        h = F.group_norm(h, n2.num_groups, n2.weight, n2.bias, n2.eps) * (1 + scale) + shift  # B,C',H,W
    h = F.conv2d(F.silu(h), block.conv2.weight, block.conv2.bias, padding=1)  # B,C',H,W
    if block.conv_shortcut is not None:
        x = F.conv2d(x, block.conv_shortcut.weight, block.conv_shortcut.bias)  # B,C',H,W
    return x + h


@pytest.mark.parametrize("time_norm", ["default", "scale_shift"])
@pytest.mark.parametrize(("cin", "cout"), [(8, 8), (8, 12)])
def test_resnet_block_matches_diffusers_algorithm(cin, cout, time_norm):
    block = seeded(ResnetBlock(cin, cout, temb_dim=6, groups=GROUPS, time_norm=time_norm), std=0.2)
    assert count(block) == resnet_block_params(cin, cout, 6, time_norm == "scale_shift")
    names = {n.rsplit(".", 1)[0] for n, _ in block.named_parameters()}
    shortcut = {"conv_shortcut"} if cin != cout else set()
    assert names == {"norm1", "conv1", "time_emb_proj", "norm2", "conv2"} | shortcut
    x, temb = torch.randn(2, cin, 5, 6), torch.randn(2, 6)  # B,C,H,W / B,T
    y = block(x, temb)  # B,C',H,W
    assert y.shape == (2, cout, 5, 6)
    torch.testing.assert_close(y, resnet_block_reference(block, x, temb), atol=ATOL, rtol=RTOL)
    assert_traceable(block, x, temb)


def test_resnet_block_without_time_embedding_and_output_scale():
    block = seeded(ResnetBlock(8, 4, groups=GROUPS, output_scale=2.0), std=0.2)
    assert count(block) == resnet_block_params(8, 4, None, False)
    x = torch.randn(2, 8, 4, 4)  # B,C,H,W
    n1, n2 = block.norm1, block.norm2
    h = F.silu(F.group_norm(x, GROUPS, n1.weight, n1.bias, n1.eps))  # B,8,H,W
    h = F.conv2d(h, block.conv1.weight, block.conv1.bias, padding=1)  # B,4,H,W
    h = F.silu(F.group_norm(h, GROUPS, n2.weight, n2.bias, n2.eps))  # B,4,H,W
    h = F.conv2d(h, block.conv2.weight, block.conv2.bias, padding=1)  # B,4,H,W
    expected = (F.conv2d(x, block.conv_shortcut.weight, block.conv_shortcut.bias) + h) / 2.0  # B,4,H,W
    torch.testing.assert_close(block(x), expected, atol=ATOL, rtol=RTOL)
    assert_traceable(block, x)
    with pytest.raises(ValueError, match="time_norm"):
        ResnetBlock(8, time_norm="ada_group")


def test_resnet_pieces_are_unchanged():
    block = ResidualBlock(8, 16, 2, bottleneck=True, reduction=4)
    assert count(block) == (8 * 4 + 8) + (9 * 4 * 4 + 8) + (4 * 16 + 32) + (8 * 16 + 32)
    assert block(torch.randn(1, 8, 6, 6)).shape == (1, 16, 3, 3)


@pytest.mark.parametrize(
    ("mode", "cout", "params", "shape"),
    [("conv", 6, 9 * 4 * 6 + 6, (2, 6, 3, 4)), ("avg", None, 0, (2, 4, 2, 4))],
)
def test_downsample_matches_hand_computation(mode, cout, params, shape):
    down = seeded(Downsample(4, cout, mode=mode), std=0.2)
    assert count(down) == params
    x = torch.randn(2, 4, 5, 8)  # B,C,H,W  (odd height)
    if mode == "conv":
        expected = F.conv2d(x, down.conv.weight, down.conv.bias, stride=2, padding=1)  # B,C',3,4
    else:
        expected = x[:, :, :4].reshape(2, 4, 2, 2, 4, 2).mean(dim=(3, 5))  # B,C,2,4
    y = down(x)  # B,C',H',W'
    assert y.shape == shape
    torch.testing.assert_close(y, expected, atol=ATOL, rtol=RTOL)
    assert_traceable(down, x)


@pytest.mark.parametrize(
    ("mode", "cout", "params"), [("conv", 6, 9 * 4 * 6 + 6), ("transpose", 6, 16 * 4 * 6 + 6), ("nearest", None, 0)]
)
def test_upsample_matches_hand_computation(mode, cout, params):
    up = seeded(Upsample(4, cout, mode=mode), std=0.2)
    assert count(up) == params
    x = torch.randn(2, 4, 3, 5)  # B,C,H,W
    nearest = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # B,C,2H,2W
    if mode == "conv":
        expected = F.conv2d(nearest, up.conv.weight, up.conv.bias, padding=1)  # B,C',2H,2W
    elif mode == "transpose":
        expected = F.conv_transpose2d(x, up.conv.weight, up.conv.bias, stride=2, padding=1)  # B,C',2H,2W
    else:
        expected = nearest
    y = up(x)  # B,C',2H,2W
    assert y.shape == (2, cout or 4, 6, 10)
    torch.testing.assert_close(y, expected, atol=ATOL, rtol=RTOL)
    assert_traceable(up, x)


def test_resampling_rejects_bad_options():
    with pytest.raises(ValueError, match="keeps the channel count"):
        Downsample(4, 8, mode="avg")
    with pytest.raises(ValueError, match="unknown upsample mode"):
        Upsample(4, mode="bilinear")
    with pytest.raises(ValueError, match="unknown resample"):
        ResnetStage(4, 4, 1, groups=2, resample="sideways")


STAGES = [
    ("down_conv", "default", (2, 8, 3, 3)),
    ("down_avg", "scale_shift", (2, 8, 2, 3)),
    ("up_conv", "default", (2, 8, 10, 12)),
    ("up_transpose", "scale_shift", (2, 8, 10, 12)),
    ("up_nearest", "default", (2, 8, 10, 12)),
]


def stage(cin: int, resample: str, time_norm: str) -> ResnetStage:
    return seeded(ResnetStage(cin, 8, 2, temb_dim=6, resample=resample, groups=GROUPS, time_norm=time_norm), std=0.2)


@pytest.mark.parametrize(("resample", "time_norm", "shape"), STAGES, ids=[s[0] for s in STAGES])
def test_stage_is_blocks_then_resampler_and_traces(resample, time_norm, shape):
    s = stage(4, resample, time_norm)
    assert [type(m).__name__ for m in s.children()] == ["ModuleList", type(s.resample).__name__]
    x, temb = torch.randn(2, 4, 5, 6), torch.randn(2, 6)  # B,C,H,W / B,T
    y = s(x, temb)  # B,8,H',W'
    assert y.shape == shape
    assert torch.equal(y, s.resample(s.resnets[1](s.resnets[0](x, temb), temb)))
    assert_traceable(s, x, temb)


class Chain(nn.Module):
    """Stages applied in turn with one time embedding (a U-Net path without skips); one export covers several."""

    def __init__(self, *stages: ResnetStage):
        super().__init__()
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        for s in self.stages:
            x = s(x, temb)  # B,8,H',W'
        return x


CHAINS = [
    [("down_conv", "default"), ("up_transpose", "scale_shift")],
    [("down_avg", "scale_shift"), ("up_conv", "default")],
    [("up_nearest", "default")],
]


@pytest.mark.parametrize("spec", CHAINS, ids=["+".join(r for r, _ in c) for c in CHAINS])
def test_stages_export_to_onnx(spec, tmp_path):
    chain = Chain(*(stage(4 if i == 0 else 8, resample, norm) for i, (resample, norm) in enumerate(spec)))
    x, temb = torch.randn(2, 4, 5, 6), torch.randn(2, 6)  # B,C,H,W / B,T
    assert_traceable(chain, x, temb)
    dynamic = {"x": {0: "batch", 2: "height", 3: "width"}, "temb": {0: "batch"}}
    other = (torch.randn(3, 4, 8, 7), torch.randn(3, 6))
    assert_onnx_matches(chain, (x, temb), ["x", "temb"], dynamic, tmp_path / "chain.onnx", [(x, temb), other])
