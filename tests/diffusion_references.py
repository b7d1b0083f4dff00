"""diffusers reference models of the diffusion and autoencoder specs, at the configurations the papers' released
checkpoints use (built on the meta device by tests/references.py)."""

from __future__ import annotations

from diffusers import AutoencoderKL, UNet2DConditionModel, UNet2DModel, VQModel


def ddpm_cifar10() -> UNet2DModel:
    """DDPM CIFAR-10 (google/ddpm-cifar10-32): 35,746,307 parameters."""
    return UNet2DModel(
        sample_size=32, block_out_channels=(128, 256, 256, 256), layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), downsample_padding=0,
        flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6, attention_head_dim=None)  # fmt: skip


def ddpm_lsun256() -> UNet2DModel:
    """DDPM LSUN / CelebA-HQ 256x256 (google/ddpm-church-256): six levels, attention at 16x16."""
    return UNet2DModel(
        sample_size=256, block_out_channels=(128, 128, 256, 256, 512, 512), layers_per_block=2,
        down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4, downsample_padding=0,
        flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6, attention_head_dim=None)  # fmt: skip


def autoencoder_kl_f8() -> AutoencoderKL:
    """Stable Diffusion's KL-f8 autoencoder (CompVis/stable-diffusion-v1-4 `vae`): 83,653,863 parameters."""
    return AutoencoderKL(
        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4, sample_size=512)  # fmt: skip


def vq_f4() -> VQModel:
    """Latent diffusion's VQ-f4 autoencoder (K = 8192 codes of width 3): 55,322,782 parameters."""
    return VQModel(
        block_out_channels=(128, 256, 512), down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3, layers_per_block=2, latent_channels=3, num_vq_embeddings=8192,
        sample_size=256)  # fmt: skip


def vq_f4_ema_count() -> int:
    """VQ-f4 with an EMA codebook: VQModel's count less its codebook parameter (a buffer under EMA updates)."""
    import torch

    with torch.device("meta"):
        model = vq_f4()
    return sum(p.numel() for p in model.parameters()) - model.quantize.embedding.weight.numel()


def sd_unet() -> UNet2DConditionModel:
    """Stable Diffusion v1's text-conditioned U-Net (CompVis/stable-diffusion-v1-4 `unet`): 859,520,964 parameters.
    `attention_head_dim=8` is diffusers' historical name for 8 heads per attention."""
    return UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768,
        attention_head_dim=8)  # fmt: skip


def sd_text_encoder():
    """CLIP ViT-L/14's text transformer (transformers CLIPTextModel): 123,060,480 parameters."""
    import transformers as tf

    return tf.CLIPTextModel(tf.CLIPTextConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                              intermediate_size=3072))


def latent_diffusion():
    """The three parts of Stable Diffusion v1 in one module list (U-Net, KL-f8 autoencoder, text encoder)."""
    from torch import nn

    return nn.ModuleList([sd_unet(), autoencoder_kl_f8(), sd_text_encoder()])



DALL_E_DECODER = 43_829_766
"""Parameters of openai/DALL-E's dall_e.Decoder() (official code, not installable: its package requires
torchvision), counted from that code."""


def dvae_count() -> int:
    """DALL-E's dVAE: transformers' FlavaImageCodebook (= dall_e.Encoder(), 53,786,240 parameters) on the meta
    device, plus the official decoder's count."""
    import torch
    import transformers as tf

    with torch.device("meta"):
        encoder = tf.FlavaImageCodebook(tf.FlavaImageCodebookConfig())
    return sum(p.numel() for p in encoder.parameters()) + DALL_E_DECODER
