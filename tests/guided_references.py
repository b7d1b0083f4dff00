"""References of the guided-generation specs (issue 12): GA-06 VQGAN + CLIP (diffusers VQModel at the
taming-transformers ImageNet f16/16384 configuration + transformers CLIPModel), GA-07 classifier-guided diffusion
(guided_diffusion, the guided-diffusion-sdk repack of openai/guided-diffusion: the ADM U-Net and the noisy-image
classifier of its README's ImageNet flags)."""

from __future__ import annotations

import transformers as tf
from diffusers import VQModel
from torch import nn


def vqgan_f16(**overrides) -> VQModel:
    """taming-transformers' vqgan_imagenet_f16_16384 as a diffusers VQModel: 76,073,859 parameters."""
    config = {"block_out_channels": (128, 128, 256, 256, 512), "layers_per_block": 2, "latent_channels": 256,
              "down_block_types": ("DownEncoderBlock2D",) * 4 + ("AttnDownEncoderBlock2D",),
              "up_block_types": ("AttnUpDecoderBlock2D",) + ("UpDecoderBlock2D",) * 4,
              "num_vq_embeddings": 16384, "vq_embed_dim": 256, "sample_size": 256}
    return VQModel(**{**config, **overrides})


def vqgan_clip() -> nn.ModuleList:
    """The VQGAN and CLIP ViT-B/32 (CLIPModel(CLIPConfig()), 151,277,313): 227,351,172 parameters."""
    return nn.ModuleList([vqgan_f16(), tf.CLIPModel(tf.CLIPConfig())])


ADM_256 = {"image_size": 256, "num_channels": 256, "num_res_blocks": 2, "attention_resolutions": "32,16,8",
           "num_head_channels": 64, "resblock_updown": True, "use_scale_shift_norm": True, "learn_sigma": True,
           "class_cond": True, "noise_schedule": "linear"}
"""The official README's MODEL_FLAGS of the ImageNet 256x256 conditional model."""


def adm_unet(**flags) -> nn.Module:
    """guided_diffusion's UNetModel from create_model_and_diffusion with the defaults overridden by `flags`."""
    from guided_diffusion.script_util import create_model_and_diffusion, model_and_diffusion_defaults

    model, _ = create_model_and_diffusion(**{**model_and_diffusion_defaults(), **flags})
    return model


def adm_classifier(**flags) -> nn.Module:
    """guided_diffusion's EncoderUNetModel from create_classifier (its README's 256x256 CLASSIFIER_FLAGS)."""
    from guided_diffusion.script_util import classifier_defaults, create_classifier

    return create_classifier(**{**classifier_defaults(), "image_size": 256, **flags})


def guided_diffusion(class_cond: bool = True) -> nn.ModuleList:
    """The 256x256 U-Net (553,838,086 conditional, 552,814,086 unconditional) and classifier (54,096,360)."""
    return nn.ModuleList([adm_unet(**{**ADM_256, "class_cond": class_cond}), adm_classifier()])


def _split_heads(w, heads: int, parts: int) -> list:
    """A fused projection whose output rows are [head][part][channel] -> `parts` tensors of [part rows]."""
    rows = w.reshape(heads, parts, -1, *w.shape[1:])
    return [rows[:, i].reshape(-1, *w.shape[1:]) for i in range(parts)]


def adm_to_mmspec(model: nn.Module) -> dict:
    """A guided_diffusion UNetModel's or EncoderUNetModel's (attention pooling) state dict under the
    `adm_unet` / `adm_classifier` parameter names (no node prefix)."""
    from guided_diffusion.unet import AttentionBlock, AttentionPool2d, ResBlock

    out = {}
    res = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj", "out_layers.0": "norm2",
           "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
    for name, module in model.named_modules():
        if isinstance(module, AttentionBlock):  # legacy head order: rows [head][q, k, v][channel]
            parts = _split_heads(module.qkv.weight.squeeze(-1), module.num_heads, 3)
            biases = _split_heads(module.qkv.bias, module.num_heads, 3)
            for n, w, b in zip("qkv", parts, biases, strict=True):
                out[f"{name}.attn.{n}.weight"], out[f"{name}.attn.{n}.bias"] = w, b
            out[f"{name}.attn.out.weight"] = module.proj_out.weight.squeeze(-1)
            out[f"{name}.attn.out.bias"] = module.proj_out.bias
            out[f"{name}.norm.weight"], out[f"{name}.norm.bias"] = module.norm.weight, module.norm.bias
        elif isinstance(module, ResBlock):
            for p, t in module.named_parameters():
                sub, leaf = p.rsplit(".", 1)
                out[f"{name}.{res[sub]}.{leaf}"] = t
        elif isinstance(module, AttentionPool2d):  # new order: rows [q, k, v][head][channel]
            for n, w, b in zip("qkv", module.qkv_proj.weight.squeeze(-1).chunk(3), module.qkv_proj.bias.chunk(3),
                               strict=True):
                out[f"pool.{n}.weight"], out[f"pool.{n}.bias"] = w, b
            out["pool.out.weight"], out["pool.out.bias"] = module.c_proj.weight.squeeze(-1), module.c_proj.bias
            out["pool.position"] = module.positional_embedding.t()
    sd = model.state_dict()
    pairs = [("time_embed.0", "time_embedding.linear_1"), ("time_embed.2", "time_embedding.linear_2"),
             ("out.0", "out_norm"), ("input_blocks.0.0", "input_blocks.0.0")]
    pairs += [("out.2", "out_conv")] if "out.2.weight" in sd else []
    for src, dst in pairs:
        out[f"{dst}.weight"], out[f"{dst}.bias"] = sd[f"{src}.weight"], sd[f"{src}.bias"]
    if "label_emb.weight" in sd:
        out["label_emb.weight"] = sd["label_emb.weight"]
    return out


def unclip() -> nn.ModuleList:
    """Karlo's prior (diffusers PriorTransformer() defaults: 1,022,030,080) and CLIP ViT-L/14's text tower with
    its projection (CLIPTextModelWithProjection: 123,650,304)."""
    from diffusers import PriorTransformer

    text = tf.CLIPTextModelWithProjection(tf.CLIPTextConfig(hidden_size=768, num_attention_heads=12,
                                                            intermediate_size=3072, projection_dim=768))
    return nn.ModuleList([PriorTransformer(), text])


def prior_to_mmspec(prior: nn.Module) -> dict:
    """A diffusers PriorTransformer's state dict under the `unclip_prior` parameter names."""
    pairs = {"norm1": "attn_res.norm", "attn1.to_q": "attn.q", "attn1.to_k": "attn.k", "attn1.to_v": "attn.v",
             "attn1.to_out.0": "attn.out", "norm3": "ffn_res.norm", "ff.net.0.proj": "ffn.fc1", "ff.net.2": "ffn.fc2"}
    out = {}
    for key, value in prior.state_dict().items():
        if key.startswith("transformer_blocks."):
            _, i, rest = key.split(".", 2)
            sub, leaf = rest.rsplit(".", 1)
            out[f"blocks.{i}.{pairs[sub]}.{leaf}"] = value
        else:
            out[key] = value
    return out
