"""Hugging Face families that map onto the transformer encoder: BERT, RoBERTa, XLM-R, data2vec-text, GPT-1,
GPT-2, ViT, data2vec-vision, ViTMAE, CLIP and ALIGN (config.json -> spec tree; the `layout:` names are the encoder's
`weight_layouts`)."""

from __future__ import annotations

from typing import Any

import mmspec.components.encoders.efficientnet.hf  # noqa: F401  (ALIGN's image tower is its family)
from mmspec.components.hf import HF_FAMILIES, Builder, Config, hf_family, num_labels

_BERT_STACK_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "layer_norm_eps",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
)
"""Stack field names shared by the BERT-style families (BERT, RoBERTa, ViT, ...)."""


def _stack(
    cfg: Config, width: str, layers: str, heads: str, ffn: str, act: str, eps: str, drop: str, attn_drop: str
) -> dict:
    """The transformer stack fields, from a family's key names (an `ffn` of null means 4 x width, GPT-2)."""
    return {
        "width": cfg.int(width),
        "layers": cfg.int(layers),
        "heads": cfg.int(heads),
        "ffn": 4 * cfg.int(width) if cfg.get(ffn, (int, type(None))) is None else cfg.int(ffn),
        "activation": cfg.activation(act),
        "eps": cfg.float(eps),
        "dropout": cfg.float(drop),
        "attention_dropout": cfg.float(attn_drop),
    }


def _bert_like(prefix: str, lm_layout: str, lm_prefix: str, roberta: bool) -> Builder:
    """BERT and the RoBERTa family: post-norm encoder, MLM head tied to the word embeddings."""

    def build(cfg: Config, arch: str) -> dict:
        cfg.require("is_decoder", False, "a causal BERT decoder")
        cfg.require("add_cross_attention", False, "cross-attention layers")
        cfg.require("position_embedding_type", "absolute", "relative position embeddings")
        kind = next(
            k for k in ("Model", "ForPreTraining", "ForMaskedLM", "ForSequenceClassification") if arch.endswith(k)
        )
        positions, segments = cfg.int("max_position_embeddings"), cfg.int("type_vocab_size")
        embed: dict[str, Any] = {"type": "tokens", "positions": positions, "segments": segments}
        offset = 0
        if roberta:  # positions count from pad_token_id + 1 (fairseq)
            embed["padding_idx"] = cfg.int("pad_token_id")
            offset = embed["padding_idx"] + 1
        if positions <= offset:
            raise cfg.error("max_position_embeddings", f"{positions} leaves no positions after the offset {offset}")
        text = {
            "type": "tokens",
            "vocab_size": cfg.int("vocab_size"),
            "length": "seq",
            "max_length": positions - offset,
            "mask": True,
            "segments": segments if segments > 1 else 0,
        }
        encoder = {
            "type": "transformer",
            "input": "text",
            "embed": embed,
            **_stack(cfg, *_BERT_STACK_KEYS),
            "norm": "post",
        }
        pooler = kind in ("Model", "ForPreTraining", "ForSequenceClassification")
        if pooler:
            encoder["pool"] = {"type": "cls", "dense": cfg.int("hidden_size"), "activation": "tanh"}
        enc = prefix
        heads: dict[str, Any] = {}
        nodes: dict[str, Any] = {enc: {"prefix": prefix if kind != "Model" else "", "layout": "bert"}}
        ignore: list[str] = []
        if kind in ("ForPreTraining", "ForMaskedLM"):
            tied = cfg.get("tie_word_embeddings", bool)
            heads["mlm"] = {
                "type": "token_classifier",
                "input": f"{enc}.sequence",
                **({"tie_to": enc} if tied else {"num_classes": cfg.int("vocab_size")}),
                "activation": "gelu" if roberta else cfg.activation("hidden_act"),
                "eps": cfg.float("layer_norm_eps"),
            }
            nodes["mlm"] = {"prefix": lm_prefix, "layout": lm_layout}
            if not tied:  # then the decoder has its own bias, and the head's `bias` is an unused leftover
                ignore.append(f"{lm_prefix}.bias")
        if kind == "ForPreTraining":
            heads["nsp"] = {"type": "classifier", "input": f"{enc}.pooled", "num_classes": 2}
            nodes["nsp"] = {"prefix": "cls.seq_relationship", "layout": "linear"}
        if kind == "ForSequenceClassification":
            heads["classifier"] = {"type": "classifier", "input": f"{enc}.pooled", "num_classes": num_labels(cfg)}
            nodes["classifier"] = {"prefix": "classifier", "layout": "linear"}
        outputs = {"outputs": [f"{enc}.sequence", *([f"{enc}.pooled"] if pooler else [])]} if not heads else {}
        return {
            "modalities": {"text": text},
            "encoders": {enc: encoder},
            "heads": heads,
            **outputs,
            "weights": {"nodes": nodes, **({"ignore": ignore} if ignore else {})},
        }

    return build


_BERT_DEFAULTS = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "is_decoder": False,
    "add_cross_attention": False,
    "tie_word_embeddings": True,
    "position_embedding_type": "absolute",
    "num_labels": 2,
}
_ROBERTA_DEFAULTS = {**_BERT_DEFAULTS, "pad_token_id": 1}

hf_family(
    "bert",
    ("BertModel", "BertForPreTraining", "BertForMaskedLM", "BertForSequenceClassification"),
    _BERT_DEFAULTS,
    survey=["NLP-09"],
    paper="Devlin, Chang, Lee, Toutanova. BERT: Pre-training of Deep Bidirectional "
    "Transformers for Language Understanding. NAACL 2019.",
)(_bert_like("bert", "bert_lm_head", "cls.predictions", roberta=False))
hf_family(
    "roberta",
    ("RobertaModel", "RobertaForMaskedLM"),
    {**_ROBERTA_DEFAULTS, "vocab_size": 50265},
    survey=[],
    paper="Liu et al. RoBERTa: A Robustly Optimized BERT Pretraining Approach. 2019.",
)(_bert_like("roberta", "roberta_lm_head", "lm_head", roberta=True))
hf_family(
    "xlm-roberta",
    ("XLMRobertaModel", "XLMRobertaForMaskedLM"),
    _ROBERTA_DEFAULTS,
    survey=[],
    paper="Conneau et al. Unsupervised Cross-lingual Representation Learning at Scale. ACL 2020.",
)(_bert_like("roberta", "roberta_lm_head", "lm_head", roberta=True))
hf_family(
    "data2vec-text",
    ("Data2VecTextModel", "Data2VecTextForMaskedLM"),
    _ROBERTA_DEFAULTS,
    survey=["BOTH-01"],
    paper="Baevski et al. data2vec: A General Framework for Self-supervised "
    "Learning in Speech, Vision and Language. ICML 2022.",
)(_bert_like("data2vec_text", "roberta_lm_head", "lm_head", roberta=True))


@hf_family(
    "gpt2",
    ("GPT2Model", "GPT2LMHeadModel"),
    {
        "vocab_size": 50257,
        "n_positions": 1024,
        "n_embd": 768,
        "n_layer": 12,
        "n_head": 12,
        "n_inner": None,
        "activation_function": "gelu_new",
        "resid_pdrop": 0.1,
        "attn_pdrop": 0.1,
        "layer_norm_epsilon": 1e-5,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        "tie_word_embeddings": True,
    },
    survey=["NLP-11"],
    paper="Radford et al. Language Models are Unsupervised Multitask Learners. 2019.",
)
def _gpt2(cfg: Config, arch: str) -> dict:
    cfg.require("scale_attn_weights", True, "unscaled attention")
    cfg.require("scale_attn_by_inverse_layer_idx", False, "attention scaled by 1/layer")
    cfg.require("reorder_and_upcast_attn", False, "reordered upcast attention")
    cfg.require("add_cross_attention", False, "cross-attention layers")
    lm = arch == "GPT2LMHeadModel"
    enc = "gpt2"
    positions = cfg.int("n_positions")
    encoder = {
        "type": "transformer",
        "input": "text",
        "embed": {"type": "tokens", "positions": positions, "norm": False},
        **_stack(
            cfg,
            "n_embd",
            "n_layer",
            "n_head",
            "n_inner",
            "activation_function",
            "layer_norm_epsilon",
            "resid_pdrop",
            "attn_pdrop",
        ),
        "norm": "pre",
        "causal": True,
        "final_norm": True,
    }
    tree: dict[str, Any] = {
        "modalities": {
            "text": {
                "type": "tokens",
                "vocab_size": cfg.int("vocab_size"),
                "length": "seq",
                "max_length": positions,
                "mask": True,
            }
        },
        "encoders": {enc: encoder},
    }
    return _causal_lm(cfg, tree, enc, lm, "gpt2")


_OPENAI_GPT_ACTIVATIONS = {"gelu": "gelu_tanh", "relu": "relu", "silu": "silu", "swish": "silu"}
"""OpenAIGPTConfig.afn -> ours (its "gelu" is the tanh approximation)."""


@hf_family(
    "openai-gpt",
    ("OpenAIGPTLMHeadModel", "OpenAIGPTModel"),
    {
        "vocab_size": 40478,
        "n_positions": 512,
        "n_embd": 768,
        "n_layer": 12,
        "n_head": 12,
        "afn": "gelu",
        "resid_pdrop": 0.1,
        "embd_pdrop": 0.1,
        "attn_pdrop": 0.1,
        "layer_norm_epsilon": 1e-5,
        "tie_word_embeddings": True,
    },
    survey=["NLP-11"],
    paper="Radford, Narasimhan, Salimans, Sutskever. Improving Language Understanding by Generative "
    "Pre-Training. 2018.",
)
def _openai_gpt(cfg: Config, arch: str) -> dict:
    """GPT-1: post-norm causal stack (GELU, tanh form), learned positions, no embedding or final LayerNorm."""
    afn = cfg.get("afn", str)
    if afn not in _OPENAI_GPT_ACTIVATIONS:
        supported = ", ".join(_OPENAI_GPT_ACTIVATIONS)
        raise cfg.error("afn", f"activation {afn!r} is not supported yet; supported: {supported}")
    lm = arch == "OpenAIGPTLMHeadModel"
    enc = "gpt"
    positions = cfg.int("n_positions")
    encoder = {
        "type": "transformer",
        "input": "text",
        "embed": {"type": "tokens", "positions": positions, "norm": False},
        "width": cfg.int("n_embd"),
        "layers": cfg.int("n_layer"),
        "heads": cfg.int("n_head"),
        "ffn": 4 * cfg.int("n_embd"),
        "activation": _OPENAI_GPT_ACTIVATIONS[afn],
        "eps": cfg.float("layer_norm_epsilon"),
        "dropout": cfg.float("resid_pdrop"),
        "attention_dropout": cfg.float("attn_pdrop"),
        "norm": "post",
        "causal": True,
    }
    text = {"type": "tokens", "vocab_size": cfg.int("vocab_size"), "length": "seq", "max_length": positions,
            "mask": True}
    tree: dict[str, Any] = {"modalities": {"text": text}, "encoders": {enc: encoder}}
    return _causal_lm(cfg, tree, enc, lm, "openai_gpt")


def _image(cfg: Config, size_key: str = "image_size") -> dict:
    size = cfg.get(size_key, (int, list))
    height, width = (size, size) if isinstance(size, int) else size
    return {"type": "image", "channels": cfg.int("num_channels"), "height": height, "width": width}


_VIT_STACK_DEFAULTS = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "layer_norm_eps": 1e-12,
    "image_size": 224,
    "patch_size": 16,
    "num_channels": 3,
}
"""The ViT-B/16 defaults ViTConfig, ViTMAEConfig and Data2VecVisionConfig share."""
_VIT_DEFAULTS = {**_VIT_STACK_DEFAULTS, "qkv_bias": True}
"""ViTConfig's and ViTMAEConfig's shared defaults."""


def _vit_encoder(cfg: Config) -> dict:
    """The pre-norm ViT encoder over 16x16 (`patch_size`) patches with a class token and a final LayerNorm."""
    cfg.require("qkv_bias", True, "attention projections without bias")
    return {
        "type": "transformer",
        "input": "image",
        "embed": {"type": "patches", "patch_size": cfg.int("patch_size"), "class_token": True},
        **_stack(cfg, *_BERT_STACK_KEYS),
        "norm": "pre",
        "final_norm": True,
    }


@hf_family(
    "vit",
    ("ViTModel", "ViTForImageClassification"),
    {**_VIT_DEFAULTS, "pooler_act": "tanh", "num_labels": 2},
    survey=["CV-05"],
    paper="Dosovitskiy et al. An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale. ICLR 2021.",
)
def _vit(cfg: Config, arch: str) -> dict:
    classify = arch == "ViTForImageClassification"
    enc = "vit"
    encoder = {**_vit_encoder(cfg), "pool": {"type": "cls"}}
    nodes: dict[str, Any] = {enc: {"prefix": "vit" if classify else "", "layout": "vit"}}
    tree: dict[str, Any] = {"modalities": {"image": _image(cfg)}, "encoders": {enc: encoder}}
    if classify:
        tree["heads"] = {"classifier": {"type": "classifier", "input": f"{enc}.pooled", "num_classes": num_labels(cfg)}}
        nodes["classifier"] = {"prefix": "classifier", "layout": "linear"}
    else:
        pooled = cfg.data.get("pooler_output_size") or cfg.int("hidden_size")
        encoder["pool"] = {"type": "cls", "dense": pooled, "activation": cfg.activation("pooler_act")}
        tree["outputs"] = [f"{enc}.sequence", f"{enc}.pooled"]
    return {**tree, "weights": {"nodes": nodes}}


@hf_family(
    "data2vec-vision",
    ("Data2VecVisionModel", "Data2VecVisionForImageClassification"),
    {
        **_VIT_STACK_DEFAULTS,
        "use_mask_token": False,
        "use_absolute_position_embeddings": False,
        "use_relative_position_bias": False,
        "use_shared_relative_position_bias": False,
        "layer_scale_init_value": 0.1,
        "use_mean_pooling": True,
        "num_labels": 2,
    },
    survey=["BOTH-01"],
    paper="Baevski et al. data2vec: A General Framework for Self-supervised "
    "Learning in Speech, Vision and Language. ICML 2022.",
)
def _data2vec_vision(cfg: Config, arch: str) -> dict:
    """data2vec vision's BEiT-style ViT: keys without bias, layer scale, relative position biases (per layer or
    shared), optional absolute positions; mean pooling (+ LayerNorm) or the final LayerNorm's class token.
    Data2VecVisionModel checkpoints carry no pooler (add_pooling_layer defaults to false): sequence only."""
    classify = arch == "Data2VecVisionForImageClassification"
    mean = cfg.get("use_mean_pooling", bool)
    scale = cfg.float("layer_scale_init_value")
    encoder: dict[str, Any] = {
        "type": "transformer",
        "input": "image",
        "embed": {"type": "patches", "patch_size": cfg.int("patch_size"), "class_token": True,
                  "mask_token": cfg.get("use_mask_token", bool),
                  "positions": cfg.get("use_absolute_position_embeddings", bool)},
        **_stack(cfg, *_BERT_STACK_KEYS),
        "norm": "pre",
        "key_bias": False,
        "final_norm": not mean,
    }
    if scale > 0:
        encoder["layer_scale"] = scale
    if cfg.get("use_shared_relative_position_bias", bool):
        encoder["relative_position"] = "shared"
    elif cfg.get("use_relative_position_bias", bool):
        encoder["relative_position"] = "layer"
    enc = "data2vec_vision"
    nodes: dict[str, Any] = {enc: {"prefix": enc if classify else "", "layout": "data2vec_vision"}}
    tree: dict[str, Any] = {"modalities": {"image": _image(cfg)}, "encoders": {enc: encoder}}
    if classify:
        encoder["pool"] = {"type": "mean", "skip": 1, "norm": True} if mean else {"type": "cls"}
        tree["heads"] = {"classifier": {"type": "classifier", "input": f"{enc}.pooled", "num_classes": num_labels(cfg)}}
        nodes["classifier"] = {"prefix": "classifier", "layout": "linear"}
    else:
        tree["outputs"] = [f"{enc}.sequence"]
    return {**tree, "weights": {"nodes": nodes}}




@hf_family(
    "vit_mae",
    ("ViTMAEForPreTraining", "ViTMAEModel"),
    {
        **_VIT_DEFAULTS,
        "decoder_hidden_size": 512,
        "decoder_num_hidden_layers": 8,
        "decoder_num_attention_heads": 16,
        "decoder_intermediate_size": 2048,
        "mask_ratio": 0.75,
        "norm_pix_loss": False,
    },
    survey=["BM-01"],
    paper="He et al. Masked Autoencoders Are Scalable Vision Learners. CVPR 2022.",
)
def _vit_mae(cfg: Config, arch: str) -> dict:
    """MAE: a ViT encoder that drops `mask_ratio` of its patches while training (none at 0); for pre-training
    also the training-only decoder (mask tokens, its own stack and positions), the per-patch pixel head and the
    loss. The export keeps every patch: ViTMAEModel's output at mask_ratio 0 with increasing `noise`."""
    image = _image(cfg)
    encoder = _vit_encoder(cfg)
    ratio = cfg.float("mask_ratio")
    if ratio > 0:
        encoder["drop"] = {"ratio": ratio}
    tree: dict[str, Any] = {"modalities": {"image": image}, "encoders": {"encoder": encoder}}
    if arch == "ViTMAEModel":
        nodes = {"encoder": {"prefix": "", "layout": "vit"}}
        return {**tree, "outputs": ["encoder.sequence"], "weights": {"nodes": nodes}}
    if ratio <= 0:
        raise cfg.error("mask_ratio", f"{ratio} drops no patch, so the decoder has nothing to reconstruct")
    patch = cfg.int("patch_size")
    patches = (image["height"] // patch) * (image["width"] // patch)
    keys = ("decoder_hidden_size", "decoder_num_hidden_layers", "decoder_num_attention_heads")
    tree["encoders"]["decoder"] = {
        "type": "transformer",
        "input": "encoder",
        "embed": {"type": "sequence", "positions": patches + 1, "mask_token": True},
        **_stack(cfg, *keys, "decoder_intermediate_size", *_BERT_STACK_KEYS[4:]),
        "norm": "pre",
        "final_norm": True,
        "training_only": True,
    }
    dim = patch * patch * image["channels"]
    tree["heads"] = {"pixels": {"type": "mlp", "input": "decoder.sequence", "dim": dim, "training_only": True}}
    tree["objectives"] = {
        "mae_loss": {
            "type": "reconstruction",
            "input": "pixels",
            "target": "image",
            "dropped": "encoder.dropped",
            "normalize": cfg.get("norm_pix_loss", bool),
        }
    }
    nodes = {
        "encoder": {"prefix": "vit", "layout": "vit"},
        "decoder": {"prefix": "decoder", "layout": "vit_mae_decoder"},
        "pixels": {"prefix": "decoder.decoder_pred", "layout": "linear"},
    }
    return {**tree, "outputs": ["encoder.sequence"], "weights": {"nodes": nodes}}


CLIP_TEXT = {
    "vocab_size": 49408,
    "hidden_size": 512,
    "intermediate_size": 2048,
    "num_hidden_layers": 12,
    "num_attention_heads": 8,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "attention_dropout": 0.0,
    "eos_token_id": 49407,
}
"""CLIPTextConfig's defaults (config.json's `text_config`)."""
CLIP_VISION = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "num_channels": 3,
    "image_size": 224,
    "patch_size": 32,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "attention_dropout": 0.0,
}
"""CLIPVisionConfig's defaults (config.json's `vision_config`)."""


@hf_family(
    "clip",
    ("CLIPModel",),
    {"projection_dim": 512, "logit_scale_init_value": 2.6592},
    survey=["TSV-01"],
    paper="Radford et al. Learning Transferable Visual Models From Natural Language Supervision. ICML 2021.",
)
def _clip(cfg: Config, arch: str) -> dict:
    text, vision = cfg.sub("text_config", CLIP_TEXT), cfg.sub("vision_config", CLIP_VISION)
    eos = text.int("eos_token_id")
    positions = text.int("max_position_embeddings")

    def tower(c: Config, modality: str, embed: dict, pool: dict, **extra) -> dict:
        return {
            "type": "transformer",
            "input": modality,
            "embed": embed,
            **_stack(
                c,
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "intermediate_size",
                "hidden_act",
                "layer_norm_eps",
                "attention_dropout",
                "attention_dropout",
            ),
            "norm": "pre",
            **extra,
            "pool": pool,
        }

    dim = cfg.int("projection_dim")
    return {
        "modalities": {
            "image": _image(vision),
            "text": {
                "type": "tokens",
                "vocab_size": text.int("vocab_size"),
                "length": "text_len",
                "max_length": positions,
            },
        },
        "encoders": {
            "vision": tower(
                vision,
                "image",
                {
                    "type": "patches",
                    "patch_size": vision.int("patch_size"),
                    "class_token": True,
                    "bias": False,
                    "norm": True,
                },
                {"type": "cls", "norm": True},
            ),
            "text_tower": tower(
                text,
                "text",
                {"type": "tokens", "positions": positions, "norm": False},
                {"type": "eos"} if eos == 2 else {"type": "eos", "eos_id": eos},
                causal=True,
                final_norm=True,
            ),
        },
        "heads": {
            "image_proj": {"type": "projection", "input": "vision.pooled", "dim": dim, "bias": False},
            "text_proj": {"type": "projection", "input": "text_tower.pooled", "dim": dim, "bias": False},
            "clip": {
                "type": "contrastive",
                "inputs": {"image": "image_proj", "text": "text_proj"},
                "logit_scale_init": cfg.float("logit_scale_init_value"),
            },
        },
        "outputs": ["clip"],
        "weights": {
            "nodes": {
                "vision": {"prefix": "vision_model", "layout": "clip"},
                "text_tower": {"prefix": "text_model", "layout": "clip"},
                "image_proj": {"prefix": "visual_projection", "layout": "linear"},
                "text_proj": {"prefix": "text_projection", "layout": "linear"},
                "clip": {"prefix": "", "layout": "clip"},
            }
        },
    }


def _causal_lm(cfg: Config, tree: dict, enc: str, lm: bool, layout: str) -> dict:
    """A GPT tree finished: with the LM head (`lm`: a bias-free token classifier, tied to the word table when the
    config ties it, weights under `lm_head`) or the encoder's sequence as the output; the weight name map."""
    nodes: dict[str, Any] = {enc: {"prefix": "transformer" if lm else "", "layout": layout}}
    if lm:
        tied = cfg.get("tie_word_embeddings", bool)
        tree["heads"] = {
            "lm": {
                "type": "token_classifier",
                "input": f"{enc}.sequence",
                "transform": False,
                "bias": False,
                **({"tie_to": enc} if tied else {"num_classes": cfg.int("vocab_size")}),
            }
        }
        nodes["lm"] = {"prefix": "lm_head", "layout": "linear"}
    else:
        tree["outputs"] = [f"{enc}.sequence"]
    return {**tree, "weights": {"nodes": nodes}}


@hf_family(
    "align",
    ("AlignModel",),
    {"projection_dim": 640, "temperature_init_value": 1.0},
    survey=["TSV-02"],
    paper="Jia et al. Scaling Up Visual and Vision-Language Representation Learning With Noisy Text Supervision. "
    "ICML 2021.",
)
def _align(cfg: Config, arch: str) -> dict:
    """ALIGN: an EfficientNet without its final 1x1 conv (mean-pooled last block) and a BERT whose raw [CLS]
    state is projected to the image width; the cosines are divided by a learned temperature."""
    efficientnet, bert = HF_FAMILIES["efficientnet"], HF_FAMILIES["bert"]
    vision = efficientnet.build(cfg.sub("vision_config", efficientnet.defaults), "EfficientNetModel")
    text = bert.build(cfg.sub("text_config", bert.defaults), "BertModel")
    image_encoder = {**vision["encoders"]["backbone"], "head": None}
    return {
        "modalities": {**vision["modalities"], **text["modalities"]},
        "encoders": {"vision": image_encoder, "bert": {**text["encoders"]["bert"], "emit_first": True}},
        "heads": {
            "text_proj": {"type": "projection", "input": "bert.first", "dim": cfg.int("projection_dim"),
                          "bias": True},
            "align": {"type": "contrastive", "inputs": {"image": "vision.pooled", "text": "text_proj"},
                      "temperature": cfg.float("temperature_init_value")},
        },
        "outputs": ["align"],
        "objectives": {"contrastive": {"type": "symmetric_infonce", "input": "align", "max_scale": None,
                                       "label_smoothing": 0.1}},
        "weights": {
            "nodes": {
                "vision": {"prefix": "vision_model", "layout": "efficientnet"},
                "bert": {"prefix": "text_model", "layout": "bert"},
                "text_proj": {"prefix": "text_projection", "layout": "linear"},
                "align": {"prefix": "", "layout": "align"},
            }
        },
    }


_FLAVA_STACK = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
                "layer_norm_eps": 1e-12, "qkv_bias": True}  # fmt: skip
FLAVA_TEXT = {**_FLAVA_STACK, "vocab_size": 30522, "type_vocab_size": 2, "max_position_embeddings": 512}
FLAVA_IMAGE = {**_FLAVA_STACK, "image_size": 224, "patch_size": 16, "num_channels": 3, "mask_token": True}
FLAVA_MULTIMODAL = {**_FLAVA_STACK, "num_hidden_layers": 6, "use_cls_token": True}
"""FlavaTextConfig's, FlavaImageConfig's and FlavaMultimodalConfig's defaults of the keys read here."""


def _flava_tower(cfg: Config, source: str, embed: dict) -> dict:
    """One pre-norm FLAVA encoder (final LayerNorm, tanh pooler on the first token) over `source`."""
    cfg.require("qkv_bias", True, "attention projections without bias")
    return {"type": "transformer", "input": source, "embed": embed, **_stack(cfg, *_BERT_STACK_KEYS), "norm": "pre",
            "final_norm": True, "pool": {"type": "cls", "dense": cfg.int("hidden_size"), "activation": "tanh"}}


@hf_family(
    "flava",
    ("FlavaModel",),
    {"projection_dim": 768, "logit_scale_init_value": 2.6592},
    survey=["ISL-10"],
    paper="Singh et al. FLAVA: A Foundational Language And Vision Alignment Model. CVPR 2022.",
)
def _flava(cfg: Config, arch: str) -> dict:
    """FLAVA: image and text towers; their last-layer states before the final LayerNorm, projected and joined
    (image first), are the multimodal encoder's input after [CLS_M]; the towers' first tokens after the final
    LayerNorm are projected for the contrastive logits. Outputs: the three encoders' sequences (FlavaModel's)."""
    text, image = cfg.sub("text_config", FLAVA_TEXT), cfg.sub("image_config", FLAVA_IMAGE)
    multimodal = cfg.sub("multimodal_config", FLAVA_MULTIMODAL)
    multimodal.require("use_cls_token", True, "the multimodal encoder's [CLS_M]")
    patch = {"type": "patches", "patch_size": image.int("patch_size"), "class_token": True,
             "mask_token": image.get("mask_token", bool)}
    words = {"type": "tokens", "positions": text.int("max_position_embeddings"),
             "segments": text.int("type_vocab_size")}
    mm_width, dim = multimodal.int("hidden_size"), cfg.int("projection_dim")
    modalities = {
        "image": _image(image),
        "text": {"type": "tokens", "vocab_size": text.int("vocab_size"), "length": "seq",
                 "max_length": text.int("max_position_embeddings"), "mask": True},
    }

    def projection(tower: str) -> dict:  # Linear(tower width -> mm width) of the tower's `hidden`, mask along
        embed = {"type": "sequence", "field": "hidden", "project": True}
        return {"type": "transformer", "input": tower, "embed": embed, "width": mm_width, "layers": 0,
                "heads": multimodal.int("num_attention_heads"), "dropout": 0.0}

    encoders = {
        "image_tower": {**_flava_tower(image, "image", patch), "emit_first": True, "emit_hidden": True},
        "text_tower": {**_flava_tower(text, "text", words), "emit_first": True, "emit_hidden": True},
        "image_to_mm": projection("image_tower"),
        "text_to_mm": projection("text_tower"),
        "multimodal": _flava_tower(multimodal, "joint", {"type": "sequence", "class_token": True}),
    }
    heads = {
        "image_proj": {"type": "projection", "input": "image_tower.first", "dim": dim, "bias": True},
        "text_proj": {"type": "projection", "input": "text_tower.first", "dim": dim, "bias": True},
        "flava": {"type": "contrastive", "inputs": {"image": "image_proj", "text": "text_proj"},
                  "logit_scale_init": cfg.float("logit_scale_init_value")},
    }
    nodes = {
        "image_tower": {"prefix": "image_model", "layout": "flava_image"},
        "text_tower": {"prefix": "text_model", "layout": "flava_text"},
        "multimodal": {"prefix": "multimodal_model", "layout": "flava_multimodal"},
        "image_to_mm": {"prefix": "image_to_mm_projection", "layout": "flava_projection"},
        "text_to_mm": {"prefix": "text_to_mm_projection", "layout": "flava_projection"},
        "image_proj": {"prefix": "image_projection", "layout": "linear"},
        "text_proj": {"prefix": "text_projection", "layout": "linear"},
        "flava": {"prefix": "", "layout": "clip"},
    }
    return {
        "modalities": modalities,
        "encoders": encoders,
        "fusion": {"joint": {"type": "concat", "inputs": ["image_to_mm", "text_to_mm"], "axis": "sequence"}},
        "heads": heads,
        "outputs": ["image_tower.sequence", "text_tower.sequence", "multimodal.sequence"],
        "objectives": {"contrastive": {"type": "symmetric_infonce", "input": "flava"}},
        "weights": {"nodes": nodes},
    }
