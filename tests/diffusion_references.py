"""diffusers reference models of the diffusion and autoencoder specs, at the configurations the papers' released
checkpoints use (built on the meta device by tests/references.py)."""

from __future__ import annotations

from diffusers import UNet2DModel


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
