"""Normalizer-Free ResNets (Brock, De, Smith, Simonyan 2021, NFNet-F0...F7; DeepMind's nfnets code): convolutions with
scaled weight standardisation, variance-preserving residual blocks with skip gains, and no normalisation layers.

Contract:
- `WSConv2d(cin, cout, k, stride, groups)(x [B, C, H, W])` -> [B, C', H/stride, W/stride]: the weight standardised
  per output channel (mean 0, variance 1/fan_in) times a learned gain, plus a bias; TensorFlow "same" padding for
  even inputs.
- `NFBlock(...)(x)` -> [B, C', H', W']: alpha * skip_gain * 2 * SE(branch(beta * act(x))) + shortcut.
- `NFNet(...)(pixels [B, 3, H, W])` -> features [B, final, H/32, W/32] after the final 1x1 conv and activation.
Everything is torch.fx symbolically traceable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmspec.blocks.activations import activation
from mmspec.blocks.conv import SqueezeExcite

GAMMA = {"gelu": 1.7015043497085571, "relu": 1.7139588594436646, "silu": 1.7881293296813965}
"""The nonlinearities' variance-preserving gains (the official code's magic constants)."""


class ScaledActivation(nn.Module):
    """act(x) * gamma, so that a unit-Gaussian input keeps unit variance."""

    def __init__(self, name: str):
        super().__init__()
        self.act, self.gamma = activation(name), GAMMA[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x) * self.gamma  # same shape


class WSConv2d(nn.Conv2d):
    """Conv2d whose weight is (w - mean) * gain / sqrt(max(fan_in * var, eps)) per output channel; always biased.
    A strided 3x3 pads 0 before and 1 after each axis (TensorFlow "same" on even sides), others k//2 around."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, eps: float = 1e-4):
        super().__init__(cin, cout, kernel, stride, 0, groups=groups, bias=True)
        self.gain = nn.Parameter(torch.ones(cout))
        half = kernel // 2
        self.pad = (half - 1, half, half - 1, half) if stride == 2 and kernel > 1 else (half,) * 4
        self.eps = eps
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight  # O,I/g,k,k
        fan_in = w.shape[1] * w.shape[2] * w.shape[3]
        mean = w.mean((1, 2, 3), keepdim=True)  # O,1,1,1
        var = w.var((1, 2, 3), unbiased=False, keepdim=True)  # O,1,1,1
        scale = torch.rsqrt(torch.clamp(var * fan_in, min=self.eps)) * self.gain[:, None, None, None]  # O,1,1,1
        x = F.pad(x, self.pad) if any(self.pad) else x  # B,C,H+p,W+p
        return F.conv2d(x, w * scale - mean * scale, self.bias, self.stride, 0, 1, self.groups)  # B,O,H',W'


class NFBlock(nn.Module):
    """NFNet's bottleneck: act(x) * beta -> 1x1 -> grouped 3x3 (stride) -> grouped 3x3 -> 1x1, activations between,
    squeeze-excite (ReLU, x2), times the skip gain (starts at 0) and alpha, plus the shortcut: x, or (average pool
    when strided, then) a 1x1 conv of act(x) * beta when the shape changes."""

    def __init__(self, cin: int, cout: int, expansion: float, group_width: int, se_ratio: float, stride: int,
                 beta: float, alpha: float, act: str, two_convs: bool):
        super().__init__()
        groups = int(cout * expansion) // group_width
        width = groups * group_width
        self.act = ScaledActivation(act)
        self.conv0 = WSConv2d(cin, width, 1)
        self.conv1 = WSConv2d(width, width, 3, stride, groups)
        self.conv1b = WSConv2d(width, width, 3, 1, groups) if two_convs else None
        self.conv2 = WSConv2d(width, cout, 1)
        self.shortcut = WSConv2d(cin, cout, 1) if stride > 1 or cin != cout else None
        self.pool = nn.AvgPool2d(2) if stride > 1 else None
        self.se = SqueezeExcite(cout, max(1, int(cout * se_ratio)), act="relu")
        self.skip_gain = nn.Parameter(torch.zeros(()))
        self.beta, self.alpha = beta, alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(x) * self.beta  # B,C,H,W
        shortcut = x
        if self.shortcut is not None:
            shortcut = self.shortcut(self.pool(out) if self.pool is not None else out)  # B,C',H',W'
        out = self.conv1(self.act(self.conv0(out)))  # B,w,H',W'
        if self.conv1b is not None:
            out = self.conv1b(self.act(out))  # B,w,H',W'
        out = self.se(self.conv2(self.act(out))) * 2  # B,C',H',W'
        return out * self.skip_gain * self.alpha + shortcut  # B,C',H',W'


class NFNet(nn.Module):
    """Stem (3x3 convs to 16 /2, 32, 64, widths[0]/2 /2, activations between), the stages' NFBlocks (strides 1, 2,
    2, 2; beta = 1 / the expected std, which grows by alpha^2 per block and resets after each transition), then a
    1x1 conv to `final_mult` x the last width and the activation."""

    def __init__(self, channels: int, widths: list[int], depths: list[int], expansion: float, group_width: int,
                 se_ratio: float, alpha: float, act: str, two_convs: bool, final_mult: int):
        super().__init__()
        ch = widths[0] // 2
        self.stem = nn.Sequential(WSConv2d(channels, 16, 3, 2), ScaledActivation(act), WSConv2d(16, 32, 3),
                                  ScaledActivation(act), WSConv2d(32, 64, 3), ScaledActivation(act),
                                  WSConv2d(64, ch, 3, 2))
        blocks, expected = [], 1.0
        for stage, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            for i in range(depth):
                blocks.append(NFBlock(ch, width, expansion, group_width, se_ratio, 2 if stage and not i else 1,
                                      1.0 / expected, alpha, act, two_convs))
                ch = width
                expected = ((1.0 if i == 0 else expected**2) + alpha**2) ** 0.5
        self.blocks = nn.Sequential(*blocks)
        self.final_conv = WSConv2d(ch, final_mult * ch, 1)
        self.final_act = ScaledActivation(act)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.final_act(self.final_conv(self.blocks(self.stem(pixels))))  # B,final,H/32,W/32
