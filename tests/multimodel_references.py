"""MultiModel (MP-02) as tensor2tensor builds it (models/research/multimodel.py at 6a7ef7f7, hparams
multimodel_base), rebuilt from the TensorFlow variables it creates, in TensorFlow's layouts and names (kernels
[k, 1, C_in, 1] / [1, 1, C_in, C_out], matrices [in, out]), with its forward written from the TF code in eval
mode. tensor2tensor is TF1 and not installable; this is the reference for the spec's count and outputs."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _p(*shape: int, fill: float | None = None) -> nn.Parameter:
    return nn.Parameter(torch.full(shape, fill) if fill is not None else torch.zeros(shape))


def _norm(d: int) -> nn.ParameterDict:
    return nn.ParameterDict({"layer_norm_scale": _p(d, fill=1.0), "layer_norm_bias": _p(d)})


def _moe(d: int, hidden: int, experts: int) -> nn.ParameterDict:
    """distributed_moe: noisy_top_k_gating's w_gate and w_noise, ffn_expert_fn's w_0 and w_1 per expert."""
    return nn.ParameterDict({"w_gate": _p(d, experts), "w_noise": _p(d, experts), "w_0": _p(experts, d, hidden),
                             "w_1": _p(experts, hidden, d)})


def _conv_block(steps: list[tuple[int, int, int]]) -> nn.ModuleList:
    """subseparable_conv_block, separabilities 0: per step a bias-free separable_conv2d and a layer_norm."""
    return nn.ModuleList(nn.ModuleDict({
        "conv": nn.ParameterDict({"depthwise_kernel": _p(k, 1, cin, 1), "pointwise_kernel": _p(1, 1, cin, cout)}),
        "norm": _norm(cout)}) for cin, cout, k in steps)


def _attention(d: int) -> nn.ParameterDict:
    return nn.ParameterDict({n: _p(d, d) for n in ("q", "k", "v", "output_transform")})


class MultiModelReference(nn.Module):
    """The variables of MultiModel with multimodel_base for one problem's modalities."""

    def __init__(self, vocab: int = 32768, hidden: int = 512, layers: int = 4, filter_size: int = 2048,
                 kernel: int = 3, large_kernel: int = 15, heads: int = 8, experts: int = 30,
                 moe_layers: tuple[int, ...] = (2,), dilation: int = 4, timescales: int = 16, spaces: int = 32,
                 image_channels: int | None = None, classes: int | None = None, moe_hidden: int = 2048):
        """Symbol inputs and targets by default; `image_channels`: an image input (project_to_hidden's bias-free
        3 x 3 conv and layer_norm); `classes`: class-label targets (no decoder: the encoder's mean over positions
        and ClassLabelModality's dense layer). `moe_hidden`: moe_hidden_sizes, the decoder experts' hidden width
        (the encoder's experts use filter_size)."""
        super().__init__()
        d, f = hidden, filter_size
        if image_channels:
            self.project_to_hidden = nn.ParameterDict({"kernel": _p(3, 3, image_channels, d), **_norm(d)})
        else:
            self.input_emb = _p(vocab, d)
        if classes:
            self.class_label = nn.ParameterDict({"kernel": _p(d, classes), "bias": _p(classes)})
        else:
            self.symbols = nn.ParameterDict({"target_emb": _p(vocab, d), "softmax": _p(vocab, d)})
            self.target_space_embedding = _p(spaces, d)
        self.enc = nn.ModuleList(nn.ModuleDict({
            "residual1": _conv_block([(d, f, kernel), (f, f, kernel)]),
            "residual2": _conv_block([(f, d, large_kernel), (d, d, large_kernel)]),
            "moe": _moe(d, f, experts), "layer_norm": _norm(d)}) for _ in range(layers))
        self.dec = nn.ModuleList(nn.ModuleDict({
            "decoder_self_attention": _attention(d), "encdec_attention": _attention(d), "layer_norm_1": _norm(d),
            "ffn": _moe(d, moe_hidden, experts) if i in moe_layers else nn.ParameterDict(
                {"conv1_kernel": _p(1, 1, d, f), "conv1_bias": _p(f), "conv2_kernel": _p(1, 1, f, d),
                 "conv2_bias": _p(d)}),
            "layer_norm_2": _norm(d)}) for i in range(layers)) if not classes else None
        self.hidden, self.heads, self.dilation, self.timescales = d, heads, dilation, timescales

    @staticmethod
    def layer_norm(x: torch.Tensor, v: nn.ParameterDict) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        variance = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) * torch.rsqrt(variance + 1e-6) * v["layer_norm_scale"] + v["layer_norm_bias"]

    @staticmethod
    def timing(length: int, depth: int, timescales: int) -> torch.Tensor:
        """common_layers.get_timing_signal, zero-padded to depth: [length, depth]."""
        increment = math.log(1.0e4) / (timescales - 1)
        inv = torch.exp(torch.arange(timescales, dtype=torch.float32) * -increment)
        scaled = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
        return F.pad(torch.cat([torch.sin(scaled), torch.cos(scaled)], 1), (0, depth - 2 * timescales))

    def separable_conv(self, x: torch.Tensor, v: nn.ParameterDict, dilation: int) -> torch.Tensor:
        """tf.layers.separable_conv2d, padding SAME, over [B, S, C] (the width axis has size 1)."""
        k = v["depthwise_kernel"].shape[0]
        depthwise = v["depthwise_kernel"][:, 0, :, 0].t()[:, None, :]  # C,1,k
        total = (k - 1) * dilation
        h = F.conv1d(F.pad(x.transpose(1, 2), (total // 2, total - total // 2)), depthwise, dilation=dilation,
                     groups=x.shape[-1])
        return h.transpose(1, 2) @ v["pointwise_kernel"][0, 0]

    def conv_block(self, x: torch.Tensor, block: nn.ModuleList, mask: torch.Tensor, dilations) -> torch.Tensor:
        for step, dilation in zip(block, dilations, strict=True):
            x = self.layer_norm(self.separable_conv(F.relu(x) * mask, step["conv"], dilation), step["norm"])
        return x

    def moe(self, x: torch.Tensor, v: nn.ParameterDict, k: int = 2) -> torch.Tensor:
        """Eval-mode noisy top-k gating (no noise) and the experts, token by token."""
        flat = x.reshape(-1, x.shape[-1])
        logits = flat @ v["w_gate"]
        top, index = logits.topk(k, -1)
        gates = torch.softmax(top, -1)
        scale = (v["w_0"].shape[2] / v["w_0"].shape[1]) ** -0.5
        out = torch.zeros_like(flat)
        for n in range(flat.shape[0]):
            for g, e in zip(gates[n], index[n], strict=True):
                out[n] += g * (F.relu(flat[n] @ v["w_0"][e]) @ v["w_1"][e]) * scale
        return out.view_as(x)

    def attention(self, q_in: torch.Tensor, kv_in: torch.Tensor, v: nn.ParameterDict, bias: torch.Tensor):
        b, t, d = q_in.shape
        h = self.heads

        def split(y):
            return y.view(b, -1, h, d // h).transpose(1, 2)

        q = split(q_in @ v["q"]) * (d // h) ** -0.5
        logits = q @ split(kv_in @ v["k"]).transpose(-1, -2) + bias
        y = (torch.softmax(logits, -1) @ split(kv_in @ v["v"])).transpose(1, 2).reshape(b, t, d)
        return y @ v["output_transform"]

    def forward(self, inputs: torch.Tensor, decoder_ids: torch.Tensor | None = None) -> torch.Tensor:
        """inputs [B, S] (0 = padding) or pixels [B, C, H, W]; decoder_ids [B, T]: the target-space id, then the
        shifted targets. Returns the logits [B, T, vocab], or [B, classes] for class-label targets."""
        d = self.hidden
        if inputs.dim() == 4:
            v = self.project_to_hidden
            kernel = v["kernel"].permute(3, 2, 0, 1)  # D,C,3,3
            x = F.conv2d(inputs, kernel, padding=1).flatten(2).transpose(1, 2)
            x = self.layer_norm(x, v)
            keep = (x.abs().sum(-1, keepdim=True) != 0).float()  # embedding_to_padding
        else:
            keep = (inputs != 0).float()[..., None]  # embedding_to_padding
            x = self.input_emb[inputs] * d ** 0.5 * keep
        x = x + self.timing(x.shape[1], d, self.timescales)
        for layer in self.enc:
            conv = self.conv_block(x, layer["residual1"], keep, (1, 1))
            conv = self.conv_block(conv, layer["residual2"], keep, (1, self.dilation))
            x = self.layer_norm(x + self.moe(x, layer["moe"]) + conv, layer["layer_norm"])
        if self.dec is None:
            return x.mean(1) @ self.class_label["kernel"] + self.class_label["bias"]
        encoder_bias = (1.0 - keep[..., 0])[:, None, None, :] * -1e9
        targets = decoder_ids[:, 1:]
        y = torch.cat([self.target_space_embedding[decoder_ids[:, :1]],
                       self.symbols["target_emb"][targets] * d ** 0.5 * (targets != 0).float()[..., None]], 1)
        t = y.shape[1]
        y = y + self.timing(t, d, d // 2)
        causal = torch.triu(torch.full((t, t), -1e9), 1)
        for layer in self.dec:
            s = self.attention(y, y, layer["decoder_self_attention"], causal)
            z = self.attention(s, x, layer["encdec_attention"], encoder_bias)
            y = self.layer_norm(y + s + z, layer["layer_norm_1"])
            ffn = layer["ffn"]
            if "w_gate" in ffn:
                f = self.moe(y, ffn)
            else:
                f = F.relu(y @ ffn["conv1_kernel"][0, 0] + ffn["conv1_bias"]) @ ffn["conv2_kernel"][0, 0]
                f = f + ffn["conv2_bias"]
            y = self.layer_norm(y + f, layer["layer_norm_2"])
        return y @ self.symbols["softmax"].t()


def multimodel_imagenet() -> MultiModelReference:
    """multimodel_base on ImageNet (image_imagenet224): RGB input, 1000 classes."""
    return MultiModelReference(image_channels=3, classes=1000)


def multimodel(variant: str | None = None) -> MultiModelReference:
    """multimodel_base (None) or multimodel_tiny ("t2t_tiny": 128 wide, filter 512, 2 layers, MoE in decoder
    layer 0; moe_hidden_sizes stays "2048", and its `moe_n1 = 10` sets an hparam the model no longer reads, so 30
    experts remain)."""
    if variant == "t2t_tiny":
        return MultiModelReference(hidden=128, filter_size=512, layers=2, moe_layers=(0,))
    return MultiModelReference()
