"""The Hugging Face EfficientNet family (config.json -> spec tree; `layout: efficientnet` is the encoder's)."""

from __future__ import annotations

from typing import Any

from mmspec.components.encoders.efficientnet import EfficientNetEncoder
from mmspec.components.hf import Config, hf_family, num_labels

_ROWS = ("kernel_sizes", "strides", "expand_ratios", "in_channels", "out_channels", "num_block_repeats")


@hf_family(
    "efficientnet",
    ("EfficientNetModel", "EfficientNetForImageClassification"),
    {
        "num_channels": 3,
        "image_size": 600,
        "width_coefficient": 2.0,
        "depth_coefficient": 3.1,
        "depth_divisor": 8,
        "kernel_sizes": [3, 3, 5, 3, 5, 5, 3],
        "in_channels": [32, 16, 24, 40, 80, 112, 192],
        "out_channels": [16, 24, 40, 80, 112, 192, 320],
        "depthwise_padding": [],
        "strides": [1, 2, 2, 2, 1, 2, 1],
        "num_block_repeats": [1, 2, 2, 3, 3, 4, 1],
        "expand_ratios": [1, 6, 6, 6, 6, 6, 6],
        "squeeze_expansion_ratio": 0.25,
        "hidden_act": "swish",
        "hidden_dim": 2560,
        "pooling_type": "mean",
        "batch_norm_eps": 0.001,
        "dropout_rate": 0.5,
        "drop_connect_rate": 0.2,
        "num_labels": 2,
    },
    survey=["CV-02"],
    paper="Tan, Le. EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks. ICML 2019.",
)
def _efficientnet(cfg: Config, arch: str) -> dict:
    if cfg.activation("hidden_act") != "silu":
        raise cfg.error("hidden_act", "only swish/silu is supported")
    cfg.require("pooling_type", "mean", "max pooling")
    rows = [cfg.get(key, list) for key in _ROWS]
    if len({len(row) for row in rows}) != 1:
        raise cfg.error("kernel_sizes", f"{', '.join(_ROWS)} must have one entry per stage")
    size = cfg.get("image_size", (int, list))
    height, width = (size, size) if isinstance(size, int) else size
    encoder = {
        "type": "efficientnet",
        "input": "image",
        "width": cfg.float("width_coefficient"),
        "depth": cfg.float("depth_coefficient"),
        "divisor": cfg.int("depth_divisor"),
        "stages": [list(stage) for stage in zip(*rows, strict=True)],
        "se_ratio": cfg.float("squeeze_expansion_ratio"),
        "head": 1280,
        "drop_connect": cfg.float("drop_connect_rate"),
        "dropout": cfg.float("dropout_rate") if arch == "EfficientNetForImageClassification" else 0.0,
        "eps": cfg.float("batch_norm_eps"),
        "square_padding": cfg.get("depthwise_padding", list),
    }
    top = EfficientNetEncoder.model_validate(encoder).channels(1280)
    if cfg.int("hidden_dim") != top:
        raise cfg.error("hidden_dim", f"must equal the top conv's width {top} (1280 scaled by width_coefficient)")
    enc = "backbone"
    tree: dict[str, Any] = {
        "modalities": {"image": {"type": "image", "channels": cfg.int("num_channels"), "height": height,
                                 "width": width}},
        "encoders": {enc: encoder},
    }
    classify = arch == "EfficientNetForImageClassification"
    nodes: dict[str, Any] = {enc: {"prefix": "efficientnet" if classify else "", "layout": "efficientnet"}}
    if classify:
        tree["heads"] = {"classifier": {"type": "classifier", "input": f"{enc}.pooled", "num_classes": num_labels(cfg)}}
        nodes["classifier"] = {"prefix": "classifier", "layout": "linear"}
    else:
        tree["outputs"] = [f"{enc}.features", f"{enc}.pooled"]
    return {**tree, "weights": {"nodes": nodes}}
