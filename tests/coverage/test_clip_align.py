"""CLIP sizes (TSV-01) and ALIGN (TSV-02): each named size's parameter count equals transformers' CLIPModel /
AlignModel built with the same configuration on the meta device (the RN towers: the official layer sizes),
`mmspec import hf` writes the sizes as the specs declare them, `--weights` on a random ALIGN checkpoint reproduces
AlignModel's outputs, and the tiny ALIGN and CLIP RN50 train."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers as tf
from hf_reference import PARITY_ATOL, randomize
from references import _CLIP_RESNETS, _clip_resnet
from transformers.models.align.modeling_align import align_loss

from mmspec.api import build, load_spec, param_counts
from mmspec.components.encoders.clip_resnet.module import AttentionPool
from mmspec.components.objectives.supervised.loss import SymmetricInfoNCE
from mmspec.graph.inputs import make_inputs, trace_sizes
from mmspec.importers.hf import import_hf, write_spec
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPECS = Path(__file__).resolve().parents[2] / "specs"
CLIP_SIZES = {  # variant -> (vision: width, layers, heads, ffn, patch, image; text: width, heads, ffn; projection)
    None: (768, 12, 12, 3072, 32, 224, 512, 8, 2048, 512),
    "b16": (768, 12, 12, 3072, 16, 224, 512, 8, 2048, 512),
    "l14": (1024, 24, 16, 4096, 14, 224, 768, 12, 3072, 768),
    "l14_336": (1024, 24, 16, 4096, 14, 336, 768, 12, 3072, 768),
}


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _clip_config(variant: str | None) -> tf.CLIPConfig:
    """transformers' CLIPConfig of one of the paper's ViT sizes (text tower 12 layers, 77 positions)."""
    width, layers, heads, ffn, patch, image, text_width, text_heads, text_ffn, dim = CLIP_SIZES[variant]
    vision = {"hidden_size": width, "num_hidden_layers": layers, "num_attention_heads": heads,
              "intermediate_size": ffn, "patch_size": patch, "image_size": image}
    text = {"hidden_size": text_width, "num_attention_heads": text_heads, "intermediate_size": text_ffn,
            "eos_token_id": 2}  # 2: pooled at the highest id, as the original CLIP (and specs/clip.yaml)
    return tf.CLIPConfig(text_config=text, vision_config=vision, projection_dim=dim)


@pytest.mark.parametrize("variant", list(CLIP_SIZES), ids=str)
def test_clip_sizes_match_transformers(variant):
    with torch.device("meta"):
        reference = _count(tf.CLIPModel(_clip_config(variant)))
    assert param_counts(build(load_spec(SPECS / "clip.yaml", variant), device="meta"))["total"] == reference


@pytest.mark.parametrize("variant", list(CLIP_SIZES), ids=str)
def test_clip_sizes_are_what_import_hf_writes(variant, tmp_path):
    config = _clip_config(variant)
    config.architectures = ["CLIPModel"]
    config.save_pretrained(tmp_path / "ckpt")
    tree, _ = import_hf(tmp_path / "ckpt")
    write_spec(tree, tmp_path / "imported.yaml")
    imported, spec = load_spec(tmp_path / "imported.yaml").spec, load_spec(SPECS / "clip.yaml", variant).spec
    for section in ("modalities", "encoders", "weights"):
        assert getattr(imported, section) == getattr(spec, section), section
    assert imported.heads.keys() == spec.heads.keys()
    for name in ("image_proj", "text_proj"):
        assert imported.heads[name] == spec.heads[name], name


ALIGN_TEXT = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096}
ALIGN_L2 = {"width_coefficient": 4.3, "depth_coefficient": 5.3, "image_size": 289, "hidden_dim": 5504}


def _align_config() -> tf.AlignConfig:
    """ALIGN at the paper's scale: BERT-Large, EfficientNet-L2, the text projected to the image width 1,376."""
    return tf.AlignConfig(text_config=ALIGN_TEXT, vision_config=ALIGN_L2, projection_dim=1376)


def test_align_matches_transformers():
    with torch.device("meta"):
        reference = tf.AlignModel(_align_config())
    width = reference.vision_model.encoder.blocks[-1].projection.project_conv.out_channels
    assert width == reference.text_projection.out_features  # the two embeddings meet
    assert param_counts(build(load_spec(SPECS / "align.yaml"), device="meta"))["total"] == _count(reference)


def test_align_is_what_import_hf_writes(tmp_path):
    config = _align_config()
    config.architectures = ["AlignModel"]
    config.save_pretrained(tmp_path / "ckpt")
    tree, _ = import_hf(tmp_path / "ckpt")
    write_spec(tree, tmp_path / "imported.yaml")
    imported, spec = load_spec(tmp_path / "imported.yaml").spec, load_spec(SPECS / "align.yaml").spec
    for section in ("modalities", "encoders", "heads", "objectives", "weights", "outputs"):
        assert getattr(imported, section) == getattr(spec, section), section


def _lively(model: torch.nn.Module) -> torch.nn.Module:
    """He-initialised convs and linears and BatchNorm scales near 1, so that the image reaches the embedding
    (transformers' N(0, 0.02) initialisation shrinks EfficientNet's feature maps towards zero)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.vision_model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / m.weight[0].numel()) ** 0.5)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(1.0 + 0.2 * torch.randn(m.weight.shape, generator=g))
    return randomize(model)


def test_align_weights_reproduce_transformers(tmp_path):
    """A random AlignModel checkpoint: `import hf` + `--weights` give its logits and both embeddings."""
    torch.manual_seed(0)
    vision = {"width_coefficient": 0.25, "depth_coefficient": 1.5, "kernel_sizes": [3, 5], "in_channels": [32, 16],
              "out_channels": [16, 24], "strides": [1, 2], "num_block_repeats": [1, 2], "expand_ratios": [1, 6],
              "hidden_dim": 320, "image_size": 32}
    text = {"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 24, "max_position_embeddings": 20}
    reference = _lively(tf.AlignModel(tf.AlignConfig(text_config=text, vision_config=vision, projection_dim=8)))
    reference.save_pretrained(tmp_path / "ckpt")
    tree, arch = import_hf(tmp_path / "ckpt")
    assert arch == "AlignModel"
    write_spec(tree, tmp_path / "align.yaml")
    loaded = load_spec(tmp_path / "align.yaml")
    model = build(loaded, weights=tmp_path / "ckpt").eval()
    assert not model.weights_report["new"] and not model.weights_report["ignored"]
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=1)
    with torch.no_grad():
        ours = dict(zip(model.output_names, model(inputs), strict=True))
        theirs = reference(input_ids=inputs["text"], attention_mask=inputs["text_mask"],
                           token_type_ids=inputs["text_segments"], pixel_values=inputs["image"])
    image, text_embeds = theirs.image_embeds, theirs.text_embeds  # B,8
    assert (image[0] - image[1]).abs().max() > 0.05 and (text_embeds[0] - text_embeds[1]).abs().max() > 0.05
    for ours_name, field in (("align_logits_per_image", "logits_per_image"), ("align_logits_per_text",
                             "logits_per_text"), ("align_image_embeds", "image_embeds"),
                             ("align_text_embeds", "text_embeds")):
        diff = (ours[ours_name] - getattr(theirs, field)).abs().max().item()
        assert diff <= PARITY_ATOL, f"{ours_name}: max abs diff {diff:.3g}"


def test_align_loss_is_transformers_align_loss():
    """symmetric_infonce over ALIGN's head: cross-entropies of cos / temperature both ways, labels smoothed by 0.1,
    equal to AlignModel's return_loss."""
    g = torch.Generator().manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=-1)  # B,D
    text = torch.nn.functional.normalize(image + 0.3 * torch.randn(5, 8, generator=g), dim=-1)  # B,D: pairs match
    temperature = torch.nn.Parameter(torch.tensor(0.05))
    loss = SymmetricInfoNCE("image", "text", temperature, None, divide=True, label_smoothing=0.1)
    ours = loss({"input": {"image_embeds": image, "text_embeds": text}}, {})
    theirs = align_loss(text @ image.t() / temperature)  # B,B logits per text
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)
    plain = SymmetricInfoNCE("image", "text", temperature, None, divide=True)({"input": {
        "image_embeds": image, "text_embeds": text}}, {})
    assert abs(plain.item() - ours.item()) > 1e-2  # the smoothing shows


def test_align_fit_lowers_the_loss_of_the_tiny_variant():
    loaded = load_spec(SPECS / "align.yaml", "tiny")
    history = Trainer(loaded, lr=3e-3).fit(synthetic_batch(loaded, 4, 0), 12, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < 0.9 * first, history.losses[::3]


@pytest.mark.parametrize("variant", [None, "rn101", "rn50x4"], ids=str)
def test_clip_resnet_sizes_match_the_official_layers(variant):
    """RN50/RN101/RN50x4 against openai/CLIP's layer sizes rebuilt from torch.nn (tests/references.py)."""
    config = _CLIP_RESNETS["clip_resnet" if variant is None else f"clip_resnet:{variant}"]
    with torch.device("meta"):
        reference = _count(_clip_resnet(*config))
    assert param_counts(build(load_spec(SPECS / "clip_resnet.yaml", variant), device="meta"))["total"] == reference


def test_clip_resnet_attention_pool_is_multi_head_attention():
    """The pool equals torch's multi_head_attention_forward with the mean token as the only query (as CLIP's
    AttentionPool2d calls it), the positions added to every token first."""
    torch.manual_seed(0)
    pool = AttentionPool(positions=4, dim=16, heads=4, output=8).eval()
    x = torch.randn(3, 16, 2, 2)  # B,C,H,W
    tokens = x.flatten(2).permute(2, 0, 1)  # HW,B,C
    tokens = torch.cat([tokens.mean(0, keepdim=True), tokens]) + pool.position[:, None]  # 1+HW,B,C
    with torch.no_grad():
        theirs, _ = torch.nn.functional.multi_head_attention_forward(
            tokens[:1], tokens, tokens, 16, 4, None, torch.cat([pool.q.bias, pool.k.bias, pool.v.bias]), None, None,
            False, 0.0, pool.out.weight, pool.out.bias, use_separate_proj_weight=True, q_proj_weight=pool.q.weight,
            k_proj_weight=pool.k.weight, v_proj_weight=pool.v.weight, need_weights=False)  # 1,B,8
        ours = pool(x)  # B,8
    torch.testing.assert_close(ours, theirs[0], atol=1e-6, rtol=1e-5)


def test_clip_resnet_fit_lowers_the_loss_of_the_tiny_variant():
    loaded = load_spec(SPECS / "clip_resnet.yaml", "tiny")
    history = Trainer(loaded, lr=3e-3).fit(synthetic_batch(loaded, 4, 0), 12, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < 0.9 * first, history.losses[::3]
