"""References for the generative-art GANs (GA-03 StyleGAN, GA-04 Big Sleep, GA-05 StyleCLIP): BigGAN-deep from
pytorch-pretrained-biggan (installable) and the mapping of its weights onto `biggan_generator`."""

from __future__ import annotations

import torch
import transformers as tf
from pytorch_pretrained_biggan import BigGAN, BigGANConfig
from torch import nn


def big_sleep() -> nn.ModuleList:
    """The Big Sleep's two networks: BigGAN-deep 128 (BigGANConfig()) and CLIP ViT-B/32 (CLIPConfig())."""
    return nn.ModuleList([BigGAN(BigGANConfig()), tf.CLIPModel(tf.CLIPConfig())])


def biggan(nz: int, width: int, multipliers: list[int], attention: int, classes: int) -> BigGAN:
    """BigGAN-deep with the spec's shape rules: per stage a same-size block then an upsampling one that moves to
    the next multiplier; `attention` is the resolution of the self-attention layer."""
    layers = [blk for a, b in zip(multipliers, multipliers[1:], strict=False) for blk in ((False, a, a), (True, a, b))]
    config = BigGANConfig(output_dim=4 * 2 ** (len(multipliers) - 1), z_dim=nz, class_embed_dim=nz,
                          channel_width=width, num_classes=classes, layers=layers,
                          attention_layer_position=2 * (attention.bit_length() - 3))
    return BigGAN(config)


def biggan_state(reference: BigGAN, truncation: float = 1.0) -> dict[str, torch.Tensor]:
    """The reference's weights under the names of `biggan_generator`'s network: the spectrally normalised weights
    the reference computes in eval mode (one forward first), the running statistics it keeps for `truncation`,
    and the first linear's rows from its (h, w, c) order to (c, h, w)."""
    g, config = reference.generator, reference.config
    reference.eval()
    with torch.no_grad():
        reference(torch.zeros(1, config.z_dim), torch.zeros(1, config.num_classes), truncation)
    index = round(truncation / (1.0 / (config.n_stats - 1)))
    state = {"embed.weight": reference.embeddings.weight}
    first = 16 * config.channel_width * config.layers[0][1]
    rows = torch.arange(first).reshape(4, 4, -1).permute(2, 0, 1).reshape(-1)  # (c, h, w) -> its (h, w, c) row
    state["stem.weight"], state["stem.bias"] = g.gen_z.weight[rows], g.gen_z.bias[rows]
    blocks = [layer for layer in g.layers if not hasattr(layer, "gamma")]
    for i, block in enumerate(blocks):
        for j in range(4):
            bn, conv = getattr(block, f"bn_{j}"), getattr(block, f"conv_{j}")
            prefix = f"blocks.{i}."
            state[prefix + f"norms.{j}.gain.weight"] = bn.scale.weight
            state[prefix + f"norms.{j}.bias.weight"] = bn.offset.weight
            state[prefix + f"norms.{j}.norm.running_mean"] = bn.running_means[index]
            state[prefix + f"norms.{j}.norm.running_var"] = bn.running_vars[index]
            state[prefix + f"convs.{j}.weight"], state[prefix + f"convs.{j}.bias"] = conv.weight, conv.bias
    for layer in g.layers:
        if hasattr(layer, "gamma"):
            state["attention.gamma"] = layer.gamma
            for ours, theirs in (("query", "theta"), ("key", "phi"), ("value", "g"), ("out", "o_conv")):
                state[f"attention.{ours}.weight"] = getattr(layer, f"snconv1x1_{theirs}").weight
    state |= {"norm.weight": g.bn.weight, "norm.bias": g.bn.bias, "norm.running_mean": g.bn.running_means[index],
              "norm.running_var": g.bn.running_vars[index], "to_rgb.weight": g.conv_to_rgb.weight,
              "to_rgb.bias": g.conv_to_rgb.bias}
    return {k: v.detach().clone() for k, v in state.items()}


def randomize_biggan(reference: BigGAN, seed: int = 0) -> BigGAN:
    """Random weights and per-truncation statistics, then power iterations in train mode so that every spectral
    norm's estimate is settled (its batch norms use their stored statistics in either mode)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, buffer in reference.named_buffers():
            if name.endswith("running_means"):
                buffer.copy_(0.3 * torch.randn_like(buffer))
            elif name.endswith("running_vars"):
                buffer.copy_(torch.rand_like(buffer) + 0.5)
        for p in reference.parameters():
            p.copy_(0.3 * torch.randn_like(p))
        reference.train()
        for _ in range(20):
            reference(torch.randn(2, reference.config.z_dim), torch.randn(2, reference.config.num_classes), 1.0)
    return reference.eval()


def stylegan_official_counts(resolution: int = 1024, fmap_base: int = 8192, fmap_max: int = 512,
                             latent: int = 512, mapping_layers: int = 8, channels: int = 3) -> dict[str, int]:
    """NVlabs/stylegan training/networks_stylegan.py, variable by variable, with structure='fixed' (one ToRGB,
    one FromRGB): G_mapping (Dense0-7: weight + bias) + G_synthesis (Const; per layer Noise/weight, bias, StyleMod
    dense + bias; 3x3 convs without bias; ToRGB 1x1 + bias) + D_basic (FromRGB 1x1 + bias; per resolution Conv0
    and Conv1_down 3x3 + bias; at 4x4 Conv over the minibatch-stddev channel, Dense0 to nf(0), Dense1 to 1)."""
    top = resolution.bit_length() - 1

    def nf(stage: int) -> int:
        return min(int(fmap_base / 2.0**stage), fmap_max)

    mapping = mapping_layers * (latent * latent + latent)

    def epilogue(c: int) -> int:  # noise weight, bias, style dense (2c outputs) + bias
        return c + c + latent * 2 * c + 2 * c

    synthesis = 16 * nf(1) + epilogue(nf(1)) + 9 * nf(1) ** 2 + epilogue(nf(1))
    for res in range(3, top + 1):
        a, b = nf(res - 2), nf(res - 1)
        synthesis += 9 * a * b + epilogue(b) + 9 * b * b + epilogue(b)
    synthesis += nf(top - 1) * channels + channels
    disc = channels * nf(top - 1) + nf(top - 1)
    for res in range(top, 2, -1):
        disc += 9 * nf(res - 1) ** 2 + nf(res - 1) + 9 * nf(res - 1) * nf(res - 2) + nf(res - 2)
    disc += 9 * (nf(1) + 1) * nf(1) + nf(1) + 16 * nf(1) * nf(0) + nf(0) + nf(0) + 1
    return {"mapping": mapping, "synthesis": synthesis, "discriminator": disc}


def stylegan_official_count() -> int:
    """The FFHQ 1024 networks together (mapping + synthesis + discriminator)."""
    return sum(stylegan_official_counts().values())


def stylegan2_rosinality_counts(size: int = 1024, style_dim: int = 512, n_mlp: int = 8,
                                channel_multiplier: int = 2) -> dict[str, int]:
    """The StyleGAN2 Generator StyleCLIP builds (models/stylegan2/model.py, rosinality's port of config F),
    variable by variable: the style MLP (n_mlp EqualLinear with bias) and the synthesis (ConstantInput; per
    StyledConv the modulated weight, the modulation EqualLinear(style_dim, in) with bias, the NoiseInjection
    scalar and the FusedLeakyReLU bias; per ToRGB a modulated 1x1 weight to 3, its modulation and a bias)."""
    channels = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
                256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}

    def styled(cin: int, cout: int) -> int:
        return 9 * cin * cout + style_dim * cin + cin + 1 + cout

    def to_rgb(cin: int) -> int:
        return 3 * cin + style_dim * cin + cin + 3

    synthesis = 16 * channels[4] + styled(channels[4], channels[4]) + to_rgb(channels[4])
    res = 8
    while res <= size:
        cin, cout = channels[res // 2], channels[res]
        synthesis += styled(cin, cout) + styled(cout, cout) + to_rgb(cout)
        res *= 2
    return {"mapping": n_mlp * (style_dim * style_dim + style_dim), "synthesis": synthesis}


def styleclip_mapper_count(latent_dim: int = 512, mappers: int = 3, layers: int = 4) -> int:
    """StyleCLIP mapper/latent_mappers.py LevelsMapper with its defaults (coarse, medium and fine mappers, none
    disabled): per Mapper, PixelNorm and 4 EqualLinear(512, 512) with bias."""
    return mappers * layers * (latent_dim * latent_dim + latent_dim)


def styleclip() -> int:
    """StyleCLIP's latent mapper + the frozen StyleGAN2 FFHQ 1024 generator + CLIP ViT-B/32."""
    with torch.device("meta"):
        clip = sum(p.numel() for p in tf.CLIPModel(tf.CLIPConfig()).parameters())
    return styleclip_mapper_count() + sum(stylegan2_rosinality_counts().values()) + clip
