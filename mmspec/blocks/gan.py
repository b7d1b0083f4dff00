"""GAN generators and discriminators for images: the DC-GAN family (transposed convolutions with BatchNorm, Reed et
al.'s text-conditional variant with bottleneck residual stages) and DF-GAN's deep text-image fusion blocks.

Generators map noise [B, nz] (and a condition vector [B, C]) to images [B, 3, H, W] in [-1, 1]; discriminators
map an image (and a condition) to one logit [B, 1]. Image sizes follow the widths: a generator starts at 4x4 and
doubles per stage; a discriminator halves per stage down to its last feature map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SLOPE = 0.2
"""Negative slope of every LeakyReLU of these networks."""


class Bottleneck(nn.Module):
    """x + [1x1 conv to width/4, BN, ReLU, 3x3 conv, BN, ReLU, 3x3 conv back to width, BN] (Reed et al. 2016)."""

    def __init__(self, width: int, bias: bool):
        super().__init__()
        inner = width // 4
        self.body = nn.Sequential(
            nn.Conv2d(width, inner, 1, bias=bias), nn.BatchNorm2d(inner), nn.ReLU(),
            nn.Conv2d(inner, inner, 3, padding=1, bias=bias), nn.BatchNorm2d(inner), nn.ReLU(),
            nn.Conv2d(inner, width, 3, padding=1, bias=bias), nn.BatchNorm2d(width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)  # B,W,h,w


class ConditionCode(nn.Module):
    """A condition vector [B, C] -> [B, dim]: Linear, optional BatchNorm, LeakyReLU (Reed's text projection)."""

    def __init__(self, cond: int, dim: int, norm: bool):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cond, dim), *([nn.BatchNorm1d(dim)] if norm else []), nn.LeakyReLU(SLOPE))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.net(c)  # B,dim


class DCGANGenerator(nn.Module):
    """noise [B, nz] (+ projected condition) -> image [B, channels, 4*2^n, 4*2^n], n = len(widths):
    a 4x4 transposed conv from 1x1 to widths[0], then a stride-2 transposed conv per further width and one to
    `channels`, each followed by BatchNorm, the stage's bottleneck residual where `residual` says so, and ReLU;
    tanh at the end."""

    def __init__(self, nz: int, widths: list[int], channels: int, residual: list[bool], bias: bool,
                 cond: int = 0, cond_dim: int | None = None):
        super().__init__()
        self.code = ConditionCode(cond, cond_dim, norm=False) if cond and cond_dim else None
        width = nz + (cond_dim or cond)
        stages = []
        for i, (w, res) in enumerate(zip(widths, residual, strict=True)):
            up = nn.ConvTranspose2d(width, w, 4, 1, 0, bias=bias) if i == 0 else \
                nn.ConvTranspose2d(width, w, 4, 2, 1, bias=bias)
            stages.append(nn.Sequential(up, nn.BatchNorm2d(w), *([Bottleneck(w, bias)] if res else []),
                                        nn.ReLU()))
            width = w
        self.stages = nn.Sequential(*stages)
        self.to_image = nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=bias)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if c is not None:
            z = torch.cat([z, self.code(c) if self.code is not None else c], 1)  # B,nz+cd
        h = self.stages(z[:, :, None, None])  # B,W,H/2,W/2
        return torch.tanh(self.to_image(h))  # B,C,H,W


class DCGANDiscriminator(nn.Module):
    """image [B, channels, H, W] (+ condition [B, C]) -> logit [B, 1]: a stride-2 4x4 conv per width (BatchNorm on
    all but the first, LeakyReLU 0.2), a 3x3 conv + BN + LeakyReLU per `tail` width; with a condition, its code
    replicated over the final k x k map, concatenated, and a `joint`-sized conv + BN + LeakyReLU; a k x k conv to
    1. `unconditional` also scores the image alone with another k x k conv (StackGAN's second logit). `spectral`
    (DM-GAN): every conv but the logits' spectrally normalised, and no BatchNorm."""

    def __init__(self, channels: int, widths: list[int], size: int, bias: bool, cond: int = 0,
                 cond_dim: int | None = None, tail: tuple[int, ...] = (), joint: int = 1, out_bias: bool = False,
                 unconditional: bool = False, spectral: bool = False):
        super().__init__()

        def conv(a: int, b: int, k: int, s: int, p: int) -> nn.Conv2d:
            layer = nn.Conv2d(a, b, k, s, p, bias=bias)
            return nn.utils.parametrizations.spectral_norm(layer) if spectral else layer

        def norm(w: int) -> list[nn.Module]:
            return [] if spectral else [nn.BatchNorm2d(w)]

        layers, width = [], channels
        for i, w in enumerate(widths):
            layers += [conv(width, w, 4, 2, 1), *(norm(w) if i else []), nn.LeakyReLU(SLOPE)]
            width = w
        for w in tail:
            layers += [conv(width, w, 3, 1, 1), *norm(w), nn.LeakyReLU(SLOPE)]
            width = w
        self.features = nn.Sequential(*layers)
        self.code = ConditionCode(cond, cond_dim, norm=True) if cond and cond_dim else None
        if cond:
            self.joint = nn.Sequential(conv((cond_dim or cond) + width, width, joint, 1, joint // 2), *norm(width),
                                       nn.LeakyReLU(SLOPE))
        self.out = nn.Conv2d(width, 1, size, bias=out_bias)
        self.uncond = nn.Conv2d(width, 1, size, bias=out_bias) if unconditional else None

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None):
        """The logit [B, 1]; with `unconditional`, (conditional, unconditional) logits."""
        h = self.features(x)  # B,W,k,k
        g = h
        if c is not None:
            code = self.code(c) if self.code is not None else c  # B,cd
            g = self.joint(torch.cat([h, code[:, :, None, None].expand(-1, -1, *h.shape[2:])], 1))  # B,W,k,k
        if self.uncond is None:
            return self.out(g).flatten(1)  # B,1
        return self.out(g).flatten(1), self.uncond(h).flatten(1)  # B,1 each


class Affine(nn.Module):
    """Channel-wise scale and shift of x [B, W, h, w], each predicted from the condition [B, C] by
    Linear-ReLU-Linear; initialised to the identity (scale 1, shift 0)."""

    def __init__(self, cond: int, width: int):
        super().__init__()
        self.scale = nn.Sequential(nn.Linear(cond, width), nn.ReLU(), nn.Linear(width, width))
        self.shift = nn.Sequential(nn.Linear(cond, width), nn.ReLU(), nn.Linear(width, width))
        for head, bias in ((self.scale, 1.0), (self.shift, 0.0)):
            nn.init.zeros_(head[2].weight)
            nn.init.constant_(head[2].bias, bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.scale(c)[:, :, None, None] * x + self.shift(c)[:, :, None, None]  # B,W,h,w


class FusionBlock(nn.Module):
    """DF-GAN's deep fusion: two (Affine, LeakyReLU) pairs."""

    def __init__(self, cond: int, width: int):
        super().__init__()
        self.affine0, self.affine1 = Affine(cond, width), Affine(cond, width)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.affine0(x, c), SLOPE)  # B,W,h,w
        return F.leaky_relu(self.affine1(h, c), SLOPE)


class FusionUpBlock(nn.Module):
    """Nearest x2, then shortcut (1x1 conv when the width changes) + [fuse, 3x3 conv, fuse, 3x3 conv]."""

    def __init__(self, cond: int, cin: int, cout: int):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(cin, cout, 3, padding=1), nn.Conv2d(cout, cout, 3, padding=1)
        self.fuse1, self.fuse2 = FusionBlock(cond, cin), FusionBlock(cond, cout)
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # B,cin,2h,2w
        h = self.conv2(self.fuse2(self.conv1(self.fuse1(x, c)), c))  # B,cout,2h,2w
        return self.shortcut(x) + h


class DFGANGenerator(nn.Module):
    """DF-GAN: noise [B, nz] -> Linear -> [B, widths[0], 4, 4]; one fusion up-block per further width, each
    conditioned on [noise, sentence]; LeakyReLU, a 3x3 conv to `channels`, tanh."""

    def __init__(self, nz: int, cond: int, widths: list[int], channels: int):
        super().__init__()
        self.fc = nn.Linear(nz, widths[0] * 16)
        self.blocks = nn.ModuleList(FusionUpBlock(nz + cond, a, b) for a, b in zip(widths, widths[1:], strict=False))
        self.to_image = nn.Conv2d(widths[-1], channels, 3, padding=1)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).unflatten(1, (-1, 4, 4))  # B,W0,4,4
        cond = torch.cat([z, c], 1)  # B,nz+C
        for block in self.blocks:
            h = block(h, cond)  # B,W,2h,2w
        return torch.tanh(self.to_image(F.leaky_relu(h, SLOPE)))  # B,C,H,W


class DownBlock(nn.Module):
    """DF-GAN discriminator block: avgpool2(shortcut(x)) + gamma * [4x4 stride-2 conv, LReLU, 3x3 conv, LReLU],
    the shortcut a 1x1 conv when the width changes, gamma a learned scalar starting at 0."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.LeakyReLU(SLOPE),
                                  nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.LeakyReLU(SLOPE))
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.shortcut(x), 2) + self.gamma * self.body(x)  # B,cout,h/2,w/2


class DFGANDiscriminator(nn.Module):
    """DF-GAN: a 3x3 conv to widths[0], a down-block per further width, then the one-way output: the sentence
    replicated over the k x k map, concatenated, 3x3 conv to `joint`, LeakyReLU, a k x k conv to one logit."""

    def __init__(self, channels: int, widths: list[int], cond: int, joint: int, size: int):
        super().__init__()
        self.stem = nn.Conv2d(channels, widths[0], 3, padding=1)
        self.blocks = nn.Sequential(*(DownBlock(a, b) for a, b in zip(widths, widths[1:], strict=False)))
        self.joint = nn.Sequential(nn.Conv2d(widths[-1] + cond, joint, 3, padding=1, bias=False), nn.LeakyReLU(SLOPE),
                                   nn.Conv2d(joint, 1, size, bias=False))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(x))  # B,W,k,k
        h = torch.cat([h, c[:, :, None, None].expand(-1, -1, *h.shape[2:])], 1)  # B,W+C,k,k
        return self.joint(h).flatten(1)  # B,1


class ConditioningAugmentation(nn.Module):
    """StackGAN: text embedding [B, T] -> Linear + ReLU (AttnGAN, `glu`: a Linear twice as wide + GLU) -> mean,
    log-variance [B, c] (the two halves); the code is mean + exp(log_var / 2) * eps while training, the mean
    otherwise."""

    def __init__(self, text: int, dim: int, glu: bool = False):
        super().__init__()
        self.glu = glu
        self.fc = nn.Linear(text, (4 if glu else 2) * dim)

    def forward(self, t: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.fc(t)  # B,2c or B,4c
        if self.glu:
            a, b = x.chunk(2, dim=1)  # B,2c each
            x = a * torch.sigmoid(b)
        mean, log_var = (x if self.glu else F.relu(x)).chunk(2, dim=1)  # B,c each
        code = mean + torch.randn_like(mean) * (0.5 * log_var).exp() if self.training else mean
        return {"code": code, "mean": mean, "log_var": log_var}


def up_block(cin: int, cout: int) -> nn.Sequential:
    """Nearest x2, 3x3 conv (no bias), BatchNorm, ReLU (StackGAN's upBlock)."""
    return nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class ResBlock(nn.Module):
    """ReLU(x + [3x3 conv, BN, ReLU, 3x3 conv, BN]) without biases."""

    def __init__(self, width: int):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                                   nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.block(x))  # B,W,h,w


class StackGANGenerator(nn.Module):
    """StackGAN Stage-I: [noise, condition code] -> Linear (no bias) + BN + ReLU -> widths[0] x 4 x 4, an up-block
    per further width, a 3x3 conv to `channels`, tanh."""

    def __init__(self, nz: int, cond: int, widths: list[int], channels: int):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(nz + cond, widths[0] * 16, bias=False), nn.BatchNorm1d(widths[0] * 16),
                                nn.ReLU())
        self.ups = nn.Sequential(*(up_block(a, b) for a, b in zip(widths, widths[1:], strict=False)))
        self.to_image = nn.Conv2d(widths[-1], channels, 3, 1, 1, bias=False)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, c], 1)).unflatten(1, (-1, 4, 4))  # B,W0,4,4
        return torch.tanh(self.to_image(self.ups(h)))  # B,C,H,W


class StackGANRefiner(nn.Module):
    """StackGAN Stage-II: a low-resolution image [B, C, h, w] and a condition code -> a 3x3 conv + ReLU and stride-2
    4x4 convs + BN + ReLU through `encoder` widths; the code replicated over the map, a 3x3 joint conv + BN + ReLU;
    `blocks` residual blocks; an up-block per `up` width; a 3x3 conv to `channels`, tanh."""

    def __init__(self, channels: int, cond: int, encoder: list[int], blocks: int, up: list[int]):
        super().__init__()
        layers = [nn.Conv2d(channels, encoder[0], 3, 1, 1, bias=False), nn.ReLU()]
        for a, b in zip(encoder, encoder[1:], strict=False):
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
        self.encoder = nn.Sequential(*layers)
        w = encoder[-1]
        self.joint = nn.Sequential(nn.Conv2d(cond + w, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.residual = nn.Sequential(*(ResBlock(w) for _ in range(blocks)))
        self.ups = nn.Sequential(*(up_block(a, b) for a, b in zip([w, *up], up, strict=False)))
        self.to_image = nn.Conv2d(up[-1], channels, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)  # B,W,h/4,w/4
        h = self.joint(torch.cat([h, c[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])], 1))  # B,W,h/4,w/4
        return torch.tanh(self.to_image(self.ups(self.residual(h))))  # B,C,H,W
