"""Vision specs (CV-01 ResNet sizes, CV-05 ViT, CV-03 SimCLR, CV-04 BYOL, BM-01 MAE) and BERT-large (NLP-09):
parameter counts equal the references built on the meta device, `mmspec import hf` writes the ViT and ResNet
sizes as the specs declare them, the self-supervised objectives lower their loss on the tiny variants, and the
exported graphs hold none of their training-only parts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers as tf
from hf_reference import PARITY_ATOL, randomize
from torch import nn

from mmspec.api import build, capture, load_spec, param_counts
from mmspec.errors import SpecError, UsageError
from mmspec.graph.inputs import make_inputs, trace_sizes
from mmspec.importers.hf import import_hf, write_spec
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]


def _spec(name: str) -> Path:
    return ROOT / "specs" / f"{name}.yaml"


def _count(make) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in make().parameters())


def _ours(name: str, variant: str | None = None) -> dict:
    return param_counts(build(load_spec(_spec(name), variant), device="meta"))


_BASIC = {"layer_type": "basic", "hidden_sizes": [64, 128, 256, 512]}
RESNET = {  # variant -> ResNetConfig of that size (None: the canonical ResNet-50)
    "resnet18": {**_BASIC, "depths": [2, 2, 2, 2]},
    "resnet34": {**_BASIC, "depths": [3, 4, 6, 3]},
    None: {},
    "resnet101": {"depths": [3, 4, 23, 3]},
    "resnet152": {"depths": [3, 8, 36, 3]},
}
VIT = {  # variant -> ViTConfig sizes
    None: {},
    "large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096},
    "huge": {"hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16, "intermediate_size": 5120,
             "patch_size": 14},
}
MAE = {  # variant -> ViTMAEConfig encoder sizes (the decoder is the default 8 x 512)
    None: VIT["large"],
    "base": {},
    "huge": VIT["huge"],
}


@pytest.mark.parametrize("variant", list(RESNET), ids=str)
def test_resnet_sizes_match_transformers(variant):
    reference = _count(lambda: tf.ResNetForImageClassification(tf.ResNetConfig(**RESNET[variant], num_labels=1000)))
    assert _ours("resnet50", variant)["total"] == reference


@pytest.mark.parametrize("variant", list(VIT), ids=str)
def test_vit_sizes_match_transformers(variant):
    reference = _count(lambda: tf.ViTForImageClassification(tf.ViTConfig(**VIT[variant], num_labels=1000)))
    assert _ours("vit", variant)["total"] == reference


def test_bert_large_matches_transformers():
    config = tf.BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    assert _ours("bert", "large")["total"] == _count(lambda: tf.BertForPreTraining(config))


@pytest.mark.parametrize("variant", list(MAE), ids=str)
def test_mae_sizes_match_transformers(variant):
    reference = _count(lambda: tf.ViTMAEForPreTraining(tf.ViTMAEConfig(**MAE[variant])))
    assert _ours("mae", variant)["total"] == reference


def _encoder() -> int:
    """transformers' ResNet-50 without its classifier (ResNetConfig() is ResNet-50)."""
    return _count(lambda: tf.ResNetModel(tf.ResNetConfig()))


def _mlp(d_in: int, hidden: int, d_out: int, batch_norm: bool) -> int:
    """A projection MLP built from torch layers: Linear [-BatchNorm] -ReLU- Linear."""
    norm = [nn.BatchNorm1d(hidden)] if batch_norm else []
    return _count(lambda: nn.Sequential(nn.Linear(d_in, hidden), *norm, nn.ReLU(), nn.Linear(hidden, d_out)))


def test_simclr_is_resnet50_plus_its_projection_head():
    ours = _ours("simclr")
    head = _mlp(2048, 2048, 128, batch_norm=False)
    assert ours["by_component"]["backbone"] == _encoder()
    assert ours["by_component"]["projection"] == head
    assert ours["total"] == ours["trainable"] == _encoder() + head


def test_byol_is_resnet50_projector_predictor_and_their_target_copy():
    ours = _ours("byol")
    projector, predictor = _mlp(2048, 4096, 256, batch_norm=True), _mlp(256, 4096, 256, batch_norm=True)
    online = _encoder() + projector
    assert ours["by_component"]["online"] == _encoder()
    assert ours["by_component"]["projector"] == projector
    assert ours["by_component"]["predictor"] == predictor
    assert ours["by_component"]["target"] == online  # EMA copy of encoder and projector, not trained
    assert ours["trainable"] == online + predictor
    assert ours["total"] == 2 * online + predictor


def _imported(tmp_path: Path, config, arch: str):
    config.architectures = [arch]
    config.save_pretrained(tmp_path / "ckpt")
    tree, found = import_hf(tmp_path / "ckpt")
    assert found == arch
    write_spec(tree, tmp_path / "imported.yaml")
    return load_spec(tmp_path / "imported.yaml").spec


def _same_model(imported, spec) -> None:
    for section in ("modalities", "encoders", "heads", "weights"):
        assert getattr(imported, section) == getattr(spec, section), section


@pytest.mark.parametrize("variant", list(VIT), ids=str)
def test_vit_spec_is_what_import_hf_writes(variant, tmp_path):
    """So `mmspec compile specs/vit.yaml --weights` takes a ViTForImageClassification checkpoint of that size
    (tests/weights/test_import_hf.py checks the imported outputs against transformers)."""
    imported = _imported(tmp_path, tf.ViTConfig(**VIT[variant], num_labels=1000), "ViTForImageClassification")
    _same_model(imported, load_spec(_spec("vit"), variant).spec)


@pytest.mark.parametrize("variant", list(RESNET), ids=str)
def test_resnet_sizes_are_what_import_hf_writes(variant, tmp_path):
    config = tf.ResNetConfig(**RESNET[variant], num_labels=1000)
    imported = _imported(tmp_path, config, "ResNetForImageClassification")
    _same_model(imported, load_spec(_spec("resnet50"), variant).spec)


MAE_TINY = {  # ViTMAEConfig of specs/mae.yaml's tiny variant
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64, "image_size": 32,
    "patch_size": 8, "decoder_hidden_size": 16, "decoder_num_hidden_layers": 1, "decoder_num_attention_heads": 2,
    "decoder_intermediate_size": 32,
}  # fmt: skip


def test_import_hf_vit_mae_pretraining_matches_transformers(tmp_path):
    """`mmspec import hf` of a ViTMAEForPreTraining checkpoint, built with its weights (encoder, decoder, pixel
    head: nothing new, nothing ignored), trains as transformers does: under one seed both drop the same patches,
    predict the same pixels and compute the same normalised-pixel loss; the import is specs/mae.yaml's tiny variant."""
    torch.manual_seed(0)
    reference = randomize(tf.ViTMAEForPreTraining(tf.ViTMAEConfig(**MAE_TINY, norm_pix_loss=True)))
    reference.save_pretrained(tmp_path / "ckpt")
    tree, found = import_hf(tmp_path / "ckpt")
    assert found == "ViTMAEForPreTraining"
    write_spec(tree, tmp_path / "imported.yaml")
    loaded = load_spec(tmp_path / "imported.yaml")
    _same_model(loaded.spec, load_spec(_spec("mae"), "tiny").spec)
    model = build(loaded, weights=tmp_path / "ckpt")
    assert model.weights_report["new"] == model.weights_report["ignored"] == []
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=1)
    x = inputs["image"]  # B,3,32,32
    model.train()
    reference.train()
    torch.manual_seed(3)
    values = model.node_values(inputs)
    torch.manual_seed(3)
    theirs = reference(pixel_values=x)
    dropped = values["encoder"]["dropped"]  # B,16
    assert torch.equal(dropped, theirs.mask.long()) and dropped.float().mean() == 0.75
    pixels = values["pixels"]["embedding"][:, 1:]  # B,16,192 (the class token's prediction left out)
    diff = (pixels - theirs.logits).abs().max().item()
    assert diff <= PARITY_ATOL and theirs.logits.abs().max() > 0.1, f"max abs diff {diff:.3g}"
    loss = model.objectives["mae_loss"]({"input": values["pixels"], "target": {"pixels": x},
                                         "dropped": {"dropped": dropped}}, {})
    torch.testing.assert_close(loss, theirs.loss, atol=PARITY_ATOL, rtol=0)
    model.eval()  # the export keeps every patch: the encoder alone, as ViTMAEModel at mask_ratio 0
    with torch.no_grad():
        (ours,) = model(inputs)  # B,17,32
        reference.config.mask_ratio = 0.0
        encoded = reference.vit(pixel_values=x, noise=torch.arange(16.0).expand(x.shape[0], 16)).last_hidden_state
    assert (ours - encoded).abs().max().item() <= PARITY_ATOL


@pytest.mark.parametrize("variant", list(MAE), ids=str)
def test_mae_spec_is_what_import_hf_writes(variant, tmp_path):
    """specs/mae.yaml's sizes are `mmspec import hf` of ViTMAEForPreTraining configs (normalised-pixel loss)."""
    config = tf.ViTMAEConfig(**MAE[variant], norm_pix_loss=True)
    imported = _imported(tmp_path, config, "ViTMAEForPreTraining")
    spec = load_spec(_spec("mae"), variant).spec
    _same_model(imported, spec)
    assert imported.objectives == spec.objectives


def test_import_hf_vit_mae_refuses_a_ratio_that_drops_nothing(tmp_path):
    config = tf.ViTMAEConfig(**MAE_TINY, mask_ratio=0.0)
    config.architectures = ["ViTMAEForPreTraining"]
    config.save_pretrained(tmp_path)
    with pytest.raises(UsageError, match="mask_ratio: 0.0 drops no patch, so the decoder has nothing to reconstruct"):
        import_hf(tmp_path)


TRAINING_ONLY = {  # spec -> (its exported outputs, the nodes that only training uses)
    "simclr": (["backbone_pooled"], {"projection", "nt_xent"}),
    "byol": (["online_pooled"], {"projector", "predictor", "target", "byol"}),
    "mae": (["encoder_sequence"], {"decoder", "pixels", "mae_loss"}),
}


@pytest.mark.parametrize("name", sorted(TRAINING_ONLY))
def test_exports_leave_the_training_only_parts_out(name):
    outputs, training = TRAINING_ONLY[name]
    loaded = load_spec(_spec(name), "tiny")
    assert [o for o, _, _ in loaded.plan.outputs] == outputs
    assert not training & {n.name for n in loaded.plan.export_nodes}
    gm = capture(build(loaded))
    modules = {str(n.target).split(".")[1] for n in gm.graph.nodes if n.op in ("call_module", "get_attr")}
    assert modules and not training & modules
    assert not any(n.target in (torch.rand, torch.rand_like, torch.randn, torch.randperm) for n in gm.graph.nodes)


@pytest.mark.parametrize("name", sorted(TRAINING_ONLY))
def test_fit_lowers_the_loss_of_the_tiny_variant(name):
    loaded = load_spec(_spec(name), "tiny")
    trainer = Trainer(loaded, lr=3e-3)
    history = trainer.fit(synthetic_batch(loaded, 4, 0), 12, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < 0.9 * first, history.losses[::3]


def test_mae_loss_counts_the_dropped_patches_of_normalised_pixels():
    """The reconstruction loss with `dropped:` by hand: per-patch standardised targets, the class token's
    prediction left out, mean squared error over the patches the encoder dropped."""
    loaded = load_spec(_spec("mae"), "tiny")
    model = build(loaded).train()
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=0)
    torch.manual_seed(0)
    values = model.node_values(inputs)
    dropped = values["encoder"]["dropped"]  # B,16
    assert torch.equal(dropped.sum(1), torch.full((dropped.shape[0],), 12))  # 75 % of 4 x 4 patches of 8 x 8
    args = {"input": values["pixels"], "target": {"pixels": inputs["image"]}, "dropped": {"dropped": dropped}}
    loss = model.objectives["mae_loss"](args, {})
    x = inputs["image"]  # B,3,32,32
    b = x.shape[0]
    patches = x.reshape(b, 3, 4, 8, 4, 8).permute(0, 2, 4, 3, 5, 1).reshape(b, 16, 192)  # B,16,8*8*3
    target = (patches - patches.mean(-1, keepdim=True)) / (patches.var(-1, keepdim=True) + 1e-6).sqrt()
    err = (values["pixels"]["embedding"][:, 1:] - target).square().mean(-1)  # B,16
    expected = err[dropped.bool()].mean()
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["objectives.mae_loss.mask={ratio: 0.5, patch: 8}"], "keep one of them"),
        (["heads.pixels.dim=100"], "is not patch*patch*3"),
        (["objectives.mae_loss.dropped=pixels"], "needs an int64 [batch, patches] tensor"),
    ],
)
def test_mae_loss_shape_rules_are_located(sets, message):
    with pytest.raises(SpecError) as info:
        load_spec(_spec("mae"), "tiny", sets)
    text = str(info.value)
    assert message in text and "objectives.mae_loss" in text, text
