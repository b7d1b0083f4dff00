"""EfficientNet B0-B7 (CV-02): parameter counts equal transformers' EfficientNetForImageClassification built on the
meta device, `mmspec import hf` writes each size as specs/efficientnet.yaml declares it, `--weights` on a random tiny
checkpoint reproduces transformers' logits, `fit` lowers the loss of the tiny variant, the shape rules name the
field at fault, and drop-connect drops whole residual branches per sample, in training only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers as tf
from hf_reference import PARITY_ATOL, randomize

from mmspec.api import build, load_spec, param_counts
from mmspec.blocks.conv import MBConv
from mmspec.errors import SpecError
from mmspec.graph.inputs import make_inputs, trace_sizes
from mmspec.importers.hf import import_hf, write_spec
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPEC = Path(__file__).resolve().parents[2] / "specs" / "efficientnet.yaml"
SIZES = {  # variant -> (width, depth, resolution, dropout) of the paper's compound scaling (None: B0)
    None: (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}


def _config(variant: str | None) -> tf.EfficientNetConfig:
    """transformers' config of that size; its top width (hidden_dim) is 1280 rounded like every other width."""
    width, depth, resolution, dropout = SIZES[variant]
    probe = tf.EfficientNetConfig(width_coefficient=width)
    hidden = tf.models.efficientnet.modeling_efficientnet.round_filters(probe, 1280)
    return tf.EfficientNetConfig(width_coefficient=width, depth_coefficient=depth, image_size=resolution,
                                 dropout_rate=dropout, hidden_dim=hidden, num_labels=1000)


@pytest.mark.parametrize("variant", list(SIZES), ids=str)
def test_sizes_match_transformers(variant):
    with torch.device("meta"):
        reference = sum(p.numel() for p in tf.EfficientNetForImageClassification(_config(variant)).parameters())
    assert param_counts(build(load_spec(SPEC, variant), device="meta"))["total"] == reference


@pytest.mark.parametrize("variant", list(SIZES), ids=str)
def test_sizes_are_what_import_hf_writes(variant, tmp_path):
    config = _config(variant)
    config.architectures = ["EfficientNetForImageClassification"]
    config.save_pretrained(tmp_path / "ckpt")
    tree, _ = import_hf(tmp_path / "ckpt")
    write_spec(tree, tmp_path / "imported.yaml")
    imported, spec = load_spec(tmp_path / "imported.yaml").spec, load_spec(SPEC, variant).spec
    for section in ("modalities", "encoders", "heads", "weights"):
        assert getattr(imported, section) == getattr(spec, section), section


TINY = {  # a few channels, stride-2 stages with kernels 3 and 5, expansion 1 and 6, repeated (residual) blocks
    "width_coefficient": 0.25, "depth_coefficient": 1.5, "kernel_sizes": [3, 3, 5], "in_channels": [32, 16, 24],
    "out_channels": [16, 24, 40], "strides": [1, 2, 2], "num_block_repeats": [1, 2, 1], "expand_ratios": [1, 6, 4],
    "hidden_dim": 320, "num_labels": 5,
}  # fmt: skip


def _lively(model: torch.nn.Module) -> torch.nn.Module:
    """Weights that carry the input to the logits: transformers initialises BatchNorm scales and convs with
    N(0, 0.02), which shrinks every feature map towards zero and leaves logits that no input changes."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(1.0 + 0.2 * torch.randn(m.weight.shape, generator=g))
    return randomize(model)


@pytest.mark.parametrize(("size", "square"), [(32, []), (29, [1])], ids=["even", "odd-square-padding"])
def test_weights_reproduce_transformers_logits(size, square, tmp_path):
    """Stride-2 depthwise padding (TensorFlow "same": 0/1 or, for `depthwise_padding` blocks, 1/1 for k=3),
    squeeze-excite widths from the block input and the residual placement all show in the logits."""
    torch.manual_seed(0)
    config = tf.EfficientNetConfig(**TINY, image_size=size, depthwise_padding=square)
    config.architectures = ["EfficientNetForImageClassification"]
    reference = _lively(tf.EfficientNetForImageClassification(config))
    reference.save_pretrained(tmp_path / "ckpt")
    tree, _ = import_hf(tmp_path / "ckpt")
    write_spec(tree, tmp_path / "tiny.yaml")
    loaded = load_spec(tmp_path / "tiny.yaml")
    model = build(loaded, weights=tmp_path / "ckpt").eval()
    assert not model.weights_report["new"] and not model.weights_report["ignored"]
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=1)
    assert inputs["image"].shape[-2:] == (size, size)
    with torch.no_grad():
        (ours,) = model(inputs)  # B,5
        theirs = reference(pixel_values=inputs["image"]).logits  # B,5
    assert ours.shape == theirs.shape and (theirs[0] - theirs[1]).abs().max() > 0.1  # the image shows
    diff = (ours - theirs).abs().max().item()
    assert diff <= PARITY_ATOL, f"max abs diff {diff:.3g}"


def test_fit_lowers_the_loss_of_the_tiny_variant():
    loaded = load_spec(SPEC, "tiny")
    history = Trainer(loaded, lr=3e-3).fit(synthetic_batch(loaded, 4, 0), 12, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < 0.9 * first, history.losses[::3]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["encoders.backbone.stages=[[3, 1, 1, 32, 16, 1], [3, 2, 6, 24, 40, 1]]"], "stage 1 takes 24 channels"),
        (["encoders.backbone.stages=[[3, 3, 1, 32, 16, 1]]"], "stride 3 is not supported"),
        (["encoders.backbone.stages=[[4, 1, 1, 32, 16, 1]]"], "kernel 4 must be odd"),
        (["encoders.backbone.square_padding=[9]"], "block 9 does not exist"),
        (["modalities.image.height=6"], "too small"),
    ],
)
def test_shape_rules_are_located(sets, message):
    with pytest.raises(SpecError) as info:
        load_spec(SPEC, "tiny", sets)
    text = str(info.value)
    assert message in text and "encoders.backbone" in text, text


def test_drop_connect_drops_whole_samples_in_training_only():
    """Stochastic depth: each sample keeps its residual branch (scaled by 1 / (1 - p)) or loses all of it."""
    torch.manual_seed(0)
    block = MBConv(8, 8, 3, 1, 6, 2, residual=True, drop=0.5)
    x = torch.randn(64, 8, 5, 5)  # B,C,H,W

    def branch():
        return block.project(block.se(block.depthwise(block.expand(x))))  # B,C,H,W

    with torch.no_grad():
        torch.testing.assert_close(block.eval()(x), x + branch())
        block.train()
        kept, delta = 2.0 * branch(), block(x) - x  # B,C,H,W (train-mode BatchNorm: batch statistics)
    dropped = delta.flatten(1).abs().amax(1) == 0  # B
    assert 10 < int(dropped.sum()) < 54
    torch.testing.assert_close(delta[~dropped], kept[~dropped])
