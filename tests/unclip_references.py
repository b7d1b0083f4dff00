"""References of unCLIP's decoder and upsamplers (T2I-13; specs/unclip_decoder.yaml, specs/unclip_upsampler.yaml):
diffusers' UNet2DConditionModel + UnCLIPTextProjModel and UNet2DModel at Karlo's configurations, as diffusers'
scripts/convert_kakao_brain_unclip_to_diffusers.py sets them (DECODER_CONFIG, SUPER_RES_UNET_*_CONFIG)."""

from __future__ import annotations

from diffusers import UNet2DConditionModel, UNet2DModel
from diffusers.pipelines.deprecated.unclip.text_proj import UnCLIPTextProjModel
from torch import nn

DECODER = {"sample_size": 64, "layers_per_block": 3,
           "down_block_types": ("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * 3,
           "up_block_types": ("SimpleCrossAttnUpBlock2D",) * 3 + ("ResnetUpsampleBlock2D",),
           "mid_block_type": "UNetMidBlock2DSimpleCrossAttn", "block_out_channels": (320, 640, 960, 1280),
           "in_channels": 3, "out_channels": 6, "cross_attention_dim": 1536, "class_embed_type": "identity",
           "attention_head_dim": 64, "resnet_time_scale_shift": "scale_shift"}
"""Karlo's decoder (the conversion script's DECODER_CONFIG)."""

SUPER_RES = {"sample_size": 256, "layers_per_block": 3, "down_block_types": ("ResnetDownsampleBlock2D",) * 4,
             "up_block_types": ("ResnetUpsampleBlock2D",) * 4, "block_out_channels": (320, 640, 960, 1280),
             "in_channels": 6, "out_channels": 3, "add_attention": False}
"""Karlo's super-resolution U-Net (SUPER_RES_UNET_FIRST_STEPS_CONFIG; the last-step model's is the same)."""


def decoder(**overrides) -> UNet2DConditionModel:
    return UNet2DConditionModel(**{**DECODER, **overrides})


def text_proj(time_embed_dim: int = 1280, cross_attention_dim: int = 1536, **kwargs) -> UnCLIPTextProjModel:
    return UnCLIPTextProjModel(time_embed_dim=time_embed_dim, cross_attention_dim=cross_attention_dim, **kwargs)


def super_res(**overrides) -> UNet2DModel:
    return UNet2DModel(**{**SUPER_RES, **overrides})


def unclip_decoder() -> nn.ModuleList:
    """The decoder U-Net (885,439,686) and its text projection (7,878,400)."""
    return nn.ModuleList([decoder(), text_proj()])


def unclip_upsampler() -> nn.ModuleList:
    """super_res_first and super_res_last (691,579,523 each)."""
    return nn.ModuleList([super_res(), super_res()])
