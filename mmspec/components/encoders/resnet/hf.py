"""The Hugging Face ResNet family (config.json -> spec tree; `layout: resnet` is the encoder's `weight_layouts`)."""

from __future__ import annotations

from typing import Any

from mmspec.components.hf import Config, hf_family, num_labels


@hf_family(
    "resnet",
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
    survey=["CV-01"],
    paper="He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016.",
)
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
        tree["heads"] = {"classifier": {"type": "classifier", "input": f"{enc}.pooled", "num_classes": num_labels(cfg)}}
        nodes["classifier"] = {"prefix": "classifier.1", "layout": "linear"}
    else:
        tree["outputs"] = [f"{enc}.features", f"{enc}.pooled"]
    return {**tree, "weights": {"nodes": nodes}}
