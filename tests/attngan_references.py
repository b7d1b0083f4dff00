"""Reference networks of AttnGAN (T2I-04) and DM-GAN (T2I-05), rebuilt with plain torch.nn from the official code's
layer sizes (taoxugit/AttnGAN code/model.py + GlobalAttention.py + miscc/losses.py; MinfengZhu/DM-GAN
code/model.py; neither is installable and both import torchvision for the DAMSM Inception-v3, which is rebuilt here
from torchvision's models/inception.py layer table): the DAMSM text encoder (packing padded captions by their
lengths) and image encoder (CNN_ENCODER), the generator G_NET (its attention masked at the padding), the three
stage discriminators and the DAMSM word and sentence losses, for tests/references.py's counts and
tests/coverage/test_attngan_dmgan.py's outputs. Modules are declared in the official order, except that each
discriminator lists its conditional logits before the unconditional ones."""

from __future__ import annotations

import torch
import torch.nn.functional as F
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

    def forward(self, captions: torch.Tensor, cap_lens: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.encoder(captions)
        if cap_lens is None:
            out, (h, _) = self.rnn(emb)
        else:  # the official packing: each caption runs to its length, the padding's outputs are 0
            packed = nn.utils.rnn.pack_padded_sequence(emb, cap_lens, batch_first=True, enforce_sorted=False)
            out, (h, _) = self.rnn(packed)
            out = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=captions.shape[1])[0]
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
        self.mask = None  # applyMask: captions == 0, B,S

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, ih, iw = x.shape
        target_t = x.view(b, -1, ih * iw).transpose(1, 2)  # B,Q,idf
        source_t = self.conv_context(context.unsqueeze(3)).squeeze(3)  # B,idf,S
        attn = torch.bmm(target_t, source_t)  # B,Q,S
        if self.mask is not None:
            attn = attn.masked_fill(self.mask[:, None, :], -float("inf"))
        attn = torch.softmax(attn, dim=2).transpose(1, 2)  # B,S,Q
        return torch.bmm(source_t, attn).view(b, -1, ih, iw), attn.reshape(b, -1, ih, iw)


class NextStageG(nn.Module):
    """AttnGAN NEXT_STAGE_G: attention, R_NUM residual blocks at 2 ngf, an up-block."""

    def __init__(self, ngf: int, nef: int = 256, r: int = 2):
        super().__init__()
        self.att = GlobalAttentionGeneral(ngf, nef)
        self.residual = nn.Sequential(*(ResBlock(ngf * 2) for _ in range(r)))
        self.upsample = up_block(ngf * 2, ngf)

    def forward(self, h: torch.Tensor, words: torch.Tensor, mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        self.att.mask = mask
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

    def forward(self, h: torch.Tensor, words: torch.Tensor, mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, ih, iw = h.shape
        s = words.shape[2]
        avg = self.avg(h).detach().squeeze(3)  # B,ngf,1
        gate = self.A(words.transpose(1, 2)).transpose(1, 2) + self.B(avg.transpose(1, 2)).repeat(1, 1, s)
        gate = torch.sigmoid(gate)  # B,1,S
        memory = self.M_w(words) * gate + self.M_r(avg.repeat(1, 1, s)) * (1 - gate)  # B,2ngf,S
        key, value = self.key(memory), self.value(memory)  # B,ngf,S
        weight = torch.bmm(h.view(b, -1, ih * iw).transpose(1, 2), key)  # B,Q,S
        if mask is not None:
            weight = weight.masked_fill(mask[:, None, :], -float("inf"))
        weight = torch.softmax(weight, dim=2).transpose(1, 2)
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

    def forward(self, z: torch.Tensor, sent: torch.Tensor, words: torch.Tensor, mask=None) -> list[torch.Tensor]:
        c, _ = self.ca_net(sent)
        h1 = self.h_net1(z, c)
        h2, _ = self.h_net2(h1, words, mask)
        h3, _ = self.h_net3(h2, words, mask)
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


class Conv(nn.Module):
    """torchvision's BasicConv2d: conv (no bias), BatchNorm eps 1e-3, ReLU."""

    def __init__(self, a: int, b: int, k, s: int = 1, p=0):
        super().__init__()
        self.conv = nn.Conv2d(a, b, k, s, p, bias=False)
        self.bn = nn.BatchNorm2d(b, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class MixedA(nn.Module):
    def __init__(self, cin: int, pool: int):
        super().__init__()
        self.branch1x1 = Conv(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = Conv(cin, 48, 1), Conv(48, 64, 5, p=2)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = Conv(cin, 64, 1), Conv(64, 96, 3, p=1)
        self.branch3x3dbl_3 = Conv(96, 96, 3, p=1)
        self.branch_pool = Conv(cin, pool, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(F.avg_pool2d(x, 3, 1, 1))], 1)


class MixedB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = Conv(cin, 384, 3, 2)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = Conv(cin, 64, 1), Conv(64, 96, 3, p=1)
        self.branch3x3dbl_3 = Conv(96, 96, 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, 2)], 1)


class MixedC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        row, col = {"k": (1, 7), "p": (0, 3)}, {"k": (7, 1), "p": (3, 0)}
        self.branch1x1 = Conv(cin, 192, 1)
        self.branch7x7_1, self.branch7x7_2, self.branch7x7_3 = Conv(cin, c7, 1), Conv(c7, c7, **row), \
            Conv(c7, 192, **col)
        self.branch7x7dbl_1, self.branch7x7dbl_2 = Conv(cin, c7, 1), Conv(c7, c7, **col)
        self.branch7x7dbl_3, self.branch7x7dbl_4 = Conv(c7, c7, **row), Conv(c7, c7, **col)
        self.branch7x7dbl_5 = Conv(c7, 192, **row)
        self.branch_pool = Conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))), d,
                          self.branch_pool(F.avg_pool2d(x, 3, 1, 1))], 1)


class MixedD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = Conv(cin, 192, 1), Conv(192, 320, 3, 2)
        self.branch7x7x3_1, self.branch7x7x3_2 = Conv(cin, 192, 1), Conv(192, 192, (1, 7), p=(0, 3))
        self.branch7x7x3_3, self.branch7x7x3_4 = Conv(192, 192, (7, 1), p=(3, 0)), Conv(192, 192, 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, 3, 2)], 1)


class MixedE(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch1x1 = Conv(cin, 320, 1)
        self.branch3x3_1 = Conv(cin, 384, 1)
        self.branch3x3_2a, self.branch3x3_2b = Conv(384, 384, (1, 3), p=(0, 1)), Conv(384, 384, (3, 1), p=(1, 0))
        self.branch3x3dbl_1, self.branch3x3dbl_2 = Conv(cin, 448, 1), Conv(448, 384, 3, p=1)
        self.branch3x3dbl_3a = Conv(384, 384, (1, 3), p=(0, 1))
        self.branch3x3dbl_3b = Conv(384, 384, (3, 1), p=(1, 0))
        self.branch_pool = Conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a), self.branch3x3dbl_3a(d),
                          self.branch3x3dbl_3b(d), self.branch_pool(F.avg_pool2d(x, 3, 1, 1))], 1)


class CNNEncoder(nn.Module):
    """CNN_ENCODER: torchvision's inception_v3 blocks Conv2d_1a_3x3 ... Mixed_7c (no AuxLogits, no fc), then
    emb_features (1x1 conv 768 -> nef, no bias) on Mixed_6e and emb_cnn_code (Linear 2048 -> nef) on the 8x8 average
    of Mixed_7c; images are resized to 299 (bilinear) first."""

    def __init__(self, nef: int = 256):
        super().__init__()
        self.Conv2d_1a_3x3, self.Conv2d_2a_3x3 = Conv(3, 32, 3, 2), Conv(32, 32, 3)
        self.Conv2d_2b_3x3, self.Conv2d_3b_1x1 = Conv(32, 64, 3, p=1), Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = Conv(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = MixedA(192, 32), MixedA(256, 64), MixedA(288, 64)
        self.Mixed_6a = MixedB(288)
        self.Mixed_6b, self.Mixed_6c = MixedC(768, 128), MixedC(768, 160)
        self.Mixed_6d, self.Mixed_6e = MixedC(768, 160), MixedC(768, 192)
        self.Mixed_7a, self.Mixed_7b, self.Mixed_7c = MixedD(768), MixedE(1280), MixedE(2048)
        self.emb_features = nn.Conv2d(768, nef, 1, bias=False)
        self.emb_cnn_code = nn.Linear(2048, nef)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = F.max_pool2d(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))), 3, 2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, 2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e"):
            x = getattr(self, f"Mixed_{name}")(x)
        features = x  # B,768,17,17
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        x = F.avg_pool2d(x, kernel_size=8).view(x.shape[0], -1)
        return self.emb_features(features), self.emb_cnn_code(x)


def _cosine(x1: torch.Tensor, x2: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return (torch.sum(x1 * x2, dim) / (torch.norm(x1, 2, dim) * torch.norm(x2, 2, dim)).clamp(min=eps)).squeeze()


def _func_attention(query: torch.Tensor, context: torch.Tensor, gamma1: float) -> torch.Tensor:
    """query [B, D, W], context [B, D, R] -> the attended context [B, D, W] (softmax over the words, then gamma1
    times it softmaxed over the regions)."""
    b, w = query.shape[0], query.shape[2]
    attn = torch.softmax(torch.bmm(context.transpose(1, 2), query).reshape(-1, w), dim=1).view(b, -1, w)  # B,R,W
    attn = torch.softmax(attn.transpose(1, 2).reshape(b * w, -1) * gamma1, dim=1).view(b, w, -1)  # B,W,R
    return torch.bmm(context, attn.transpose(1, 2))


def _class_masks(class_ids: list[int] | None, b: int) -> torch.Tensor | None:
    """Row i: the other examples of i's class (the official masks, built one row at a time)."""
    if class_ids is None:
        return None
    rows = []
    for i in range(b):
        row = torch.tensor([class_ids[j] == class_ids[i] for j in range(b)])
        row[i] = False
        rows.append(row.reshape(1, -1))
    return torch.cat(rows, 0)


def words_loss(img_features: torch.Tensor, words_emb: torch.Tensor, cap_lens: list[int], class_ids=None,
               gamma1: float = 4.0, gamma2: float = 5.0, gamma3: float = 10.0) -> torch.Tensor:
    """miscc/losses.py words_loss: img_features [B, D, 17, 17], words_emb [B, D, S] -> loss0 + loss1, one caption
    at a time over its first cap_lens[i] words; pairs of one class (class_ids) masked to -inf."""
    b = words_emb.shape[0]
    context = img_features.reshape(b, img_features.shape[1], -1)  # B,D,R
    sims = []
    for i in range(b):
        n = cap_lens[i]
        word = words_emb[i, :, :n].unsqueeze(0).repeat(b, 1, 1)  # B,D,n
        wei = _func_attention(word, context, gamma1)  # B,D,n
        row = _cosine(word.transpose(1, 2).reshape(b * n, -1), wei.transpose(1, 2).reshape(b * n, -1)).view(b, n)
        sims.append(torch.log(torch.exp(row * gamma2).sum(dim=1, keepdim=True)))
    sims = torch.cat(sims, 1) * gamma3  # B images x B captions
    masks = _class_masks(class_ids, b)
    if masks is not None:
        sims = sims.masked_fill(masks, -float("inf"))
    labels = torch.arange(b)
    return nn.CrossEntropyLoss()(sims, labels) + nn.CrossEntropyLoss()(sims.transpose(0, 1), labels)


def sent_loss(cnn_code: torch.Tensor, rnn_code: torch.Tensor, class_ids=None, gamma3: float = 10.0,
              eps: float = 1e-8) -> torch.Tensor:
    """miscc/losses.py sent_loss: loss0 + loss1, pairs of one class (class_ids) masked to -inf."""
    cnn, rnn = cnn_code.unsqueeze(0), rnn_code.unsqueeze(0)
    scores = torch.bmm(cnn, rnn.transpose(1, 2))
    norm = torch.bmm(torch.norm(cnn, 2, dim=2, keepdim=True), torch.norm(rnn, 2, dim=2, keepdim=True).transpose(1, 2))
    scores = (scores / norm.clamp(min=eps) * gamma3).squeeze()
    masks = _class_masks(class_ids, cnn_code.shape[0])
    if masks is not None:
        scores = scores.masked_fill(masks, -float("inf"))
    labels = torch.arange(cnn_code.shape[0])
    return nn.CrossEntropyLoss()(scores, labels) + nn.CrossEntropyLoss()(scores.transpose(0, 1), labels)


def attngan(ngf: int = 32, ndf: int = 64, r: int = 2, vocab: int = 5450) -> nn.ModuleList:
    """bird_attn2.yml: text encoder, G_NET, D_NET64, D_NET128, D_NET256, DAMSM image encoder."""
    return nn.ModuleList([RNNEncoder(vocab), GNet(ngf, r=r), *(DNet(ndf, stage=s) for s in (1, 2, 3)), CNNEncoder()])


def dmgan(ngf: int = 64, ndf: int = 32, r: int = 2, vocab: int = 5450) -> nn.ModuleList:
    """bird_DMGAN.yml: text encoder, G_NET with memory stages, spectrally normalised D_NET64/128/256, DAMSM image
    encoder."""
    return nn.ModuleList([RNNEncoder(vocab), GNet(ngf, r=r, memory=True),
                          *(DNet(ndf, stage=s, spectral=True) for s in (1, 2, 3)), CNNEncoder()])

