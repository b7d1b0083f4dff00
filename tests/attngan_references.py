"""Reference networks of AttnGAN (T2I-04) and DM-GAN (T2I-05), rebuilt with plain torch.nn from the official code's
layer sizes (taoxugit/AttnGAN code/model.py + GlobalAttention.py; MinfengZhu/DM-GAN code/model.py; neither is
installable and both import torchvision for the DAMSM Inception-v3): the DAMSM text encoder, the generator G_NET
and the three stage discriminators, for tests/references.py's counts and tests/coverage/test_text_to_image_gans.py's
outputs. Modules are declared in the official order, except that each discriminator lists its conditional logits
before the unconditional ones. The official attention mask and caption packing are left out (full-length
captions)."""

from __future__ import annotations

import torch
from torch import nn


class GLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1] // 2
        return x[:, :n] * torch.sigmoid(x[:, n:])


def conv3x3(a: int, b: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(a, b, 3, 1, 1, bias=bias)


def up_block(a: int, b: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), conv3x3(a, b * 2), nn.BatchNorm2d(b * 2), GLU())


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.block = nn.Sequential(conv3x3(c, c * 2), nn.BatchNorm2d(c * 2), GLU(), conv3x3(c, c), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class RNNEncoder(nn.Module):
    """RNN_ENCODER: word table (300) + bidirectional LSTM (nhidden / 2 per direction) -> words [B, nhidden, S],
    sentence [B, nhidden] (the final states of both directions)."""

    def __init__(self, ntoken: int = 5450, ninput: int = 300, nhidden: int = 256):
        super().__init__()
        self.encoder = nn.Embedding(ntoken, ninput)
        self.rnn = nn.LSTM(ninput, nhidden // 2, 1, batch_first=True, bidirectional=True)

    def forward(self, captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, (h, _) = self.rnn(self.encoder(captions))
        return out.transpose(1, 2), h.transpose(0, 1).reshape(captions.shape[0], -1)


class CANet(nn.Module):
    def __init__(self, t: int = 256, c: int = 100):
        super().__init__()
        self.c = c
        self.fc = nn.Linear(t, c * 4)
        self.relu = GLU()

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # eval: the code is mu
        x = self.relu(self.fc(t))
        return x[:, : self.c], x[:, self.c :]


class InitStageG(nn.Module):
    def __init__(self, ngf: int, ncf: int = 100, nz: int = 100):
        super().__init__()
        self.ngf = ngf
        self.fc = nn.Sequential(nn.Linear(nz + ncf, ngf * 32, bias=False), nn.BatchNorm1d(ngf * 32), GLU())
        self.upsample1 = up_block(ngf, ngf // 2)
        self.upsample2 = up_block(ngf // 2, ngf // 4)
        self.upsample3 = up_block(ngf // 4, ngf // 8)
        self.upsample4 = up_block(ngf // 8, ngf // 16)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([c, z], 1)).view(-1, self.ngf, 4, 4)
        return self.upsample4(self.upsample3(self.upsample2(self.upsample1(h))))


class GlobalAttentionGeneral(nn.Module):
    def __init__(self, idf: int, cdf: int):
        super().__init__()
        self.conv_context = nn.Conv2d(cdf, idf, 1, bias=False)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, ih, iw = x.shape
        target_t = x.view(b, -1, ih * iw).transpose(1, 2)  # B,Q,idf
        source_t = self.conv_context(context.unsqueeze(3)).squeeze(3)  # B,idf,S
        attn = torch.softmax(torch.bmm(target_t, source_t), dim=2).transpose(1, 2)  # B,S,Q
        return torch.bmm(source_t, attn).view(b, -1, ih, iw), attn.reshape(b, -1, ih, iw)


class NextStageG(nn.Module):
    """AttnGAN NEXT_STAGE_G: attention, R_NUM residual blocks at 2 ngf, an up-block."""

    def __init__(self, ngf: int, nef: int = 256, r: int = 2):
        super().__init__()
        self.att = GlobalAttentionGeneral(ngf, nef)
        self.residual = nn.Sequential(*(ResBlock(ngf * 2) for _ in range(r)))
        self.upsample = up_block(ngf * 2, ngf)

    def forward(self, h: torch.Tensor, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c, att = self.att(h, words)
        return self.upsample(self.residual(torch.cat([h, c], 1))), att


class MemoryStageG(nn.Module):
    """DM-GAN NEXT_STAGE_G: memory writing gate (A, B), M_r, M_w, key, value, response gate, residual blocks,
    up-block."""

    def __init__(self, ngf: int, nef: int = 256, r: int = 2, size: int = 64):
        super().__init__()
        self.avg = nn.AvgPool2d(kernel_size=size)
        self.A = nn.Linear(nef, 1, bias=False)
        self.B = nn.Linear(ngf, 1, bias=False)
        self.M_r = nn.Sequential(nn.Conv1d(ngf, ngf * 2, 1), nn.ReLU())
        self.M_w = nn.Sequential(nn.Conv1d(nef, ngf * 2, 1), nn.ReLU())
        self.key = nn.Sequential(nn.Conv1d(ngf * 2, ngf, 1), nn.ReLU())
        self.value = nn.Sequential(nn.Conv1d(ngf * 2, ngf, 1), nn.ReLU())
        self.response_gate = nn.Sequential(nn.Conv2d(ngf * 2, 1, 1), nn.Sigmoid())
        self.residual = nn.Sequential(*(ResBlock(ngf * 2) for _ in range(r)))
        self.upsample = up_block(ngf * 2, ngf)

    def forward(self, h: torch.Tensor, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, ih, iw = h.shape
        s = words.shape[2]
        avg = self.avg(h).detach().squeeze(3)  # B,ngf,1
        gate = self.A(words.transpose(1, 2)).transpose(1, 2) + self.B(avg.transpose(1, 2)).repeat(1, 1, s)
        gate = torch.sigmoid(gate)  # B,1,S
        memory = self.M_w(words) * gate + self.M_r(avg.repeat(1, 1, s)) * (1 - gate)  # B,2ngf,S
        key, value = self.key(memory), self.value(memory)  # B,ngf,S
        weight = torch.softmax(torch.bmm(h.view(b, -1, ih * iw).transpose(1, 2), key), dim=2).transpose(1, 2)
        out = torch.bmm(value, weight).view(b, -1, ih, iw)
        r = self.response_gate(torch.cat([h, out], 1))
        new = h * (1 - r) + r * out
        return self.upsample(self.residual(torch.cat([new, new], 1))), weight.reshape(b, -1, ih, iw)


class GetImageG(nn.Module):
    def __init__(self, ngf: int):
        super().__init__()
        self.img = nn.Sequential(conv3x3(ngf, 3), nn.Tanh())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.img(h)


class GNet(nn.Module):
    """G_NET with three branches: CA, the initial stage at 16 ngf, two refinement stages at ngf; eval mode."""

    def __init__(self, ngf: int = 32, nef: int = 256, ncf: int = 100, nz: int = 100, r: int = 2,
                 memory: bool = False, base: int = 64):
        super().__init__()
        self.ca_net = CANet(nef, ncf)
        self.h_net1 = InitStageG(ngf * 16, ncf, nz)
        self.img_net1 = GetImageG(ngf)
        stage = (lambda size: MemoryStageG(ngf, nef, r, size)) if memory else (lambda size: NextStageG(ngf, nef, r))
        self.h_net2 = stage(base)
        self.img_net2 = GetImageG(ngf)
        self.h_net3 = stage(2 * base)
        self.img_net3 = GetImageG(ngf)

    def forward(self, z: torch.Tensor, sent: torch.Tensor, words: torch.Tensor) -> list[torch.Tensor]:
        c, _ = self.ca_net(sent)
        h1 = self.h_net1(z, c)
        h2, _ = self.h_net2(h1, words)
        h3, _ = self.h_net3(h2, words)
        return [self.img_net1(h1), self.img_net2(h2), self.img_net3(h3)]


class DNet(nn.Module):
    """D_NET64 / D_NET128 / D_NET256 (stage 1, 2, 3): encode_image_by_16times, down-blocks and 3x3 blocks back to
    8 ndf, conditional logits (a 3x3 joint block over [h, sentence] and a 4x4 stride-4 conv) and unconditional
    logits. AttnGAN: bias-free convs with BatchNorm; DM-GAN (`spectral`): spectrally normalised convs with biases
    and no BatchNorm."""

    def __init__(self, ndf: int = 64, nef: int = 256, stage: int = 1, spectral: bool = False):
        super().__init__()

        def conv(a: int, b: int, k: int, s: int, p: int) -> list[nn.Module]:
            layer = nn.Conv2d(a, b, k, s, p, bias=spectral)
            return [nn.utils.parametrizations.spectral_norm(layer)] if spectral else [layer]

        def block(a: int, b: int, k: int, s: int, p: int, bn: bool = True) -> list[nn.Module]:
            return [*conv(a, b, k, s, p), *([nn.BatchNorm2d(b)] if bn and not spectral else []), nn.LeakyReLU(0.2)]

        layers = block(3, ndf, 4, 2, 1, bn=False) + block(ndf, ndf * 2, 4, 2, 1) + block(ndf * 2, ndf * 4, 4, 2, 1) \
            + block(ndf * 4, ndf * 8, 4, 2, 1)
        if stage >= 2:
            layers += block(ndf * 8, ndf * 16, 4, 2, 1)
        if stage == 3:
            layers += block(ndf * 16, ndf * 32, 4, 2, 1) + block(ndf * 32, ndf * 16, 3, 1, 1)
        if stage >= 2:
            layers += block(ndf * 16, ndf * 8, 3, 1, 1)
        self.img_code = nn.Sequential(*layers)
        self.joint = nn.Sequential(*block(ndf * 8 + nef, ndf * 8, 3, 1, 1))
        self.cond_logits = nn.Conv2d(ndf * 8, 1, 4, 4)
        self.uncond_logits = nn.Conv2d(ndf * 8, 1, 4, 4)

    def forward(self, x: torch.Tensor, sent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.img_code(x)
        j = self.joint(torch.cat([h, sent[:, :, None, None].expand(-1, -1, 4, 4)], 1))
        return self.cond_logits(j).flatten(1), self.uncond_logits(h).flatten(1)  # B,1 (logits, before the sigmoid)


def attngan(ngf: int = 32, ndf: int = 64, r: int = 2, vocab: int = 5450) -> nn.ModuleList:
    """bird_attn2.yml: text encoder, G_NET, D_NET64, D_NET128, D_NET256."""
    return nn.ModuleList([RNNEncoder(vocab), GNet(ngf, r=r), *(DNet(ndf, stage=s) for s in (1, 2, 3))])


def dmgan(ngf: int = 64, ndf: int = 32, r: int = 2, vocab: int = 5450) -> nn.ModuleList:
    """bird_DMGAN.yml: text encoder, G_NET with memory stages, spectrally normalised D_NET64/128/256."""
    return nn.ModuleList([RNNEncoder(vocab), GNet(ngf, r=r, memory=True),
                          *(DNet(ndf, stage=s, spectral=True) for s in (1, 2, 3))])

