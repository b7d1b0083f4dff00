"""Convolution stages: conv-BN-ReLU, residual blocks, ResNet bodies (v1.5 stride placement), and the
GroupNorm + SiLU residual blocks and stages of DDPM/diffusers U-Nets, VAEs and GAN generators.

Contract: every block maps [B, C, H, W] -> [B, C', H', W'] and is torch.fx symbolically traceable; `ResnetBlock`
and `ResnetStage` take an optional time embedding [B, temb_dim] and name their parameters as diffusers'
ResnetBlock2D / DownBlock2D do (norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut; resnets).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmspec.blocks.sampling import Downsample, Upsample

TIME_NORMS = ("default", "scale_shift")


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """Bottleneck (1x1 -> 3x3 -> 1x1, width = out / reduction) or basic (3x3 -> 3x3) block with projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, bottleneck: bool, reduction: int):
        super().__init__()
        if bottleneck:
            mid = cout // reduction
            self.body = nn.Sequential(
                conv_bn(cin, mid, 1), conv_bn(mid, mid, 3, stride), conv_bn(mid, cout, 1, relu=False)
            )
        else:
            self.body = nn.Sequential(conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, 3, relu=False))
        needs_projection = cin != cout or stride != 1
        self.shortcut = conv_bn(cin, cout, 1, stride, relu=False) if needs_projection else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))  # B,C',H',W'


class ResNet(nn.Module):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) + stages; returns the final feature map [B, C, h, w]."""

    def __init__(
        self, channels: int, stem: int, widths: list[int], depths: list[int], bottleneck: bool, reduction: int
    ):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(channels, stem, 7, 2), nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], stem
        for i, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(ResidualBlock(cin, width, stride, bottleneck, reduction))
                cin = width
        self.stages = nn.Sequential(*blocks)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(pixels))  # B,C,h,w


class ResnetBlock(nn.Module):
    """DDPM residual block (diffusers ResnetBlock2D, pre-activation):
    h = conv1(SiLU(GN(x))); h += proj(SiLU(temb)) ("default") ; h = GN(h), or GN(h) * (1 + scale) + shift
    ("scale_shift", GLIDE/ADM); out = (shortcut(x) + conv2(dropout(SiLU(h)))) / output_scale, with a 1x1 conv
    shortcut when the channel count changes. `temb_dim=None`: no time embedding (VAEs, GAN generators).
    `resample` "down" (2x2 average pool) or "up" (nearest x2) resizes both SiLU(GN(x)) before conv1 and the
    shortcut's x (ADM's resblock_updown, GLIDE). `conv_shortcut` keeps the 1x1 conv shortcut at an unchanged channel
    count and `shortcut_scale` multiplies the shortcut alone, out = conv2(...) + shortcut(x) * shortcut_scale
    (Imagen's Efficient U-Net: 1/sqrt(2))."""

    def __init__(
        self,
        cin: int,
        cout: int | None = None,
        temb_dim: int | None = None,
        groups: int = 32,
        eps: float = 1e-6,
        dropout: float = 0.0,
        time_norm: str = "default",
        output_scale: float = 1.0,
        resample: str | None = None,
        conv_shortcut: bool = False,
        shortcut_scale: float = 1.0,
    ):
        super().__init__()
        if resample not in (None, "down", "up"):
            raise ValueError(f"unknown resample {resample!r}; expected down, up or none")
        self.resample = resample
        if time_norm not in TIME_NORMS:
            raise ValueError(f"unknown time_norm {time_norm!r}; expected one of {', '.join(TIME_NORMS)}")
        cout = cout or cin
        self.cout = cout
        self.time_norm = time_norm
        self.output_scale = output_scale
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        width = 2 * cout if time_norm == "scale_shift" else cout
        self.time_emb_proj = nn.Linear(temb_dim, width) if temb_dim else None
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout or conv_shortcut else None
        self.shortcut_scale = shortcut_scale

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = F.silu(self.norm1(x))  # B,C,H,W
        if self.resample is not None:
            h, x = self._resize(h), self._resize(x)  # B,C,H',W' each
        h = self.conv1(h)  # B,C',H,W
        t = None
        if self.time_emb_proj is not None and temb is not None:
            t = self.time_emb_proj(F.silu(temb))[:, :, None, None]  # B,C' (or 2C'),1,1
        if t is not None and self.time_norm == "default":
            h = h + t  # B,C',H,W
        h = self.norm2(h)  # B,C',H,W
        if t is not None and self.time_norm == "scale_shift":
            h = h * (1 + t[:, : self.cout]) + t[:, self.cout :]  # B,C',H,W
        h = self.conv2(self.dropout(F.silu(h)))  # B,C',H,W
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)  # B,C',H,W
        if self.shortcut_scale != 1.0:
            shortcut = shortcut * self.shortcut_scale  # B,C',H,W
        return (shortcut + h) / self.output_scale  # B,C',H,W

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, 2)  # B,C,H/2,W/2
        return F.interpolate(x, scale_factor=2.0, mode="nearest")  # B,C,2H,2W


class ResnetStage(nn.Module):
    """`depth` ResnetBlocks (cin -> cout, then cout -> cout), then an optional resampler: "down_conv", "down_avg"
    (`Downsample`), "up_conv", "up_transpose", "up_nearest" (`Upsample`) or None. A U-Net encoder/decoder level
    without skip connections (diffusers DownBlock2D/UpBlock2D) or a GAN generator stage."""

    def __init__(
        self,
        cin: int,
        cout: int,
        depth: int,
        temb_dim: int | None = None,
        resample: str | None = None,
        groups: int = 32,
        eps: float = 1e-6,
        dropout: float = 0.0,
        time_norm: str = "default",
    ):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock(cin if i == 0 else cout, cout, temb_dim, groups, eps, dropout, time_norm) for i in range(depth)
        )
        if resample is None:
            self.resample = None
        elif resample.startswith("down_"):
            self.resample = Downsample(cout, mode=resample.removeprefix("down_"))
        elif resample.startswith("up_"):
            self.resample = Upsample(cout, mode=resample.removeprefix("up_"))
        else:
            raise ValueError(f"unknown resample {resample!r}; expected down_<mode>, up_<mode> or None")

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resnets:
            x = block(x, temb)  # B,C',H,W
        return x if self.resample is None else self.resample(x)  # B,C',H',W'


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a residual branch for a random `p` share of the samples, rescale the rest."""
    if not training or p == 0.0:
        return x
    keep = (torch.rand_like(x[:, :1, :1, :1]) >= p).to(x.dtype)  # B,1,1,1
    return x * keep / (1.0 - p)  # B,C,H,W


class SqueezeExcite(nn.Module):
    """x * sigmoid(expand(act(reduce(mean over H, W)))): per-channel gates from a `reduced`-wide bottleneck
    (`act`: SiLU as EfficientNet, ReLU as NFNet)."""

    def __init__(self, channels: int, reduced: int, act: str = "silu"):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.act = F.relu if act == "relu" else F.silu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # B,C,1,1
        return x * torch.sigmoid(self.expand(self.act(self.reduce(s))))  # B,C,H,W


class MBConv(nn.Module):
    """Inverted residual block (MobileNetV2/EfficientNet): 1x1 expand (skipped at ratio 1) -> depthwise k x k ->
    squeeze-excite -> 1x1 project (no activation), each conv followed by BatchNorm and all but the projection by SiLU;
    `residual` adds the input back through stochastic depth (`drop`). A stride-2 depthwise conv pads k//2 - 1
    before and k//2 after each axis (TensorFlow "same" for even inputs), or k//2 on both sides with
    `symmetric`; stride 1 pads k//2 on both sides."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int,
        expand: int,
        reduced: int,
        residual: bool,
        drop: float = 0.0,
        eps: float = 1e-3,
        momentum: float = 0.01,
        symmetric: bool = False,
    ):
        super().__init__()
        mid = cin * expand
        half = kernel // 2
        pad = (half - 1, half, half - 1, half) if stride == 2 and not symmetric else (half,) * 4

        def bn(c: int) -> nn.BatchNorm2d:
            return nn.BatchNorm2d(c, eps=eps, momentum=momentum)

        self.expand = (
            nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), bn(mid), nn.SiLU()) if expand != 1 else nn.Identity()
        )
        self.depthwise = nn.Sequential(
            nn.ZeroPad2d(pad), nn.Conv2d(mid, mid, kernel, stride, groups=mid, bias=False), bn(mid), nn.SiLU()
        )
        self.se = SqueezeExcite(mid, reduced)
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), bn(cout))
        self.residual = residual
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.project(self.se(self.depthwise(self.expand(x))))  # B,C',H',W'
        return x + drop_path(h, self.drop, self.training) if self.residual else h  # B,C',H',W'
