"""References of unCLIP's decoder and upsamplers (T2I-13; specs/unclip_decoder.yaml, specs/unclip_upsampler.yaml):
diffusers' UNet2DConditionModel + UnCLIPTextProjModel and UNet2DModel at Karlo's configurations, as diffusers'
scripts/convert_kakao_brain_unclip_to_diffusers.py sets them (DECODER_CONFIG, SUPER_RES_UNET_*_CONFIG), and the
mapping of their state dicts onto the `adm_unet` parameter names."""

from __future__ import annotations

import torch
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


def unet_to_adm(unet: nn.Module, proj: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """A diffusers UNet2DConditionModel's (with SimpleCrossAttn blocks) or UNet2DModel's (ResnetDownsample /
    ResnetUpsample blocks) state dict, and an UnCLIPTextProjModel's, under the `adm_unet` parameter names."""
    out: dict[str, torch.Tensor] = {}

    def put(dst: str, module: nn.Module) -> None:
        if hasattr(module, "add_k_proj"):  # SimpleCrossAttn: the context's keys then values in one projection
            pairs = {"group_norm": "norm", "to_q": "attn.q", "to_k": "attn.k", "to_v": "attn.v",
                     "to_out.0": "attn.out"}
            for src, name in pairs.items():
                sub = module.get_submodule(src)
                out[f"{dst}.{name}.weight"], out[f"{dst}.{name}.bias"] = sub.weight, sub.bias
            out[f"{dst}.encoder_kv.weight"] = torch.cat([module.add_k_proj.weight, module.add_v_proj.weight])
            out[f"{dst}.encoder_kv.bias"] = torch.cat([module.add_k_proj.bias, module.add_v_proj.bias])
        else:
            out.update({f"{dst}.{k}": v for k, v in module.state_dict().items()})

    put("input_blocks.0.0", unet.conv_in)
    i = 1
    for block in unet.down_blocks:
        attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
        for resnet, attention in zip(block.resnets, attentions, strict=True):
            put(f"input_blocks.{i}.0", resnet)
            if attention is not None:
                put(f"input_blocks.{i}.1", attention)
            i += 1
        if block.downsamplers is not None:
            put(f"input_blocks.{i}.0", block.downsamplers[0])
            i += 1
    mid = unet.mid_block
    attention = [a for a in getattr(mid, "attentions", []) if a is not None]
    put("middle_block.0", mid.resnets[0])
    if attention:
        put("middle_block.1", attention[0])
    put(f"middle_block.{1 + len(attention)}", mid.resnets[1])
    i = 0
    for block in unet.up_blocks:
        attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
        for resnet, attention in zip(block.resnets, attentions, strict=True):
            put(f"output_blocks.{i}.0", resnet)
            if attention is not None:
                put(f"output_blocks.{i}.1", attention)
            i += 1
        if block.upsamplers is not None:
            put(f"output_blocks.{i - 1}.{1 + (attentions[-1] is not None)}", block.upsamplers[0])
    put("time_embedding", unet.time_embedding)
    put("out_norm", unet.conv_norm_out)
    put("out_conv", unet.conv_out)
    if proj is not None:
        put("unclip", proj)
    return out
