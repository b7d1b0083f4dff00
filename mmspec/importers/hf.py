"""`mmspec import hf DIR`: an mmspec spec from a Hugging Face `config.json` (torch-free).

Only families whose computation the registered components reproduce exactly are imported; each is
parity-tested against transformers (tests/weights/test_import_hf.py). A family reads its config with the
defaults of its transformers config class, refuses options that would change the computation into
something mmspec does not do (naming the option), and emits the modalities, encoders, heads, outputs
and the `weights:` name map of the architecture in `architectures[0]`, so that
`mmspec compile SPEC --weights DIR` loads the checkpoint next to the config.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from mmspec.errors import SpecError, UsageError

CONFIG_MAX_BYTES = 1 << 20
NOT_YET = {  # model_type -> what mmspec lacks for it
    "t5": "relative position attention and an encoder-decoder",
    "efficientnet": "MBConv blocks with squeeze-excitation",
    "align": "an EfficientNet image tower",
    "data2vec-audio": "a convolutional waveform encoder",
    "data2vec-vision": "relative position bias and layer scale",
    "vit_mae": "random patch masking and its decoder",
    "visual_bert": "visual embeddings inside the text stream",
    "flava": "its multimodal encoder over two towers",
    "perceiver": "latent cross-attention",
}
_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "quick_gelu": "quick_gelu",
                "relu": "relu", "silu": "silu", "swish": "silu", "tanh": "tanh"}  # fmt: skip


class Config:
    """One config.json mapping read with a family's defaults; a wrong type or an unsupported value is a
    UsageError naming the file and the key."""

    def __init__(self, data: dict, defaults: dict, file: str, where: str = ""):
        self.data, self.defaults, self.file, self.where = data, defaults, file, where

    def get(self, key: str, kind: type | tuple[type, ...]) -> Any:
        value = self.data.get(key, self.defaults.get(key))
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
            raise self.error(key, f"expected {getattr(kind, '__name__', kind)}, got {value!r}")
        return value

    def int(self, key: str) -> int:
        return self.get(key, int)

    def float(self, key: str) -> float:
        return float(self.get(key, (int, float)))

    def activation(self, key: str) -> str:
        name = self.get(key, str)
        if name not in _ACTIVATIONS:
            raise self.error(key, f"activation {name!r} is not supported yet; supported: {', '.join(_ACTIVATIONS)}")
        return _ACTIVATIONS[name]

    def require(self, key: str, expected: Any, why: str) -> None:
        """Refuse a config whose `key` differs from `expected`: mmspec does not compute that variant."""
        value = self.data.get(key, self.defaults.get(key))
        if value != expected:
            raise self.error(key, f"{value!r} is not supported yet (only {expected!r}): {why}")

    def sub(self, key: str, defaults: dict) -> Config:
        value = self.data.get(key) or {}
        if not isinstance(value, dict):
            raise self.error(key, f"expected a mapping, got {value!r}")
        return Config(value, defaults, self.file, f"{self.where}{key}.")

    def error(self, key: str, message: str) -> UsageError:
        return UsageError(f"{self.file}: {self.where}{key}: {message}")


def import_hf(path: str | Path, name: str | None = None) -> tuple[dict, str]:
    """(spec tree, transformers class name) for the checkpoint directory (or config.json) at `path`."""
    file = Path(path) / "config.json" if Path(path).is_dir() else Path(path)
    try:
        if file.stat().st_size > CONFIG_MAX_BYTES:
            raise UsageError(f"{file}: larger than {CONFIG_MAX_BYTES >> 20} MiB; not a model config")
        data = json.loads(file.read_bytes())
    except OSError as e:
        raise UsageError(f"{file}: cannot read the config: {e.strerror or e}") from None
    except ValueError as e:
        raise UsageError(f"{file}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{file}: expected a JSON object")
    model_type = data.get("model_type")
    if model_type not in FAMILIES:
        why = f" ({NOT_YET[model_type]} is missing)" if model_type in NOT_YET else ""
        raise UsageError(
            f"{file}: model_type {model_type!r} is not supported yet{why}; supported: {', '.join(sorted(FAMILIES))}"
        )
    family = FAMILIES[model_type]
    archs = data.get("architectures") or [family.base]
    arch = archs[0] if isinstance(archs, list) and archs else archs
    if arch not in family.architectures:
        raise UsageError(
            f"{file}: architecture {arch!r} is not supported yet for model_type {model_type!r}; "
            f"supported: {', '.join(family.architectures)}"
        )
    if name is not None and not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
        raise UsageError(f"--name {name!r}: use lower-case letters, digits and '_', starting with a letter")
    cfg = Config(data, family.defaults, str(file))
    tree = {
        "mmspec": 1,
        "name": name or _name(file.parent.name, model_type),
        "description": f"Imported from {file} ({arch}) by `mmspec import hf`.",
        "reference": {**family.reference, "implementation": f"transformers.{arch}"},
        **family.build(cfg, arch),
    }
    return tree, arch


def write_spec(tree: dict, out: str | Path) -> None:
    """Write `tree` as YAML to `out`, after checking that it loads as a valid spec (written atomically)."""
    from mmspec.registry import spec_model
    from mmspec.spec.budget import DEFAULT_BUDGET
    from mmspec.spec.loader import load_spec

    text = yaml.safe_dump(tree, sort_keys=False, default_flow_style=None, width=120, allow_unicode=True)
    target = Path(out)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".mmspec-", suffix=".yaml", dir=target.parent)
    except OSError as e:
        raise UsageError(f"cannot write {target}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            load_spec(tmp, spec_model(), budget=DEFAULT_BUDGET)
        except SpecError as e:
            raise AssertionError(f"mmspec import hf wrote an invalid spec (a bug):\n{e.render()}") from None
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _name(dirname: str, fallback: str) -> str:
    name = re.sub(r"[^a-z0-9_]+", "_", dirname.lower()).strip("_")[:64]
    return name if re.fullmatch(r"[a-z][a-z0-9_]*", name) else re.sub(r"[^a-z0-9_]", "_", fallback)


# ---------------------------------------------------------------------------------------------------
# Families: config -> modalities, encoders, heads, outputs and the `weights:` map.


_BERT_STACK_KEYS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act", "layer_norm_eps",
    "hidden_dropout_prob", "attention_probs_dropout_prob",
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


def _num_labels(cfg: Config) -> int:
    labels = cfg.data.get("id2label")
    return len(labels) if isinstance(labels, dict) and labels else cfg.get("num_labels", int)


def _bert_like(prefix: str, lm_layout: str, lm_prefix: str, roberta: bool) -> Callable[[Config, str], dict]:
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
            heads["classifier"] = {"type": "classifier", "input": f"{enc}.pooled", "num_classes": _num_labels(cfg)}
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
    nodes: dict[str, Any] = {enc: {"prefix": "transformer" if lm else "", "layout": "gpt2"}}
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


def _image(cfg: Config, size_key: str = "image_size") -> dict:
    size = cfg.get(size_key, (int, list))
    height, width = (size, size) if isinstance(size, int) else size
    return {"type": "image", "channels": cfg.int("num_channels"), "height": height, "width": width}


def _vit(cfg: Config, arch: str) -> dict:
    cfg.require("qkv_bias", True, "attention projections without bias")
    classify = arch == "ViTForImageClassification"
    enc = "vit"
    encoder = {
        "type": "transformer",
        "input": "image",
        "embed": {"type": "patches", "patch_size": cfg.int("patch_size"), "class_token": True},
        **_stack(cfg, *_BERT_STACK_KEYS),
        "norm": "pre",
        "final_norm": True,
        "pool": {"type": "cls"},
    }
    nodes: dict[str, Any] = {enc: {"prefix": "vit" if classify else "", "layout": "vit"}}
    tree: dict[str, Any] = {"modalities": {"image": _image(cfg)}, "encoders": {enc: encoder}}
    if classify:
        tree["heads"] = {
            "classifier": {"type": "classifier", "input": f"{enc}.pooled", "num_classes": _num_labels(cfg)}
        }
        nodes["classifier"] = {"prefix": "classifier", "layout": "linear"}
    else:
        pooled = cfg.data.get("pooler_output_size") or cfg.int("hidden_size")
        encoder["pool"] = {"type": "cls", "dense": pooled, "activation": cfg.activation("pooler_act")}
        tree["outputs"] = [f"{enc}.sequence", f"{enc}.pooled"]
    return {**tree, "weights": {"nodes": nodes}}


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


def _resnet(cfg: Config, arch: str) -> dict:
    cfg.require("hidden_act", "relu", "other activations")
    cfg.require("downsample_in_first_stage", False, "a stride-2 first stage")
    cfg.require("downsample_in_bottleneck", False, "stride on the first 1x1 conv (ResNet v1)")
    classify = arch == "ResNetForImageClassification"
    layer_type = cfg.get("layer_type", str)
    if layer_type not in ("bottleneck", "basic"):
        raise cfg.error("layer_type", f"{layer_type!r} is not supported yet; supported: bottleneck, basic")
    enc = "backbone"
    tree: dict[str, Any] = {
        "modalities": {"image": {"type": "image", "channels": cfg.int("num_channels"), "height": 224, "width": 224}},
        "encoders": {
            enc: {
                "type": "resnet",
                "input": "image",
                "block": layer_type,
                "depths": cfg.get("depths", list),
                "widths": cfg.get("hidden_sizes", list),
                "stem": cfg.int("embedding_size"),
            }
        },
    }
    nodes: dict[str, Any] = {enc: {"prefix": "resnet" if classify else "", "layout": "resnet"}}
    if classify:
        tree["heads"] = {
            "classifier": {"type": "classifier", "input": f"{enc}.pooled", "num_classes": _num_labels(cfg)}
        }
        nodes["classifier"] = {"prefix": "classifier.1", "layout": "linear"}
    else:
        tree["outputs"] = [f"{enc}.features", f"{enc}.pooled"]
    return {**tree, "weights": {"nodes": nodes}}


class Family:
    """A model_type: its architectures, the defaults of its transformers config class, and its builder."""

    def __init__(self, base: str, architectures: tuple[str, ...], defaults: dict, build: Callable, reference: dict):
        self.base, self.architectures, self.defaults, self.build, self.reference = (
            base,
            architectures,
            defaults,
            build,
            reference,
        )


_BERT = {
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
_ROBERTA = {**_BERT, "pad_token_id": 1}
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


def _ref(survey: list[str], paper: str) -> dict:
    return {"survey": survey, "paper": paper}


_BERT_PAPER = _ref(
    ["NLP-09"],
    "Devlin, Chang, Lee, Toutanova. BERT: Pre-training of Deep Bidirectional "
    "Transformers for Language Understanding. NAACL 2019.",
)
FAMILIES = {
    "bert": Family(
        "BertModel",
        ("BertModel", "BertForPreTraining", "BertForMaskedLM", "BertForSequenceClassification"),
        _BERT,
        _bert_like("bert", "bert_lm_head", "cls.predictions", roberta=False),
        _BERT_PAPER,
    ),
    "roberta": Family(
        "RobertaModel",
        ("RobertaModel", "RobertaForMaskedLM"),
        {**_ROBERTA, "vocab_size": 50265},
        _bert_like("roberta", "roberta_lm_head", "lm_head", roberta=True),
        _ref([], "Liu et al. RoBERTa: A Robustly Optimized BERT Pretraining Approach. 2019."),
    ),
    "xlm-roberta": Family(
        "XLMRobertaModel",
        ("XLMRobertaModel", "XLMRobertaForMaskedLM"),
        _ROBERTA,
        _bert_like("roberta", "roberta_lm_head", "lm_head", roberta=True),
        _ref([], "Conneau et al. Unsupervised Cross-lingual Representation Learning at Scale. ACL 2020."),
    ),
    "data2vec-text": Family(
        "Data2VecTextModel",
        ("Data2VecTextModel", "Data2VecTextForMaskedLM"),
        _ROBERTA,
        _bert_like("data2vec_text", "roberta_lm_head", "lm_head", roberta=True),
        _ref(
            ["BOTH-01"],
            "Baevski et al. data2vec: A General Framework for Self-supervised "
            "Learning in Speech, Vision and Language. ICML 2022.",
        ),
    ),
    "gpt2": Family(
        "GPT2Model",
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
        _gpt2,
        _ref(["NLP-11"], "Radford et al. Language Models are Unsupervised Multitask Learners. 2019."),
    ),
    "vit": Family(
        "ViTModel",
        ("ViTModel", "ViTForImageClassification"),
        {
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
            "qkv_bias": True,
            "pooler_act": "tanh",
            "num_labels": 2,
        },
        _vit,
        _ref(
            ["CV-05"],
            "Dosovitskiy et al. An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale. ICLR 2021.",
        ),
    ),
    "clip": Family(
        "CLIPModel",
        ("CLIPModel",),
        {"projection_dim": 512, "logit_scale_init_value": 2.6592},
        _clip,
        _ref(
            ["TSV-01"],
            "Radford et al. Learning Transferable Visual Models From Natural Language Supervision. ICML 2021.",
        ),
    ),
    "resnet": Family(
        "ResNetModel",
        ("ResNetModel", "ResNetForImageClassification"),
        {
            "num_channels": 3,
            "embedding_size": 64,
            "hidden_sizes": [256, 512, 1024, 2048],
            "depths": [3, 4, 6, 3],
            "layer_type": "bottleneck",
            "hidden_act": "relu",
            "downsample_in_first_stage": False,
            "downsample_in_bottleneck": False,
            "num_labels": 2,
        },
        _resnet,
        _ref(["CV-01"], "He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016."),
    ),
}
