"""Reference parameter counts of the specs: which public implementation each spec's size is compared with.

`REFERENCES` maps a spec's `name` (its canonical size) or `name:variant` (a named size) to a zero-argument
callable that builds the reference with the same configuration; it runs under `torch.device("meta")`, so nothing
is allocated. It returns the reference `nn.Module`, or a `Formula` where the reference cannot be installed (a count
derived module by module from the official configuration). Where no implementation exists at all, `PAPER_SIZES`
holds the paper's reported size instead, and the spec's `reference.notes` must cite where the paper prints it
(the `source`, e.g. "Table 2.1").

Adding a reference is one line, e.g.

    "gpt2:medium": lambda: tf.GPT2LMHeadModel(tf.GPT2Config(n_embd=1024, n_layer=24, n_head=16)),
    "glide": PaperSize("3.5B", "Table 1"),    # in PAPER_SIZES; the notes of specs/glide.yaml cite "Table 1"

tests/test_coverage_doc.py checks every entry against the spec's own count (a registered reference must match),
and docs/coverage.md shows both numbers: rerun `python tests/regen_coverage.py` after adding one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import cache

import aoa_references as AOA
import attngan_references as ATG
import deepcorrsurv_references as DCS
import diffusion_references as DR
import flamingo_references as FL
import ga_references as GA
import gan_art_references as GART
import gan_references as GAN
import glide_references as GL
import grounded_references as GR
import guided_references as GDR
import hip_references as HIP
import imagen_references as IMG
import imagen_sr_references as ISR
import m2_references as M2
import multimae_references as MMAE
import multimodal_survival_references as MSR
import multimodel_references as MM
import multipurpose_references as MPR
import ofa_references as OFA
import polsterl_references as PL
import structured_references as SR
import survival_references as SV
import torch
import transformers as tf
import unclip_references as UC
import unit_references as UNIT
import vatt_references as VATT
from test_param_counts import OFFICIAL_VILBERT, _vilbert_official
from test_param_counts import REFERENCES as PARITY_REFERENCES
from torch import nn


@dataclass(frozen=True)
class Formula:
    """A reference count computed without building a module (the implementation is not installable)."""

    label: str
    count: Callable[[], int]


@dataclass(frozen=True)
class PaperSize:
    """A size as the paper prints it ("110M", "3.5B", "12,345"), and where (table or section)."""

    figure: str
    source: str

    def matches(self, count: int) -> bool:
        """Whether `count` rounds to the figure at its printed precision (half up)."""
        value, unit = parse_figure(self.figure)
        places = Decimal(1).scaleb(value.as_tuple().exponent)
        return (Decimal(count) / unit).quantize(places, rounding=ROUND_HALF_UP) == value


_UNITS = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9}


def parse_figure(figure: str) -> tuple[Decimal, int]:
    """("110M") -> (Decimal("110"), 10**6); raises ValueError for anything but digits (commas, one decimal point)
    and an optional K/M/B."""
    m = re.fullmatch(r"(\d[\d,]*(?:\.\d+)?)\s*([KMB]?)", figure.strip())
    if m is None:
        raise ValueError(f"cannot read the size {figure!r}; write it like 110M, 3.5B or 12,345")
    return Decimal(m.group(1).replace(",", "")), _UNITS[m.group(2)]


def _modules(*parts: nn.Module) -> nn.ModuleList:
    """Several torch modules counted as one reference (a model that no package defines as a class)."""
    return nn.ModuleList(parts)


def _stacks(d: int, heads: int, ffn: int, layers: int, vocab: int) -> nn.ModuleList:
    """The Transformer (Vaswani 2017): torch.nn's post-norm encoder and decoder layers and one shared word table
    (tied to the softmax; sinusoidal positions have no parameters)."""
    return _modules(*[nn.TransformerEncoderLayer(d, heads, ffn) for _ in range(layers)],
                    *[nn.TransformerDecoderLayer(d, heads, ffn) for _ in range(layers)], nn.Embedding(vocab, d))


def _captioning(layers: int, vocab: int = 10_201, d: int = 512) -> nn.ModuleList:
    """The Transformer captioning baseline on regions (Cornia et al. 2020): region projection Linear(2048, d) +
    LayerNorm, torch.nn's post-norm encoder and decoder layers, the word table and the bias-free output linear."""
    return _modules(nn.Linear(2048, d), nn.LayerNorm(d),
                    *[nn.TransformerEncoderLayer(d, 8, 4 * d) for _ in range(layers)],
                    *[nn.TransformerDecoderLayer(d, 8, 4 * d) for _ in range(layers)], nn.Embedding(vocab, d),
                    nn.Linear(d, vocab, bias=False))


def _seq2seq(cell: type[nn.Module], vocab: tuple[int, int], dim: int, hidden: int, layers: int) -> nn.ModuleList:
    """Sutskever et al. 2014 / Cho et al. 2014: two embeddings, two recurrent stacks, the output softmax."""
    return _modules(nn.Embedding(vocab[0], dim), cell(dim, hidden, layers), nn.Embedding(vocab[1], dim),
                    cell(dim, hidden, layers), nn.Linear(hidden, vocab[1]))


def _rnnsearch() -> nn.ModuleList:
    """Bahdanau et al. 2015, Appendix A: bidirectional GRU encoder, W_s, the GRU decoder over [E y; c], the
    alignment model (W_a, U_a, v_a), the maxout layer over [s; E y; c] and the softmax."""
    return _modules(nn.Embedding(30000, 620), nn.GRU(620, 1000, bidirectional=True), nn.Linear(1000, 1000),
                    nn.Embedding(30000, 620), nn.GRUCell(620 + 2000, 1000), nn.Linear(1000, 1000),
                    nn.Linear(2000, 1000, bias=False), nn.Linear(1000, 1, bias=False),
                    nn.Linear(1000 + 620 + 2000, 1000), nn.Linear(500, 30000))


def _mlp(d_in: int, hidden: int, d_out: int, batch_norm: bool) -> nn.Sequential:
    """A 2-layer projection/prediction MLP (BYOL's with BatchNorm)."""
    norm = [nn.BatchNorm1d(hidden)] if batch_norm else []
    return nn.Sequential(nn.Linear(d_in, hidden), *norm, nn.ReLU(), nn.Linear(hidden, d_out))


def _byol() -> nn.ModuleList:
    """BYOL: online ResNet-50 + projector + predictor, and the EMA target's copy of encoder and projector."""
    online = [tf.ResNetModel(tf.ResNetConfig()), _mlp(2048, 4096, 256, True)]
    target = [tf.ResNetModel(tf.ResNetConfig()), _mlp(2048, 4096, 256, True)]
    return _modules(*online, _mlp(256, 4096, 256, True), *target)


_VIT = {"large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096},
        "huge": {"hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16, "intermediate_size": 5120,
                 "patch_size": 14}}
_CLIP = {  # ViT-B/16, L/14 and L/14@336px: vision and text tower sizes, joint width (B/32 is test_param_counts')
    "b16": ({"patch_size": 16}, {}, 512),
    "l14": (_L14 := {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                     "intermediate_size": 4096, "patch_size": 14},
            _L14_TEXT := {"hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072}, 768),
    "l14_336": ({**_L14, "image_size": 336}, _L14_TEXT, 768),
}
_FLORENCE_TEXT = {"hidden_size": 1024, "num_attention_heads": 16, "intermediate_size": 4096}
_CLIP_RESNETS = {  # official CLIP checkpoints: stage depths, width, joint width, image size, text width and heads
    "clip_resnet": ((3, 4, 6, 3), 64, 1024, 224, 512, 8),
    "clip_resnet:rn101": ((3, 4, 23, 3), 64, 512, 224, 512, 8),
    "clip_resnet:rn50x4": ((4, 6, 10, 6), 80, 640, 288, 640, 10),
}


def _clip_resnet(layers: tuple[int, ...], w: int, embed: int, image: int, text: int, heads: int) -> nn.ModuleList:
    """openai/CLIP model.py's RN towers rebuilt from torch.nn with its layer sizes (open_clip needs torchvision):
    ModifiedResNet (3-conv stem, bottlenecks with avg-pool shortcuts, AttentionPool2d), the 12-layer text
    Transformer (nn.MultiheadAttention, MLP x4), positions, final LayerNorm, text projection, logit scale."""
    half = w // 2
    parts = [nn.Conv2d(3, half, 3, bias=False), nn.BatchNorm2d(half), nn.Conv2d(half, half, 3, bias=False),
             nn.BatchNorm2d(half), nn.Conv2d(half, w, 3, bias=False), nn.BatchNorm2d(w)]
    inplanes = w
    for stage, count in enumerate(layers):
        planes = w * 2**stage
        for j in range(count):
            parts += [nn.Conv2d(inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes),
                      nn.Conv2d(planes, planes, 3, bias=False), nn.BatchNorm2d(planes),
                      nn.Conv2d(planes, 4 * planes, 1, bias=False), nn.BatchNorm2d(4 * planes)]
            if (stage and not j) or inplanes != 4 * planes:
                parts += [nn.Conv2d(inplanes, 4 * planes, 1, bias=False), nn.BatchNorm2d(4 * planes)]
            inplanes = 4 * planes
    e = 32 * w
    parts += [nn.Embedding((image // 32) ** 2 + 1, e), nn.Linear(e, e), nn.Linear(e, e), nn.Linear(e, e),
              nn.Linear(e, embed)]  # attention pool: positional_embedding, k/q/v_proj, c_proj
    parts += [nn.Embedding(49408, text), nn.Embedding(77, text)]  # token_embedding, positional_embedding
    for _ in range(12):
        parts += [nn.MultiheadAttention(text, heads), nn.LayerNorm(text), nn.Linear(text, 4 * text),
                  nn.Linear(4 * text, text), nn.LayerNorm(text)]
    return _modules(*parts, nn.LayerNorm(text), nn.Linear(text, embed, bias=False), nn.Embedding(1, 1))


_BASIC = {"layer_type": "basic", "hidden_sizes": [64, 128, 256, 512]}
_RESNETS = {"resnet18": {**_BASIC, "depths": [2, 2, 2, 2]}, "resnet34": {**_BASIC, "depths": [3, 4, 6, 3]},
            "resnet101": {"depths": [3, 4, 23, 3]}, "resnet152": {"depths": [3, 8, 36, 3]}}
_GPT2 = {"medium": (1024, 24, 16), "large": (1280, 36, 20), "xl": (1600, 48, 25)}
_EFFICIENTNETS = {"b1": (1.0, 1.1, 240, 0.2), "b2": (1.1, 1.2, 260, 0.3), "b3": (1.2, 1.4, 300, 0.3),
                  "b4": (1.4, 1.8, 380, 0.4), "b5": (1.6, 2.2, 456, 0.4), "b6": (1.8, 2.6, 528, 0.5),
                  "b7": (2.0, 3.1, 600, 0.5)}  # width, depth, resolution, dropout (the paper's scaling)


def _efficientnet(width: float = 1.0, depth: float = 1.0, resolution: int = 224, dropout: float = 0.2):
    """EfficientNetForImageClassification of one compound-scaled size (EfficientNetConfig() is B7); its top
    width `hidden_dim` is 1280 rounded as transformers rounds every width."""
    from transformers.models.efficientnet.modeling_efficientnet import round_filters

    hidden = round_filters(tf.EfficientNetConfig(width_coefficient=width), 1280)
    return tf.EfficientNetForImageClassification(tf.EfficientNetConfig(
        width_coefficient=width, depth_coefficient=depth, image_size=resolution, dropout_rate=dropout,
        hidden_dim=hidden, num_labels=1000))


def _table(rows: int, dim: int, tables: int = 1, bias: bool = False) -> Formula:
    """Word-vector models: `tables` lookup tables of rows x dim (+ a bias per row each); none of their papers
    prints a parameter count, so the count is the configuration's."""
    return Formula(f"{tables} table(s) of {rows:,} x {dim}{' + biases' if bias else ''}",
                   lambda: tables * rows * (dim + int(bias)))


def _moe_layer(d: int = 512, heads: int = 8, ffn: int = 2048, experts: int = 16, vocab: int = 32000) -> nn.ModuleList:
    """specs/moe.yaml: transformers' Switch sparse MLP (router + bias-free experts) and Shazeer's noise matrix
    as the feed-forward of one pre-norm layer (torch.nn attention, three LayerNorms, word and position tables)."""
    from transformers.models.switch_transformers.modeling_switch_transformers import SwitchTransformersSparseMLP

    config = tf.SwitchTransformersConfig(d_model=d, d_ff=ffn, num_experts=experts, expert_capacity=1)
    return _modules(SwitchTransformersSparseMLP(config), nn.Linear(d, experts, bias=False), nn.Embedding(vocab, d),
                    nn.Embedding(512, d), nn.MultiheadAttention(d, heads), *[nn.LayerNorm(d) for _ in range(3)])


def _palm(vocab: int = 20000, d: int = 512, depth: int = 12, heads: int = 8, head: int = 64) -> nn.ModuleList:
    """palm_pytorch.PaLM (not installable: it declares triton), module by module: per layer one bias-free
    LayerNorm, the fused projection to queries, the one key/value head and the SwiGLU pair, the attention and
    feed-forward outputs; the tied word table and the final LayerNorm."""
    ffn = 4 * d

    def layer() -> list[nn.Module]:
        return [nn.LayerNorm(d, bias=False), nn.Linear(d, heads * head + 2 * head + 2 * ffn, bias=False),
                nn.Linear(heads * head, d, bias=False), nn.Linear(ffn, d, bias=False)]

    return _modules(*[m for _ in range(depth) for m in layer()], nn.Embedding(vocab, d), nn.LayerNorm(d, bias=False))


REFERENCES: dict[str, Callable[[], torch.nn.Module] | Formula] = {
    **PARITY_REFERENCES,  # bert, clip, resnet50 (tests/test_param_counts.py)
    **{f"clip:{v}": (lambda c=c: tf.CLIPModel(tf.CLIPConfig(vision_config=c[0], text_config=c[1],
                                                            projection_dim=c[2])))
       for v, c in _CLIP.items()},
    "align": lambda: tf.AlignModel(tf.AlignConfig(  # BERT-Large + EfficientNet-L2, text projected to 1,376
        text_config={"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                     "intermediate_size": 4096},
        vision_config={"width_coefficient": 4.3, "depth_coefficient": 5.3, "image_size": 289, "hidden_dim": 5504},
        projection_dim=1376)),
    "data2vec_text": lambda: _modules(  # student, regression head, the teacher's copy of the student
        *[tf.Data2VecTextModel(tf.Data2VecTextConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1,
                                                     pad_token_id=1, layer_norm_eps=1e-5)) for _ in range(2)],
        nn.Linear(768, 768)),
    "data2vec_audio": lambda: _modules(  # student (no SpecAugment vector), regression head, the teacher's copy
        *[tf.Data2VecAudioModel(tf.Data2VecAudioConfig(mask_time_prob=0.0)) for _ in range(2)], nn.Linear(768, 768)),
    "data2vec_vision": lambda: tf.Data2VecVisionForImageClassification(tf.Data2VecVisionConfig(num_labels=1000)),
    "data2vec_vision:relative": lambda: tf.Data2VecVisionForImageClassification(
        tf.Data2VecVisionConfig(use_relative_position_bias=True, num_labels=1000)),
    "data2vec_vision:shared_relative": lambda: tf.Data2VecVisionForImageClassification(
        tf.Data2VecVisionConfig(use_shared_relative_position_bias=True, num_labels=1000)),
    "data2vec_vision_pretraining": lambda: _modules(  # student, the teacher's copy of it, regression head
        *[tf.Data2VecVisionModel(tf.Data2VecVisionConfig(use_shared_relative_position_bias=True)) for _ in range(2)],
        nn.Linear(768, 768)),
    **{k: (lambda c=c: _clip_resnet(*c)) for k, c in _CLIP_RESNETS.items()},
    "florence:swin_t": lambda: _modules(  # Swin-T image tower + CLIP-style 1024-wide text tower, projections, scale
        tf.SwinModel(tf.SwinConfig()), tf.CLIPTextModel(tf.CLIPTextConfig(**_FLORENCE_TEXT)),
        nn.Linear(768, 1024, bias=False), nn.Linear(1024, 1024, bias=False), nn.Embedding(1, 1)),
    "visualbert": lambda: tf.VisualBertForPreTraining(tf.VisualBertConfig(visual_embedding_dim=2048)),
    "vilbert": Formula("official vilbert-multi-task configuration, counted module by module",
                       lambda: _vilbert_official(OFFICIAL_VILBERT)),
    "bert:large": lambda: tf.BertForPreTraining(tf.BertConfig(hidden_size=1024, num_hidden_layers=24,
                                                              num_attention_heads=16, intermediate_size=4096)),
    **{f"resnet50:{v}": (lambda c=c: tf.ResNetForImageClassification(tf.ResNetConfig(num_labels=1000, **c)))
       for v, c in _RESNETS.items()},
    "efficientnet": _efficientnet,
    **{f"efficientnet:{v}": (lambda c=c: _efficientnet(*c)) for v, c in _EFFICIENTNETS.items()},
    "vit": lambda: tf.ViTForImageClassification(tf.ViTConfig(num_labels=1000)),
    **{f"vit:{v}": (lambda c=c: tf.ViTForImageClassification(tf.ViTConfig(num_labels=1000, **c)))
       for v, c in _VIT.items()},
    "mae": lambda: tf.ViTMAEForPreTraining(tf.ViTMAEConfig(**_VIT["large"])),
    "mae:base": lambda: tf.ViTMAEForPreTraining(tf.ViTMAEConfig()),
    "flava": lambda: tf.FlavaModel(tf.FlavaConfig()),
    "perceiver": lambda: tf.PerceiverModel(tf.PerceiverConfig()),
    "perceiver_lm": lambda: tf.PerceiverForMaskedLM(tf.PerceiverConfig(qk_channels=256, v_channels=1280)),
    "perceiver_lm:default_config": lambda: tf.PerceiverForMaskedLM(tf.PerceiverConfig()),
    "perceiver_image": lambda: tf.PerceiverForImageClassificationLearned(tf.PerceiverConfig(image_size=224,
                                                                                              num_labels=1000)),
    "mae:huge": lambda: tf.ViTMAEForPreTraining(tf.ViTMAEConfig(**_VIT["huge"])),
    "multimae": MMAE.MultiMAE,  # official pretrain_multimae_base, rgb/depth/semseg in, + norm_rgb out
    "vatt": VATT.vatt,  # official ViTx3D + WaT Base towers, T5-small text over word2vec, FAC bridge (VATT-BBS)
    "vatt:medium": lambda: VATT.vatt("medium"),
    "vatt:large": lambda: VATT.vatt("large"),
    "vatt_ma": VATT.vatt_ma,  # official UniversalVATT (UniTMedium: one shared Transformer) + FAC bridge (VATT-MA)
    "vatt_ma:base": lambda: VATT.vatt_ma("base"),
    "vatt_ma:large": lambda: VATT.vatt_ma("large"),
    "simclr": lambda: _modules(tf.ResNetModel(tf.ResNetConfig()), _mlp(2048, 2048, 128, False)),
    "byol": _byol,
    "gpt": lambda: tf.OpenAIGPTLMHeadModel(tf.OpenAIGPTConfig()),
    "gpt2": lambda: tf.GPT2LMHeadModel(tf.GPT2Config()),
    **{f"gpt2:{v}": (lambda d=d, n=n, h=h: tf.GPT2LMHeadModel(tf.GPT2Config(n_embd=d, n_layer=n, n_head=h)))
       for v, (d, n, h) in _GPT2.items()},
    "t5": lambda: tf.T5ForConditionalGeneration(tf.T5Config(d_model=768, d_ff=3072, num_layers=12, num_heads=12)),
    "t5:small": lambda: tf.T5ForConditionalGeneration(tf.T5Config()),
    "t5:large": lambda: tf.T5ForConditionalGeneration(tf.T5Config(d_model=1024, d_ff=4096, num_layers=24,
                                                                  num_heads=16)),
    "transformer": lambda: _stacks(512, 8, 2048, 6, 37000),
    "transformer:big": lambda: _stacks(1024, 16, 4096, 6, 37000),
    "captioning_transformer": lambda: _captioning(3),
    "captioning_transformer:six_layer": lambda: _captioning(6),
    "flamingo": FL.idefics,  # transformers IdeficsForVisionText2Text at the spec's default sizes
    "m2_transformer": M2.m2,  # official MemoryAugmentedEncoder(3, m=40) + MeshedDecoder(V, 54, 3)
    "m2_transformer:one_to_one": lambda: M2.m2(meshed=False),
    "m2_transformer:no_memory": lambda: M2.m2(memory=0),
    "m2_transformer:scst": M2.m2,  # the self-critical stage trains the same model
    "aoanet": AOA.AoANet,  # official AoAModel with train.sh's options (refine_aoa, use_ff 0, decoder AoA), V + 1 = 9488
    "aoanet:scst": AOA.AoANet,  # the self-critical stage trains the same model
    "seq2seq": lambda: _seq2seq(nn.LSTM, (160000, 80000), 1000, 1000, 4),
    "seq2seq:gru": lambda: _seq2seq(nn.GRU, (160000, 80000), 1000, 1000, 4),
    "rnnsearch": _rnnsearch,
    "bow": lambda: nn.Linear(50000, 4),
    "word2vec": _table(3_000_000, 300, tables=2),
    "fasttext": Formula("input table of 2,000,000 words + 2,000,000 n-gram buckets and an output table of "
                        "2,000,000 words, 300-d", lambda: (2_000_000 + 2_000_000 + 2_000_000) * 300),
    "glove": _table(400_000, 300, tables=2, bias=True),
    "moe": _moe_layer,
    "palm": _palm,
    "sirko_buildings": lambda: SR.unet(3, [64, 128, 256, 512, 1024], 1),
    "ddpm": DR.ddpm_cifar10,
    "ddpm:lsun256": DR.ddpm_lsun256,
    "vae": DR.autoencoder_kl_f8,
    "vqvae": DR.vq_f4,
    "vqvae:ema": Formula("diffusers.VQModel (VQ-f4) less its 8192 x 3 codebook, a buffer under EMA updates",
                         DR.vq_f4_ema_count),
    "glide": GL.glide_base,  # rebuild of glide-text2im's Text2ImUNet (base.pt configuration)
    "glide:upsampler": GL.glide_upsampler,
    "glide_inpaint": GL.glide_inpaint,  # InpaintText2ImUNet (base-inpaint.pt): 7 input channels
    "latent_diffusion": DR.latent_diffusion,  # U-Net + KL-f8 autoencoder + CLIP text encoder
    "vqgan_clip": GDR.vqgan_clip,  # diffusers VQModel (ImageNet f16/16384 VQGAN) + CLIPModel ViT-B/32
    "guided_diffusion": GDR.guided_diffusion,  # guided_diffusion 256x256 conditional U-Net + noisy classifier
    "guided_diffusion:unconditional": lambda: GDR.guided_diffusion(class_cond=False),
    "unclip": GDR.unclip,  # diffusers PriorTransformer (Karlo) + CLIPTextModelWithProjection ViT-L/14
    "unclip_decoder": UC.unclip_decoder,  # Karlo's UNet2DConditionModel + UnCLIPTextProjModel
    "unclip_upsampler": UC.unclip_upsampler,  # Karlo's super_res_first + super_res_last UNet2DModels
    "imagen": IMG.imagen,  # T5 v1.1-XXL encoder (T5EncoderModel) + the rebuild of NeMo's UNetModel (base64-2b)
    "imagen:deepfloyd": IMG.deepfloyd,  # T5 v1.1-Large + base UNet2DConditionModel (widths 256..1024)
    "imagen_sr": ISR.sr256,  # NeMo EfficientUNetModel, sr256-600m + noise-conditioning aug, T5-XXL states (rebuild)
    "imagen_sr:sr1024": ISR.sr1024,  # the same at sr1024-600m (cross-attention)
    "dvae": Formula("transformers.FlavaImageCodebook + the official dall_e.Decoder count", DR.dvae_count),
    "dcgan": lambda: GAN.pair(GAN.dcgan_example),  # pytorch/examples DCGAN Generator + Discriminator
    "gan_int_cls": lambda: GAN.pair(GAN.gan_int_cls),  # icml2016 netG + netD (conv biases zeroed, not counted)
    "dfgan": lambda: GAN.pair(GAN.dfgan),  # DF-GAN NetG + NetD + NetC, birds config (nf 32, 256x256)
    "stackgan": GAN.stackgan,  # StackGAN-Pytorch coco_s1/coco_s2: CA + Stage-I G, D; Stage-II G, D
    "big_sleep": GART.big_sleep,  # pytorch-pretrained-biggan BigGAN(BigGANConfig()) + CLIPModel ViT-B/32
    "stylegan": Formula("NVlabs/stylegan networks_stylegan.py G_mapping + G_synthesis + D_basic, FFHQ 1024, "
                        "structure='fixed'", GART.stylegan_official_count),
    "styleclip": Formula("StyleCLIP LevelsMapper + its StyleGAN2 Generator(1024, 512, 8) counted from the official "
                         "code + transformers CLIPModel(CLIPConfig())", GART.styleclip),
    "attngan": ATG.attngan,  # bird_attn2.yml: DAMSM text encoder, G_NET, D_NET64/128/256, DAMSM image encoder
    "dmgan": ATG.dmgan,  # bird_DMGAN.yml: DAMSM text encoder, memory G_NET, spectral D_NET64/128/256, image encoder
    "damsm": lambda: nn.ModuleList([ATG.RNNEncoder(), ATG.CNNEncoder()]),  # DAMSM/bird.yml: RNN_ENCODER, CNN_ENCODER
    "ssddr": SR.ssddr,
    "deeppamm": SR.deeppamm,
    "you_cropyield": SR.you_lstm,
    "jean_poverty": SR.jean,
    "gebru_streetview": lambda: SR.alexnet_dense(2657),
    "law_house": SR.law,
    "cox": Formula("lifelines.CoxPHFitter fitted on load_rossi: one coefficient per covariate",
                   lambda: len(SV.rossi_cox().params_)),
    "deepsurv": lambda: SV.deepsurv_official(5, [48, 48]),  # WHAS configuration, official Lasagne layers
    "deepconvsurv": lambda: SV.deepconvsurv_official(3, 512, 512),  # WSISA's layers on 512x512 patches
    "deepcorrsurv": lambda: DCS.DeepCorrSurv(3, 512, 512, 5),  # authors' Lasagne views + common net, 512x512
    "concatae": lambda: SV.tong_autoencoders([1000, 1000]),  # authors' Q/P/C nets, default sizes
    "concatae:crossae": lambda: SV.tong_autoencoders([1000, 1000], fusion="mean"),
    "multisurv": MSR.multisurv,  # official sub-models, five non-imaging modalities, 30 intervals
    "cheerla": MSR.cheerla,  # official experiments/predict.py Network without the SqueezeNet branch
    "wide_deep": MSR.wdl,  # deepctr-torch WDL: one 10-level sparse feature (4-d), one dense, DNN (256, 128)
    "polsterl": PL.WidePointNet,  # the first author's WidePointNetClassifier (ai-med/SVEHNN), run.py config
    "vokenization": GR.vokenization,  # official CoLwithBert: BertForMaskedLM + voken head over 50,000 images
    "vokenization:small": lambda: GR.vokenization(512, 6, 8, 2048),
    "xdbert": GR.xdbert,  # official XATTNBERTModel's used parts: BERT-base, CLIP-T, 2 cross layers, heads
    "iace": GR.iace,  # official BertForSequenceClassification (2 labels) + LanguageAndVisionConcat (512, 512)
    "style_transfer": GA.vgg19_features,  # torchvision vgg19().features: 16 convs, no fully connected layers
    "deepdream": GA.GoogLeNet,  # torchvision GoogLeNet(aux_logits=False): encoder + 1000-way fc
    "pathnet": MPR.pathnet,  # Section 2.1 binary MNIST: 3 layers x 10 modules of 20 ReLU units, 2-way task layer
    "munet": MPR.munet,  # the root model: ViT-L/16 at 224 with a 1000-class task head
    "munet:res384": lambda: MPR.munet(384),
    "unit": UNIT.unit,  # mmf UniT, 8 datasets, shared decoder: transformers DETR (768-wide decoder) + BERT blocks
    "multimodel": MM.multimodel,  # tensor2tensor MultiModel variables, multimodel_base, 32,768-entry vocabulary
    "multimodel:t2t_tiny": lambda: MM.multimodel("t2t_tiny"),
    "multimodel_imagenet": MM.multimodel_imagenet,  # the same with ImageModality inputs, 1000 class labels
    "hip": HIP.hip,  # official HiP template, VARIANTS['16'], over 224 x 224 RGB pixels
    "hip:hip256": lambda: HIP.hip("256"),
    "ofa": lambda: OFA.OFAModel(OFA.SIZES["base"]),  # a torch rebuild of the official fairseq OFA (no package)
    **{f"ofa:{size}": (lambda size=size: OFA.OFAModel(OFA.SIZES[size])) for size in ("ofa_tiny", "medium", "large",
                                                                                   "huge")},
}
"""`name` or `name:variant` -> the reference, built on the meta device."""

PAPER_SIZES: dict[str, PaperSize] = {
    "dalle": PaperSize("12B", "abstract and Section 2"),  # Ramesh et al. 2021: the 12-billion-parameter transformer
    "parti:parti_3b": PaperSize("3B", "Table 1"),  # Yu et al. 2022 (20B, 750M and 350M do not round: see the notes)
}
"""`name` or `name:variant` -> the paper's reported size, for specs without any implementation to build."""


def key(name: str, variant: str | None = None) -> str:
    """The registry key of a spec's canonical size (variant None) or of one of its named sizes."""
    return name if variant is None else f"{name}:{variant}"


@cache
def reference_count(k: str) -> tuple[int, str]:
    """(parameter count, what was counted) of the registered reference `k`; KeyError when none is registered."""
    entry = REFERENCES[k]
    if isinstance(entry, Formula):
        return entry.count(), entry.label
    with torch.device("meta"):
        model = entry()
    label = f"{type(model).__module__.partition('.')[0]}.{type(model).__name__}"
    return sum(p.numel() for p in model.parameters()), label
