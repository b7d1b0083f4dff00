"""The Hugging Face Swin family (config.json -> spec tree; `layout: swin` is the encoder's `weight_rules`)."""

from __future__ import annotations

from typing import Any

from mmspec.components.hf import Config, hf_family, num_labels


@hf_family(
    "swin",
    ("SwinModel", "SwinForImageClassification"),
    {
        "image_size": 224,
        "patch_size": 4,
        "num_channels": 3,
        "embed_dim": 96,
        "depths": [2, 2, 6, 2],
        "num_heads": [3, 6, 12, 24],
        "window_size": 7,
        "mlp_ratio": 4.0,
        "qkv_bias": True,
        "hidden_act": "gelu",
        "use_absolute_embeddings": False,
        "layer_norm_eps": 1e-5,
        "num_labels": 2,
    },
    survey=["TSV-03"],
    paper="Liu et al. Swin Transformer: Hierarchical Vision Transformer using Shifted Windows. ICCV 2021.",
)
def _swin(cfg: Config, arch: str) -> dict:
    cfg.require("hidden_act", "gelu", "other activations")
    cfg.require("qkv_bias", True, "query/key/value projections without bias")
    cfg.require("use_absolute_embeddings", False, "absolute position embeddings")
    classify = arch == "SwinForImageClassification"
    size = cfg.int("image_size")
    enc = "swin"
    tree: dict[str, Any] = {
        "modalities": {"image": {"type": "image", "channels": cfg.int("num_channels"), "height": size, "width": size}},
        "encoders": {
            enc: {
                "type": "swin",
                "input": "image",
                "width": cfg.int("embed_dim"),
                "depths": cfg.get("depths", list),
                "heads": cfg.get("num_heads", list),
                "window": cfg.int("window_size"),
                "patch_size": cfg.int("patch_size"),
                "mlp_ratio": cfg.float("mlp_ratio"),
                "eps": cfg.float("layer_norm_eps"),
            }
        },
    }
    nodes: dict[str, Any] = {enc: {"prefix": "swin" if classify else "", "layout": "swin"}}
    if classify:
        tree["heads"] = {"classifier": {"type": "classifier", "input": f"{enc}.pooled", "num_classes": num_labels(cfg)}}
        nodes["classifier"] = {"prefix": "classifier", "layout": "linear"}
    else:
        tree["outputs"] = [f"{enc}.sequence", f"{enc}.pooled"]
    return {**tree, "weights": {"nodes": nodes}}
