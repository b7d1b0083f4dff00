"""A torch.nn rebuild of DeepMind's official NFNet (github.com/deepmind/deepmind-research, nfnets/nfnet.py and
nfnets/base.py, JAX/haiku; Brock et al. 2021), module by module and with the official names, for the parameter
counts and outputs that the `nfnet` encoder is compared with. Layout NCHW (haiku's is NHWC); padding is
TensorFlow's "SAME" computed from the input size, as jax.lax.conv_general_dilated does."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

F_SERIES = {f"F{k}": [(k + 1) * d for d in (1, 2, 6, 3)] for k in range(8)}
"""base.nfnet_params depths (widths 256, 512, 1536, 1536 for all)."""
GELU_GAMMA = 1.7015043497085571


def _same(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    pads = []
    for size in (x.shape[3], x.shape[2]):  # W then H, as F.pad wants
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class WSConv2D(nn.Module):
    """base.WSConv2D: parameters w, gain, bias; weight standardised over its fan-in (eps 1e-4)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.w = nn.Parameter(torch.randn(cout, cin // groups, k, k) / math.sqrt(cin // groups * k * k))
        self.gain = nn.Parameter(torch.ones(cout))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.k, self.stride, self.groups = k, stride, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.w.mean((1, 2, 3), keepdim=True)
        var = self.w.var((1, 2, 3), unbiased=False, keepdim=True)
        fan_in = self.w[0].numel()
        scale = torch.rsqrt(torch.clamp(var * fan_in, min=1e-4)) * self.gain.view(-1, 1, 1, 1)
        weight = self.w * scale - mean * scale
        return F.conv2d(_same(x, self.k, self.stride), weight, self.bias, self.stride, 0, 1, self.groups)


class SqueezeExcite(nn.Module):
    """base.SqueezeExcite: fc0 (hidden = in * se_ratio), ReLU, fc1, sigmoid of the spatial mean."""

    def __init__(self, cin: int, cout: int, se_ratio: float):
        super().__init__()
        hidden = max(1, int(cin * se_ratio))
        self.fc0, self.fc1 = nn.Linear(cin, hidden), nn.Linear(hidden, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc1(F.relu(self.fc0(x.mean((2, 3))))))[:, :, None, None]


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x) * GELU_GAMMA


class NFBlock(nn.Module):
    """nfnet.NFBlock with use_two_convs (stochastic depth is training-only and off here)."""

    def __init__(self, cin, cout, expansion=0.5, se_ratio=0.5, group_size=128, stride=1, beta=1.0, alpha=0.2):
        super().__init__()
        width = int(cout * expansion)
        groups = width // group_size
        width = group_size * groups
        self.conv0 = WSConv2D(cin, width, 1)
        self.conv1 = WSConv2D(width, width, 3, stride, groups)
        self.conv1b = WSConv2D(width, width, 3, 1, groups)
        self.conv2 = WSConv2D(width, cout, 1)
        self.use_projection = stride > 1 or cin != cout
        if self.use_projection:
            self.conv_shortcut = WSConv2D(cin, cout, 1)
        self.se = SqueezeExcite(cout, cout, se_ratio)
        self.skip_gain = nn.Parameter(torch.zeros(()))
        self.stride, self.beta, self.alpha = stride, beta, alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _act(x) * self.beta
        if self.stride > 1:
            shortcut = F.avg_pool2d(out, 2)
            if self.use_projection:
                shortcut = self.conv_shortcut(shortcut)
        elif self.use_projection:
            shortcut = self.conv_shortcut(out)
        else:
            shortcut = x
        out = self.conv0(out)
        out = self.conv1(_act(out))
        out = self.conv1b(_act(out))
        out = self.conv2(_act(out))
        out = (self.se(out) * 2) * out
        return out * self.skip_gain * self.alpha + shortcut


class NFNet(nn.Module):
    """nfnet.NFNet (GELU, final_conv_mult 2): stem_conv0..3, the blocks, final_conv, and the classifier `fc`
    when `num_classes` is given (Flamingo's frozen encoder stops at the pooled final conv)."""

    def __init__(self, depths: list[int], widths=(256, 512, 1536, 1536), num_classes: int | None = 1000,
                 group_size: int = 128, alpha: float = 0.2):
        super().__init__()
        ch = widths[0] // 2
        self.stem_conv0, self.stem_conv1 = WSConv2D(3, 16, 3, 2), WSConv2D(16, 32, 3)
        self.stem_conv2, self.stem_conv3 = WSConv2D(32, 64, 3), WSConv2D(64, ch, 3, 2)
        blocks, expected_std = [], 1.0
        for block_width, stage_depth, stride in zip(widths, depths, (1, 2, 2, 2), strict=True):
            for block_index in range(stage_depth):
                blocks.append(NFBlock(ch, block_width, group_size=group_size,
                                      stride=stride if block_index == 0 else 1, beta=1.0 / expected_std, alpha=alpha))
                ch = block_width
                if block_index == 0:
                    expected_std = 1.0
                expected_std = (expected_std**2 + alpha**2) ** 0.5
        self.blocks = nn.ModuleList(blocks)
        self.final_conv = WSConv2D(ch, 2 * ch, 1)
        self.fc = nn.Linear(2 * ch, num_classes) if num_classes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels [B, 3, H, W] -> the final activations [B, 2 * width, H/32, W/32]."""
        out = self.stem_conv3(_act(self.stem_conv2(_act(self.stem_conv1(_act(self.stem_conv0(x)))))))
        for block in self.blocks:
            out = block(out)
        return _act(self.final_conv(out))


def nfnet(variant: str = "F6", num_classes: int | None = None) -> NFNet:
    """An official F-series NFNet; `num_classes` None: without the classifier (as Flamingo's vision encoder)."""
    return NFNet(F_SERIES[variant], num_classes=num_classes)
