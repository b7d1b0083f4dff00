"""Reference networks of the text-to-image GAN specs (T2I-01, T2I-02, T2I-06), rebuilt with plain torch.nn from the
official code's layer sizes (none of it is installable: pytorch/examples is a script, reedscot/icml2016 is Lua
Torch, tobran/DF-GAN a training repository), so that tests/references.py can compare the specs' parameter counts
and tests/coverage/test_text_to_image_gans.py their outputs. Each builder returns (generator, discriminator) as
callables over (noise[, text]) and (image[, text]); every module is written out in the official layer order."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dcgan_example(nz: int = 100, ngf: int = 64, ndf: int = 64, nc: int = 3) -> tuple[nn.Module, nn.Module]:
    """pytorch/examples dcgan/main.py: bias-free (transposed) convs, BatchNorm, ReLU / LeakyReLU(0.2), 64x64."""

    def up(a: int, b: int, first: bool = False) -> list[nn.Module]:
        return [nn.ConvTranspose2d(a, b, 4, 1 if first else 2, 0 if first else 1, bias=False), nn.BatchNorm2d(b),
                nn.ReLU()]

    def down(a: int, b: int, bn: bool = True) -> list[nn.Module]:
        return [nn.Conv2d(a, b, 4, 2, 1, bias=False), *([nn.BatchNorm2d(b)] if bn else []), nn.LeakyReLU(0.2)]

    g = nn.Sequential(*up(nz, ngf * 8, True), *up(ngf * 8, ngf * 4), *up(ngf * 4, ngf * 2), *up(ngf * 2, ngf),
                      nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())
    d = nn.Sequential(*down(nc, ndf, bn=False), *down(ndf, ndf * 2), *down(ndf * 2, ndf * 4), *down(ndf * 4, ndf * 8),
                      nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False))
    return _Unsqueezed(g), _Flat(d)


class _Unsqueezed(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])  # B,3,H,W


class _Flat(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)  # B,1


class _ReedResidual(nn.Module):
    """The icml2016 ConcatTable(Identity, conv chain) + CAddTable: 1x1 to width/4, 3x3, 3x3 back, BN after each."""

    def __init__(self, w: int, q: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(w, q, 1, bias=False), nn.BatchNorm2d(q), nn.ReLU(),
                                  nn.Conv2d(q, q, 3, 1, 1, bias=False), nn.BatchNorm2d(q), nn.ReLU(),
                                  nn.Conv2d(q, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class ReedGenerator(nn.Module):
    """reedscot/icml2016 main_cls_int.lua netG (txtSize 1024, nt 128, nz 100, ngf 128). Its conv biases are
    zeroed before every update (fDx/fGx), so they are left out here."""

    def __init__(self, nz: int = 100, txt: int = 1024, nt: int = 128, ngf: int = 128, nc: int = 3):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(txt, nt), nn.LeakyReLU(0.2))
        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz + nt, ngf * 8, 4, bias=False), nn.BatchNorm2d(ngf * 8),
            _ReedResidual(ngf * 8, ngf * 2), nn.ReLU(),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4),
            _ReedResidual(ngf * 4, ngf), nn.ReLU(),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, self.fc(t)], 1)[:, :, None, None])  # B,3,64,64


class ReedDiscriminator(nn.Module):
    """reedscot/icml2016 main_cls_int.lua netD (ndf 64): convD, whose residual branch is never added (it is
    `skipD`, an undefined variable, so the ConcatTable holds the identity alone), fcD (Linear, BatchNorm,
    LeakyReLU) replicated 4x4, a 1x1 conv + BN + LeakyReLU, a 4x4 conv; the sigmoid is the loss's. The Lua code
    has no LeakyReLU after the ndf*4 BatchNorm; that layer is parameter-free and written here like the others."""

    def __init__(self, txt: int = 1024, nt: int = 128, ndf: int = 64, nc: int = 3):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2))
        self.fc = nn.Sequential(nn.Linear(txt, nt), nn.BatchNorm1d(nt), nn.LeakyReLU(0.2))
        self.joint = nn.Sequential(nn.Conv2d(ndf * 8 + nt, ndf * 8, 1, bias=False), nn.BatchNorm2d(ndf * 8),
                                   nn.LeakyReLU(0.2), nn.Conv2d(ndf * 8, 1, 4, bias=False))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)  # B,512,4,4
        code = self.fc(t)[:, :, None, None].expand(-1, -1, 4, 4)  # B,128,4,4
        return self.joint(torch.cat([h, code], 1)).flatten(1)  # B,1


def gan_int_cls() -> tuple[nn.Module, nn.Module]:
    return ReedGenerator(), ReedDiscriminator()


class _DFAffine(nn.Module):
    def __init__(self, cond: int, n: int):
        super().__init__()
        self.fc_gamma = nn.Sequential(nn.Linear(cond, n), nn.ReLU(), nn.Linear(n, n))
        self.fc_beta = nn.Sequential(nn.Linear(cond, n), nn.ReLU(), nn.Linear(n, n))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fc_gamma(y)[:, :, None, None] * x + self.fc_beta(y)[:, :, None, None]


class _DFBlk(nn.Module):
    def __init__(self, cond: int, n: int):
        super().__init__()
        self.affine0, self.affine1 = _DFAffine(cond, n), _DFAffine(cond, n)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.affine1(F.leaky_relu(self.affine0(x, y), 0.2), y), 0.2)


class _GBlock(nn.Module):
    def __init__(self, cond: int, cin: int, cout: int):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(cin, cout, 3, 1, 1), nn.Conv2d(cout, cout, 3, 1, 1)
        self.fuse1, self.fuse2 = _DFBlk(cond, cin), _DFBlk(cond, cout)
        self.c_sc = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2)
        h = self.c2(self.fuse2(self.c1(self.fuse1(x, y)), y))
        return (self.c_sc(x) if self.c_sc is not None else x) + h


def _df_channels(nf: int, imsize: int) -> list[int]:
    """get_G/D_in_out_chs: nf * min(2^i, 8) for i < log2(imsize) - 1 (the discriminator's order)."""
    n = imsize.bit_length() - 2
    return [nf * min(2**i, 8) for i in range(n)]


class DFGANGenerator(nn.Module):
    """tobran/DF-GAN code/models/GAN.py NetG (nf 32, nz 100, cond_dim 256, imsize 256)."""

    def __init__(self, nf: int = 32, nz: int = 100, cond: int = 256, imsize: int = 256, nc: int = 3):
        super().__init__()
        ch = _df_channels(nf, imsize)[::-1]
        self.fc = nn.Linear(nz, nf * 8 * 16)
        self.GBlocks = nn.ModuleList(_GBlock(cond + nz, a, b) for a, b in zip(ch, ch[1:], strict=False))
        self.to_rgb = nn.Conv2d(ch[-1], nc, 3, 1, 1)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], -1, 4, 4)
        y = torch.cat([z, c], 1)
        for block in self.GBlocks:
            h = block(h, y)
        return torch.tanh(self.to_rgb(F.leaky_relu(h, 0.2)))


class _DBlock(nn.Module):
    def __init__(self, fin: int, fout: int):
        super().__init__()
        self.conv_r = nn.Sequential(nn.Conv2d(fin, fout, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
                                    nn.Conv2d(fout, fout, 3, 1, 1, bias=False), nn.LeakyReLU(0.2))
        # The official block allocates conv_s also when fin == fout, where forward never calls it; left out.
        self.conv_s = nn.Conv2d(fin, fout, 1) if fin != fout else None
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.conv_r(x)
        x = self.conv_s(x) if self.conv_s is not None else x
        return F.avg_pool2d(x, 2) + self.gamma * res


class DFGANDiscriminator(nn.Module):
    """tobran/DF-GAN NetD (conv_img + DBlocks) and NetC (joint conv on the 4x4 map + sentence), nf 32."""

    def __init__(self, nf: int = 32, cond: int = 256, imsize: int = 256, nc: int = 3):
        super().__init__()
        ch = _df_channels(nf, imsize)
        self.conv_img = nn.Conv2d(nc, nf, 3, 1, 1)
        self.DBlocks = nn.Sequential(*(_DBlock(a, b) for a, b in zip(ch, ch[1:], strict=False)))
        self.joint_conv = nn.Sequential(nn.Conv2d(nf * 8 + cond, nf * 2, 3, 1, 1, bias=False), nn.LeakyReLU(0.2),
                                        nn.Conv2d(nf * 2, 1, 4, 1, 0, bias=False))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.DBlocks(self.conv_img(x))
        return self.joint_conv(torch.cat([h, c[:, :, None, None].expand(-1, -1, 4, 4)], 1)).flatten(1)


def dfgan(nf: int = 32, imsize: int = 256) -> tuple[nn.Module, nn.Module]:
    return DFGANGenerator(nf, imsize=imsize), DFGANDiscriminator(nf, imsize=imsize)


def pair(build) -> nn.ModuleList:
    """Generator and discriminator counted as one reference."""
    return nn.ModuleList(build())


def _conv3(a: int, b: int) -> nn.Conv2d:
    return nn.Conv2d(a, b, 3, 1, 1, bias=False)


def _up(a: int, b: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), _conv3(a, b), nn.BatchNorm2d(b), nn.ReLU())


class StackCA(nn.Module):
    """StackGAN-Pytorch CA_NET: Linear(t_dim, 2 c_dim) + ReLU, halves = mu, logvar."""

    def __init__(self, t: int, c: int):
        super().__init__()
        self.fc = nn.Linear(t, 2 * c)

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.relu(self.fc(t)).chunk(2, 1)


class StackStage1G(nn.Module):
    """STAGE1_G (gf_dim = GF_DIM * 8): CA_NET, fc to 4x4, four upBlocks, 3x3 conv to RGB, tanh."""

    def __init__(self, gf: int = 192, c: int = 128, nz: int = 100, t: int = 1024):
        super().__init__()
        g = gf * 8
        self.ca_net = StackCA(t, c)
        self.fc = nn.Sequential(nn.Linear(nz + c, g * 16, bias=False), nn.BatchNorm1d(g * 16), nn.ReLU())
        self.ups = nn.Sequential(_up(g, g // 2), _up(g // 2, g // 4), _up(g // 4, g // 8), _up(g // 8, g // 16))
        self.img = _conv3(g // 16, 3)

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # eval: the code is mu
        mu, _ = self.ca_net(t)
        return torch.tanh(self.img(self.ups(self.fc(torch.cat([z, mu], 1)).view(z.shape[0], -1, 4, 4))))


class _StackRes(nn.Module):
    def __init__(self, w: int):
        super().__init__()
        self.block = nn.Sequential(_conv3(w, w), nn.BatchNorm2d(w), nn.ReLU(), _conv3(w, w), nn.BatchNorm2d(w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.block(x) + x)


class StackStage2G(nn.Module):
    """STAGE2_G's own modules (its STAGE1_G is counted once, as stage one): CA_NET, the image encoder to
    4 ngf x 16 x 16, hr_joint, R_NUM ResBlocks, four upBlocks, 3x3 conv to RGB."""

    def __init__(self, gf: int = 192, c: int = 128, t: int = 1024, r: int = 2):
        super().__init__()
        self.ca_net = StackCA(t, c)
        self.encoder = nn.Sequential(_conv3(3, gf), nn.ReLU(), nn.Conv2d(gf, gf * 2, 4, 2, 1, bias=False),
                                     nn.BatchNorm2d(gf * 2), nn.ReLU(), nn.Conv2d(gf * 2, gf * 4, 4, 2, 1, bias=False),
                                     nn.BatchNorm2d(gf * 4), nn.ReLU())
        self.hr_joint = nn.Sequential(_conv3(c + gf * 4, gf * 4), nn.BatchNorm2d(gf * 4), nn.ReLU())
        self.residual = nn.Sequential(*(_StackRes(gf * 4) for _ in range(r)))
        self.ups = nn.Sequential(_up(gf * 4, gf * 2), _up(gf * 2, gf), _up(gf, gf // 2), _up(gf // 2, gf // 4))
        self.img = _conv3(gf // 4, 3)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        mu, _ = self.ca_net(t)
        h = self.encoder(x)
        h = self.hr_joint(torch.cat([h, mu[:, :, None, None].expand(-1, -1, *h.shape[2:])], 1))
        return torch.tanh(self.img(self.ups(self.residual(h))))


class StackD(nn.Module):
    """STAGE1_D / STAGE2_D: encode_img (strided convs, then for stage two 3x3 convs back to ndf*8), D_GET_LOGITS
    with the condition (3x3 joint conv, BN, LeakyReLU, 4x4 conv with bias; the sigmoid is the loss's) and, for
    stage two, the unconditional 4x4 conv."""

    def __init__(self, df: int = 96, c: int = 128, stage: int = 1):
        super().__init__()
        widths = [df, df * 2, df * 4, df * 8] + ([df * 16, df * 32] if stage == 2 else [])
        layers, w = [], 3
        for i, b in enumerate(widths):
            layers += [nn.Conv2d(w, b, 4, 2, 1, bias=False), *([nn.BatchNorm2d(b)] if i else []), nn.LeakyReLU(0.2)]
            w = b
        if stage == 2:
            layers += [_conv3(df * 32, df * 16), nn.BatchNorm2d(df * 16), nn.LeakyReLU(0.2),
                       _conv3(df * 16, df * 8), nn.BatchNorm2d(df * 8), nn.LeakyReLU(0.2)]
        self.encode_img = nn.Sequential(*layers)
        self.cond = nn.Sequential(_conv3(df * 8 + c, df * 8), nn.BatchNorm2d(df * 8), nn.LeakyReLU(0.2))
        self.cond_out = nn.Conv2d(df * 8, 1, 4, 4)
        self.uncond = nn.Conv2d(df * 8, 1, 4, 4) if stage == 2 else None

    def forward(self, x: torch.Tensor, c: torch.Tensor):
        h = self.encode_img(x)
        out = self.cond_out(self.cond(torch.cat([h, c[:, :, None, None].expand(-1, -1, 4, 4)], 1))).flatten(1)
        return out if self.uncond is None else (out, self.uncond(h).flatten(1))


def stackgan(gf: int = 192, df: int = 96, c: int = 128, r: int = 2) -> nn.ModuleList:
    """The official COCO configuration (coco_s1.yml / coco_s2.yml): both stages' generators and discriminators."""
    return nn.ModuleList([StackStage1G(gf, c), StackD(df, c, 1), StackStage2G(gf, c, r=r), StackD(df, c, 2)])
