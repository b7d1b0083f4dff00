"""Module behind the `inception_v3` encoder; attribute names follow torchvision's Inception3 (Conv2d_1a_3x3,
Mixed_6e.branch7x7dbl_3 ...), so its state dict (less AuxLogits and fc) loads under the node's prefix."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmspec.components.encoders.googlenet.module import BasicConv2d
from mmspec.components.encoders.inception_v3 import block_params


def _pool3(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, 1, 1)  # B,C,h,w (zero padding counted, as torchvision)


class InceptionA(nn.Module):
    """1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | 3x3 average -> 1x1 (`pool` channels)."""

    def __init__(self, cin: int, pool: int, c, eps: float):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, c(64), 1, eps=eps)
        self.branch5x5_1 = BasicConv2d(cin, c(48), 1, eps=eps)
        self.branch5x5_2 = BasicConv2d(c(48), c(64), 5, eps=eps)
        self.branch3x3dbl_1 = BasicConv2d(cin, c(64), 1, eps=eps)
        self.branch3x3dbl_2 = BasicConv2d(c(64), c(96), 3, eps=eps)
        self.branch3x3dbl_3 = BasicConv2d(c(96), c(96), 3, eps=eps)
        self.branch_pool = BasicConv2d(cin, c(pool), 1, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)), double,
                          self.branch_pool(_pool3(x))], 1)  # B,C',h,w


class InceptionB(nn.Module):
    """3x3/2 | 1x1 -> 3x3 -> 3x3/2 | 3x3/2 max-pool: halves the map."""

    def __init__(self, cin: int, c, eps: float):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, c(384), 3, 2, eps=eps, padding=0)
        self.branch3x3dbl_1 = BasicConv2d(cin, c(64), 1, eps=eps)
        self.branch3x3dbl_2 = BasicConv2d(c(64), c(96), 3, eps=eps)
        self.branch3x3dbl_3 = BasicConv2d(c(96), c(96), 3, 2, eps=eps, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), double, F.max_pool2d(x, 3, 2)], 1)  # B,C',h/2,w/2


class InceptionC(nn.Module):
    """1x1 | 1x1 -> 1x7 -> 7x1 | 1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7 | 3x3 average -> 1x1, `c7` inner channels."""

    def __init__(self, cin: int, c7: int, c, eps: float):
        super().__init__()
        row, col = {"kernel": (1, 7), "padding": (0, 3), "eps": eps}, {"kernel": (7, 1), "padding": (3, 0), "eps": eps}
        c7 = c(c7)
        self.branch1x1 = BasicConv2d(cin, c(192), 1, eps=eps)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1, eps=eps)
        self.branch7x7_2 = BasicConv2d(c7, c7, **row)
        self.branch7x7_3 = BasicConv2d(c7, c(192), **col)
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1, eps=eps)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, **row)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_5 = BasicConv2d(c7, c(192), **row)
        self.branch_pool = BasicConv2d(cin, c(192), 1, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = self.branch7x7dbl_1(x)
        for i in range(2, 6):
            double = getattr(self, f"branch7x7dbl_{i}")(double)
        return torch.cat([self.branch1x1(x), single, double, self.branch_pool(_pool3(x))], 1)  # B,C',h,w


class InceptionD(nn.Module):
    """1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 | 3x3/2 max-pool: halves the map."""

    def __init__(self, cin: int, c, eps: float):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, c(192), 1, eps=eps)
        self.branch3x3_2 = BasicConv2d(c(192), c(320), 3, 2, eps=eps, padding=0)
        self.branch7x7x3_1 = BasicConv2d(cin, c(192), 1, eps=eps)
        self.branch7x7x3_2 = BasicConv2d(c(192), c(192), (1, 7), eps=eps, padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(c(192), c(192), (7, 1), eps=eps, padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(c(192), c(192), 3, 2, eps=eps, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_2(self.branch3x3_1(x))
        b = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([a, b, F.max_pool2d(x, 3, 2)], 1)  # B,C',h/2,w/2


class InceptionE(nn.Module):
    """1x1 | 1x1 -> (1x3 | 3x1) | 1x1 -> 3x3 -> (1x3 | 3x1) | 3x3 average -> 1x1."""

    def __init__(self, cin: int, c, eps: float):
        super().__init__()
        row, col = {"kernel": (1, 3), "padding": (0, 1), "eps": eps}, {"kernel": (3, 1), "padding": (1, 0), "eps": eps}
        self.branch1x1 = BasicConv2d(cin, c(320), 1, eps=eps)
        self.branch3x3_1 = BasicConv2d(cin, c(384), 1, eps=eps)
        self.branch3x3_2a = BasicConv2d(c(384), c(384), **row)
        self.branch3x3_2b = BasicConv2d(c(384), c(384), **col)
        self.branch3x3dbl_1 = BasicConv2d(cin, c(448), 1, eps=eps)
        self.branch3x3dbl_2 = BasicConv2d(c(448), c(384), 3, eps=eps)
        self.branch3x3dbl_3a = BasicConv2d(c(384), c(384), **row)
        self.branch3x3dbl_3b = BasicConv2d(c(384), c(384), **col)
        self.branch_pool = BasicConv2d(cin, c(192), 1, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a), self.branch3x3dbl_3a(b),
                          self.branch3x3dbl_3b(b), self.branch_pool(_pool3(x))], 1)  # B,C',h,w


class InceptionV3(nn.Module):
    """image [B, C, H, W] (field `field` of the input bundle) -> {"features": Mixed_7c [B, 2048/d, h, w], "pooled":
    [B, 2048/d], "regions": Mixed_6e [B, r*r, 768/d]}."""

    def __init__(self, channels: int, divisor: int, resize: int | None, eps: float, field: str):
        super().__init__()
        c = lambda n: n // divisor  # noqa: E731
        self.resize, self.field = resize, field
        self.Conv2d_1a_3x3 = BasicConv2d(channels, c(32), 3, 2, eps=eps, padding=0)
        self.Conv2d_2a_3x3 = BasicConv2d(c(32), c(32), 3, eps=eps, padding=0)
        self.Conv2d_2b_3x3 = BasicConv2d(c(32), c(64), 3, eps=eps)
        self.Conv2d_3b_1x1 = BasicConv2d(c(64), c(80), 1, eps=eps)
        self.Conv2d_4a_3x3 = BasicConv2d(c(80), c(192), 3, eps=eps, padding=0)
        w = {name: out for name, _, out in block_params(divisor, channels)}  # output channels by block
        self.Mixed_5b = InceptionA(w["Conv2d_4a_3x3"], 32, c, eps)
        self.Mixed_5c = InceptionA(w["Mixed_5b"], 64, c, eps)
        self.Mixed_5d = InceptionA(w["Mixed_5c"], 64, c, eps)
        self.Mixed_6a = InceptionB(w["Mixed_5d"], c, eps)
        self.Mixed_6b = InceptionC(w["Mixed_6a"], 128, c, eps)
        self.Mixed_6c = InceptionC(w["Mixed_6b"], 160, c, eps)
        self.Mixed_6d = InceptionC(w["Mixed_6c"], 160, c, eps)
        self.Mixed_6e = InceptionC(w["Mixed_6d"], 192, c, eps)
        self.Mixed_7a = InceptionD(w["Mixed_6e"], c, eps)
        self.Mixed_7b = InceptionE(w["Mixed_7a"], c, eps)
        self.Mixed_7c = InceptionE(w["Mixed_7b"], c, eps)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = inputs["input"][self.field]  # B,C,H,W
        if self.resize is not None:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)  # B,C,R,R
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # B,64,147,147 at 299
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, 2)))  # B,192,71,71
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(F.max_pool2d(x, 3, 2))))  # B,288,35,35
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(self.Mixed_6a(x)))))  # B,768,17,17
        regions = x.flatten(2).transpose(1, 2)  # B,289,768
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))  # B,2048,8,8
        return {"features": x, "pooled": x.mean((2, 3)), "regions": regions}  # B,2048
