"""Module behind the `vae_encoder` encoder."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.diffusion import VAEEncoder
from mmspec.blocks.quantize import VectorQuantizer


class VAEEncoderModule(nn.Module):
    """`encoder` and `quant_conv` named as in diffusers' AutoencoderKL; the posterior's moments and a latent."""

    def __init__(self, channels: int, widths: list[int], depth: int, latent: int, groups: int, eps: float,
                 quant_conv: bool):
        super().__init__()
        self.encoder = VAEEncoder(channels, 2 * latent, widths, depth, groups, eps)
        self.quant_conv = nn.Conv2d(2 * latent, 2 * latent, 1) if quant_conv else nn.Identity()

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        moments = self.quant_conv(self.encoder(inputs["input"]["pixels"]))  # B,2L,h,w
        mean, log_var = moments.chunk(2, dim=1)  # B,L,h,w each
        log_var = log_var.clamp(-30.0, 20.0)  # B,L,h,w
        latent = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean) if self.training else mean  # B,L,h,w
        return {"mean": mean, "log_var": log_var, "latent": latent}


class VQEncoderModule(nn.Module):
    """`encoder`, `quant_conv` and `quantize` named as in diffusers' VQModel."""

    def __init__(self, channels: int, widths: list[int], depth: int, latent: int, codebook: int, groups: int,
                 eps: float, ema_decay: float | None, attention: list[bool] | None = None):
        super().__init__()
        self.encoder = VAEEncoder(channels, latent, widths, depth, groups, eps, attention)
        self.quant_conv = nn.Conv2d(latent, latent, 1)
        self.quantize = VectorQuantizer(codebook, latent, ema_decay)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        z = self.quant_conv(self.encoder(inputs["input"]["pixels"]))  # B,D,h,w
        z_q, straight, codes = self.quantize(z)  # B,D,h,w; B,D,h,w; B,h*w
        return {"latent": z, "codebook_vectors": z_q, "quantized": straight, "codes": codes}
