"""StyleGAN's networks behind `stylegan_mapping`, `stylegan_synthesis` and `stylegan_discriminator`, with the
equalized learning rate: weights are stored N(0, 1) / lr_multiplier and scaled by gain / sqrt(fan_in) *
lr_multiplier in the forward pass."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

_LRELU = 0.2


class EqualLinear(nn.Module):
    def __init__(self, cin: int, cout: int, gain: float = math.sqrt(2), lr_multiplier: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_multiplier)
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale, self.lr_multiplier = gain / math.sqrt(cin) * lr_multiplier, lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_multiplier)  # B,out


class EqualConv(nn.Module):
    """k x k conv, 'same' padding; `bias` false leaves the bias to the layer that follows."""

    def __init__(self, cin: int, cout: int, kernel: int, gain: float = math.sqrt(2), bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale = gain / math.sqrt(cin * kernel * kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.weight.shape[-1] // 2)  # B,out,H,W


class Blur(nn.Module):
    """Depthwise [1, 2, 1] x [1, 2, 1] / 16 low-pass filter, 'same' padding."""

    def __init__(self, channels: int):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (k[:, None] * k[None, :] / 16).repeat(channels, 1, 1, 1), persistent=False)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel, padding=1, groups=self.channels)  # B,C,H,W


class Mapping(nn.Module):
    """{"input": z [B, nz]} -> {"w": [B, D]}; see `stylegan_mapping`."""

    def __init__(self, nz: int, layers: int, width: int, dim: int, lr_multiplier: float, normalize: bool,
                 psi: float, beta: float):
        super().__init__()
        dims = [nz] + [width] * (layers - 1) + [dim]
        self.layers = nn.ModuleList(EqualLinear(a, b, lr_multiplier=lr_multiplier)
                                    for a, b in zip(dims, dims[1:], strict=False))
        self.normalize, self.psi, self.beta = normalize, psi, beta
        self.register_buffer("w_avg", torch.zeros(dim))

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = next(iter(inputs["input"].values()))  # B,nz
        if self.normalize:
            x = x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = F.leaky_relu(layer(x), _LRELU)  # B,width
        if self.training:
            self.w_avg.copy_(torch.lerp(x.detach().mean(0), self.w_avg, self.beta))
        elif self.psi < 1:
            x = torch.lerp(self.w_avg, x, self.psi)  # the truncation trick
        return {"w": x}  # B,D


class StyleLayer(nn.Module):
    """[nearest x2,] [3x3 conv,] [blur,] then noise, bias, LeakyReLU, instance norm and the style from w."""

    def __init__(self, cin: int, cout: int, dim: int, side: int, conv: bool, up: bool, blur: bool):
        super().__init__()
        self.conv = EqualConv(cin, cout, 3, bias=False) if conv else None
        self.up = up
        self.blur = Blur(cout) if blur and up else None
        self.noise_strength = nn.Parameter(torch.zeros(cout))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.style = EqualLinear(dim, 2 * cout, gain=1.0)
        self.register_buffer("noise", torch.randn(1, 1, side, side))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # B,C,2H,2W
        if self.conv is not None:
            x = self.conv(x)
        if self.blur is not None:
            x = self.blur(x)
        noise = torch.randn_like(x[:, :1]) if self.training else self.noise  # B|1,1,H,W
        x = x + self.noise_strength[None, :, None, None] * noise + self.bias[None, :, None, None]
        x = F.leaky_relu(x, _LRELU)
        x = F.instance_norm(x, eps=1e-8)
        scale, shift = self.style(w)[:, :, None, None].chunk(2, dim=1)  # B,C,1,1 each
        return x * (scale + 1) + shift


class Synthesis(nn.Module):
    """w [B, D] -> image [B, C, S, S]; see `stylegan_synthesis`."""

    def __init__(self, dim: int, widths: list[int], channels: int, blur: bool):
        super().__init__()
        c0 = widths[0]
        self.const = nn.Parameter(torch.ones(1, c0, 4, 4))
        layers = [StyleLayer(c0, c0, dim, 4, False, False, blur), StyleLayer(c0, c0, dim, 4, True, False, blur)]
        for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
            side = 8 * 2**i
            layers += [StyleLayer(a, b, dim, side, True, True, blur), StyleLayer(b, b, dim, side, True, False, blur)]
        self.layers = nn.ModuleList(layers)
        self.to_rgb = EqualConv(widths[-1], channels, 1, gain=1.0)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        x = self.const.expand(w.shape[0], -1, -1, -1)  # B,C0,4,4
        for layer in self.layers:
            x = layer(x, w)  # B,Ci,H,W
        return self.to_rgb(x)  # B,C,S,S


class StyleDiscriminator(nn.Module):
    """image [B, C, S, S] -> logit [B, 1]; see `stylegan_discriminator`."""

    def __init__(self, channels: int, widths: list[int], dense: int, group: int, blur: bool):
        super().__init__()
        self.group = group
        self.from_rgb = EqualConv(channels, widths[-1], 1)
        self.blocks = nn.ModuleList(
            nn.ModuleList([EqualConv(a, a, 3), Blur(a) if blur else nn.Identity(), EqualConv(a, b, 3)])
            for a, b in zip(widths[1:][::-1], widths[:-1][::-1], strict=True))
        self.conv = EqualConv(widths[0] + 1, widths[0], 3)
        self.dense = EqualLinear(16 * widths[0], dense)
        self.out = EqualLinear(dense, 1, gain=1.0)

    def _stddev(self, x: torch.Tensor) -> torch.Tensor:
        """Appends the minibatch standard deviation (over groups of `group` examples) as one channel."""
        b, _, h, w = x.shape
        g = min(self.group, b) if b % min(self.group, b) == 0 else 1
        y = x.reshape(g, -1, *x.shape[1:])  # G,M,C,H,W
        y = torch.sqrt(y.var(0, unbiased=False) + 1e-8).mean((1, 2, 3))  # M
        return torch.cat([x, y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)], dim=1)  # B,C+1,H,W

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.from_rgb(x), _LRELU)  # B,C,S,S
        for conv0, blur, conv1 in self.blocks:
            x = F.leaky_relu(conv0(x), _LRELU)
            x = F.leaky_relu(F.avg_pool2d(conv1(blur(x)), 2), _LRELU)  # B,C',H/2,W/2
        x = F.leaky_relu(self.conv(self._stddev(x)), _LRELU)  # B,C0,4,4
        return self.out(F.leaky_relu(self.dense(x.flatten(1)), _LRELU))  # B,1


# StyleGAN2 (Karras et al. 2020) and StyleCLIP's latent mapper (Patashnik et al. 2021)


def _blur_kernel(channels: int, gain: float) -> torch.Tensor:
    """[1, 3, 3, 1] x [1, 3, 3, 1] / 64 * gain, one copy per channel [C, 1, 4, 4]."""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    return (k[:, None] * k[None, :] / 64 * gain).repeat(channels, 1, 1, 1)


class ModulatedConv(nn.Module):
    """k x k conv whose input channels are scaled per example by a style (affine of w, bias 1) and, with
    `demodulate`, whose outputs are rescaled to unit expected variance. Computed as modulate the input, one shared
    conv, demodulate the output, which equals the per-example weights of the paper. `up`: a stride-2 transposed
    conv followed by the [1, 3, 3, 1] blur (the resolution doubles)."""

    def __init__(self, cin: int, cout: int, kernel: int, dim: int, demodulate: bool, up: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.modulation = EqualLinear(dim, cin, gain=1.0)
        with torch.no_grad():
            self.modulation.bias.fill_(1.0)
        self.scale, self.demodulate, self.up, self.cout = 1 / math.sqrt(cin * kernel * kernel), demodulate, up, cout
        if up:
            self.register_buffer("blur", _blur_kernel(cout, 4.0), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.modulation(w)  # B,Cin
        weight = self.weight * self.scale  # Cout,Cin,k,k
        x = x * style[:, :, None, None]
        if self.up:
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)  # B,Cout,2H+1,2W+1
            x = F.conv2d(x, self.blur, padding=1, groups=self.cout)  # B,Cout,2H,2W
        else:
            x = F.conv2d(x, weight, padding=weight.shape[-1] // 2)  # B,Cout,H,W
        if self.demodulate:
            demod = torch.rsqrt(style.pow(2) @ weight.pow(2).sum((2, 3)).t() + 1e-8)  # B,Cout
            x = x * demod[:, :, None, None]
        return x


class StyledConv(nn.Module):
    """Modulated 3x3 conv, noise scaled by one learned scalar, bias, LeakyReLU 0.2 times sqrt(2)."""

    def __init__(self, cin: int, cout: int, dim: int, side: int, up: bool):
        super().__init__()
        self.conv = ModulatedConv(cin, cout, 3, dim, True, up)
        self.noise_strength = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.register_buffer("noise", torch.randn(1, 1, side, side))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = self.conv(x, w)  # B,Cout,H,W
        noise = torch.randn_like(x[:, :1]) if self.training else self.noise  # B|1,1,H,W
        x = x + self.noise_strength * noise + self.bias[None, :, None, None]
        return F.leaky_relu(x, _LRELU) * math.sqrt(2)


class ToRGB(nn.Module):
    """Modulated 1x1 conv (no demodulation) + bias, added to the previous resolution's RGB upsampled by zero
    insertion and the [1, 3, 3, 1] filter."""

    def __init__(self, cin: int, channels: int, dim: int, up: bool):
        super().__init__()
        self.conv = ModulatedConv(cin, channels, 1, dim, False, False)
        self.bias = nn.Parameter(torch.zeros(channels))
        self.channels = channels
        if up:
            self.register_buffer("upfilter", _blur_kernel(channels, 4.0), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        rgb = self.conv(x, w) + self.bias[None, :, None, None]  # B,C,H,W
        if skip is None:
            return rgb
        return rgb + F.conv_transpose2d(skip, self.upfilter, stride=2, padding=1, groups=self.channels)


class Synthesis2(nn.Module):
    """w [B, D] or W+ [B, L, D] -> image [B, C, S, S]; see `stylegan2_synthesis`."""

    def __init__(self, dim: int, widths: list[int], channels: int, wplus: bool):
        super().__init__()
        c0 = widths[0]
        self.wplus = wplus
        self.const = nn.Parameter(torch.randn(1, c0, 4, 4))
        self.convs = nn.ModuleList([StyledConv(c0, c0, dim, 4, False)])
        self.to_rgbs = nn.ModuleList([ToRGB(c0, channels, dim, False)])
        for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
            side = 8 * 2**i
            self.convs.extend([StyledConv(a, b, dim, side, True), StyledConv(b, b, dim, side, False)])
            self.to_rgbs.append(ToRGB(b, channels, dim, True))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        styles = w if self.wplus else w[:, None].expand(-1, 2 * len(self.to_rgbs), -1)  # B,L,D
        x = self.convs[0](self.const.expand(w.shape[0], -1, -1, -1), styles[:, 0])  # B,C0,4,4
        rgb = self.to_rgbs[0](x, styles[:, 1], None)
        for i, to_rgb in enumerate(self.to_rgbs[1:]):
            x = self.convs[1 + 2 * i](x, styles[:, 1 + 2 * i])  # B,Ci,2H,2W
            x = self.convs[2 + 2 * i](x, styles[:, 2 + 2 * i])
            rgb = to_rgb(x, styles[:, 3 + 2 * i], rgb)  # B,C,2H,2W
        return rgb


class LatentMapper(nn.Module):
    """StyleCLIP's mapper on W+ rows: pixel norm over the rows it is given (the official code normalises dim 1),
    then 4 equalized dense layers (lr multiplier 0.01, bias, LeakyReLU 0.2 times sqrt(2))."""

    def __init__(self, dim: int, layers: int, lr_multiplier: float):
        super().__init__()
        self.layers = nn.ModuleList(EqualLinear(dim, dim, gain=1.0, lr_multiplier=lr_multiplier)
                                    for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-8)  # B,rows,D
        for layer in self.layers:
            x = F.leaky_relu(layer(x), _LRELU) * math.sqrt(2)
        return x


class LevelsMapper(nn.Module):
    """{"input": W+ [B, L, D]} -> {"delta", "edited"}: one mapper per group of rows (coarse, medium, fine);
    edited = w + strength * delta."""

    def __init__(self, dim: int, groups: list[int], layers: int, lr_multiplier: float, strength: float):
        super().__init__()
        self.groups, self.strength = groups, strength
        self.mappers = nn.ModuleList(LatentMapper(dim, layers, lr_multiplier) for _ in groups)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        w = next(iter(inputs["input"].values()))  # B,L,D
        parts, start = [], 0
        for size, mapper in zip(self.groups, self.mappers, strict=True):
            parts.append(mapper(w[:, start : start + size]))
            start += size
        delta = torch.cat(parts, dim=1)  # B,L,D
        return {"delta": delta, "edited": w + self.strength * delta}
