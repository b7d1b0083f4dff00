"""BigGAN-deep's generator network behind `biggan_generator`: conditional batch norm, bottleneck residual blocks
and SAGAN self-attention."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class BatchNorm(nn.Module):
    """Batch normalisation as a function of its own buffers: batch statistics (and running-average updates) while
    training, the running statistics in eval. BigGAN's norms follow residual sums and the condition, not a conv,
    so there is nothing to fold them into; the functional form keeps them as plain arithmetic in the graph."""

    def __init__(self, channels: int, eps: float, affine: bool):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training, 0.1,
                            self.eps)  # B,C,H,W


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without affine, then a per-example gain 1 + Linear(c) and bias Linear(c) from the condition."""

    def __init__(self, channels: int, cond: int, eps: float):
        super().__init__()
        self.norm = BatchNorm(channels, eps, affine=False)
        self.gain = nn.Linear(cond, channels, bias=False)
        self.bias = nn.Linear(cond, channels, bias=False)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        gain = 1 + self.gain(c)[:, :, None, None]  # B,C,1,1
        return self.norm(x) * gain + self.bias(c)[:, :, None, None]  # B,C,H,W


class DeepBlock(nn.Module):
    """Bottleneck residual block: four (CBN, ReLU, conv) steps 1x1 -> 3x3 -> 3x3 -> 1x1, the resolution doubled
    (nearest) before the first 3x3; the skip keeps the first `cout` channels and is upsampled alike."""

    def __init__(self, cin: int, cout: int, cond: int, reduction: int, up: bool, eps: float):
        super().__init__()
        mid = cin // reduction
        self.up, self.cout = up, cout
        self.norms = nn.ModuleList(ConditionalBatchNorm(c, cond, eps) for c in (cin, mid, mid, mid))
        self.convs = nn.ModuleList([nn.Conv2d(cin, mid, 1), nn.Conv2d(mid, mid, 3, padding=1),
                                    nn.Conv2d(mid, mid, 3, padding=1), nn.Conv2d(mid, cout, 1)])

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = x
        for i, (norm, conv) in enumerate(zip(self.norms, self.convs, strict=True)):
            h = F.relu(norm(h, c))
            if i == 1 and self.up:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")  # B,mid,2H,2W
            h = conv(h)
        skip = x[:, : self.cout]  # B,cout,H,W
        if self.up:
            skip = F.interpolate(skip, scale_factor=2.0, mode="nearest")  # B,cout,2H,2W
        return h + skip


class SelfAttention(nn.Module):
    """SAGAN self-attention: queries C/8, keys C/8 and values C/2 (keys and values max-pooled 2x2), a 1x1 output
    conv, added back scaled by a learned gamma that starts at 0."""

    def __init__(self, channels: int):
        super().__init__()
        self.query = nn.Conv2d(channels, channels // 8, 1, bias=False)
        self.key = nn.Conv2d(channels, channels // 8, 1, bias=False)
        self.value = nn.Conv2d(channels, channels // 2, 1, bias=False)
        self.out = nn.Conv2d(channels // 2, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q = self.query(x).flatten(2)  # B,C/8,HW
        k = F.max_pool2d(self.key(x), 2).flatten(2)  # B,C/8,HW/4
        v = F.max_pool2d(self.value(x), 2).flatten(2)  # B,C/2,HW/4
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # B,HW,HW/4
        out = (v @ attn.transpose(1, 2)).reshape(b, -1, h, w)  # B,C/2,H,W
        return x + self.gamma * self.out(out)


class BigGANDeepGenerator(nn.Module):
    """(z [B, nz], class vector [B, K]) -> image [B, out_channels, S, S]; see `biggan_generator`."""

    def __init__(self, nz: int, classes: int, embed_dim: int, first: int, blocks: list[tuple[int, int, bool]],
                 attention: int | None, reduction: int, out_channels: int, rgb_conv: int, eps: float):
        super().__init__()
        cond = nz + embed_dim
        self.first, self.out_channels = first, out_channels
        self.embed = nn.Linear(classes, embed_dim, bias=False)
        self.stem = nn.Linear(cond, first * 16)
        self.blocks = nn.ModuleList(DeepBlock(a, b, cond, reduction, up, eps) for a, b, up in blocks)
        self.attention_at = attention
        self.attention = SelfAttention(blocks[attention][0]) if attention is not None else None
        last = blocks[-1][1]
        self.norm = BatchNorm(last, eps, affine=True)
        self.to_rgb = nn.Conv2d(last, rgb_conv, 3, padding=1)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c = torch.cat([z, self.embed(y)], dim=1)  # B,nz+E
        x = self.stem(c).reshape(-1, self.first, 4, 4)  # B,C0,4,4
        for i, block in enumerate(self.blocks):
            if i == self.attention_at:
                x = self.attention(x)
            x = block(x, c)  # B,Ci,H,W
        x = self.to_rgb(F.relu(self.norm(x)))[:, : self.out_channels]  # B,3,S,S
        return torch.tanh(x)
