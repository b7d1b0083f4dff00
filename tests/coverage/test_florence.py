"""Florence (TSV-03): the `swin` encoder reproduces transformers' SwinModel with the same weights (shifted windows,
relative position tables, patch merging, final LayerNorm and mean pooling), the `swin_t` variant's count equals
SwinModel + CLIPTextModel + projections built on the meta device, CoSwin's convolutional embeddings are counted by
the encoder's formula, UniCL spreads each row's target over the pairs sharing its label, and the tiny variant
trains."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers as tf
from hf_reference import PARITY_ATOL, randomize
from references import REFERENCES

from mmspec.api import build, load_spec, param_counts
from mmspec.components.encoders.swin import SwinEncoder
from mmspec.components.objectives.supervised.loss import SymmetricInfoNCE
from mmspec.components.objectives.unicl.loss import UniCLLoss
from mmspec.spec.tensors import TensorInfo
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPECS = Path(__file__).resolve().parents[2] / "specs"
_BLOCK_NAMES = {"attention.q_proj": "block.attn.q", "attention.k_proj": "block.attn.k",
                "attention.v_proj": "block.attn.v", "attention.o_proj": "block.attn.out",
                "layernorm_before": "block.attn_res.norm", "layernorm_after": "block.ffn_res.norm",
                "mlp.fc1": "block.ffn.fc1", "mlp.fc2": "block.ffn.fc2",
                "attention.relative_position_bias": "relative"}


def _ours(name: str) -> str:
    """A SwinModel state-dict name -> the `swin` module's (HF's stage i downsample is our stage i + 1's first part,
    so stage i > 0 numbers its blocks from 1)."""
    if m := re.fullmatch(r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.(.+)\.(\w+)", name):
        stage, block, part, leaf = int(m[1]), int(m[2]), m[3], m[4]
        leaf = "table" if leaf == "relative_position_bias_table" else leaf
        return f"stages.{stage}.{block + (stage > 0)}.{_BLOCK_NAMES[part]}.{leaf}"
    if m := re.fullmatch(r"encoder\.layers\.(\d+)\.downsample\.(.+)", name):
        return f"stages.{int(m[1]) + 1}.0.{m[2]}"
    return (name.replace("embeddings.patch_embeddings.projection", "embed.conv")
            .replace("embeddings.norm", "embed.norm").replace("layernorm", "norm"))


def _swin(config: SwinEncoder, image: int) -> torch.nn.Module:
    pixels = {"pixels": TensorInfo((2, 3, image, image))}
    return config.build({"input": pixels}, None).eval()


@pytest.mark.parametrize("depths", [[2, 2, 2], [3, 1, 2]], ids=["even", "odd"])
def test_swin_encoder_equals_transformers_swin_model(depths):
    """64 px, 4-pixel patches, window 4: grids 16, 8 and 4 (shifted windows in the first two stages, none where
    the grid is one window)."""
    ref = randomize(tf.SwinModel(tf.SwinConfig(image_size=64, embed_dim=8, depths=depths, num_heads=[2, 4, 8],
                                               window_size=4)))
    config = SwinEncoder(type="swin", input="image", width=8, depths=depths, heads=[2, 4, 8], window=4)
    ours = _swin(config, 64)
    ours.load_state_dict({_ours(k): v for k, v in ref.state_dict().items()})
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        theirs, mine = ref(pixel_values=pixels), ours({"input": {"pixels": pixels}})
    torch.testing.assert_close(mine["sequence"], theirs.last_hidden_state, atol=PARITY_ATOL, rtol=1e-5)
    torch.testing.assert_close(mine["pooled"], theirs.pooler_output, atol=PARITY_ATOL, rtol=1e-5)


def test_swin_t_variant_count_equals_swin_model_and_clip_text():
    with torch.device("meta"):
        reference = sum(p.numel() for p in REFERENCES["florence:swin_t"]().parameters())
    assert param_counts(build(load_spec(SPECS / "florence.yaml", "swin_t"), device="meta"))["total"] == reference


@pytest.mark.parametrize("image", [224, 64])
def test_coswin_formula_counts_the_convolutional_embeddings(image):
    """CoSwin's 7x7/4 stem and 3x3/2 merges (ceil-halved grids) against the built module."""
    config = SwinEncoder(type="swin", input="image", width=16, depths=[1, 2], heads=[2, 4], window=7 if image > 64
                         else 2, conv_embed=True)
    pixels = {"input": {"pixels": TensorInfo((1, 3, image, image))}}
    with torch.device("meta"):
        module = config.build(pixels, None)
    assert config.estimate_params(pixels, None) == sum(p.numel() for p in module.parameters())
    side = ((image - 3) // 4 + 2) // 2  # the stem's grid, ceil-halved by the merge
    assert config.infer(pixels, None)["sequence"].shape[1] == side**2


def test_unicl_is_infonce_for_distinct_labels_and_averages_over_shared_ones():
    torch.manual_seed(0)
    a, b = (F.normalize(torch.randn(5, 8), dim=1) for _ in range(2))  # B,D
    scale = torch.nn.Parameter(torch.tensor(2.0))
    head = {"input": {"image_embeds": a, "text_embeds": b}}
    unicl = UniCLLoss("image", "text", scale, None)
    infonce = SymmetricInfoNCE("image", "text", scale, None)(head, {})
    torch.testing.assert_close(unicl(head, {"labels": torch.arange(5)}), infonce)
    labels = torch.tensor([0, 1, 0, 2, 1])
    same = (labels[:, None] == labels[None, :]).float()  # B,B
    logits = scale.exp() * a @ b.t()  # B,B
    by_row = [-(F.log_softmax(x, 1) * same).sum(1) / same.sum(1) for x in (logits, logits.t())]
    torch.testing.assert_close(unicl(head, {"labels": labels}), (by_row[0].mean() + by_row[1].mean()) / 2)
    assert not torch.allclose(unicl(head, {"labels": labels}), infonce)


def test_florence_fit_lowers_the_loss_of_the_tiny_variant():
    loaded = load_spec(SPECS / "florence.yaml", "tiny")
    history = Trainer(loaded, lr=3e-3).fit(synthetic_batch(loaded, 4, 0), 12, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < 0.9 * first, history.losses[::3]
