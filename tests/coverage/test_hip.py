"""Hierarchical Perceiver (FM-03): HiP-16 and HiP-256 count as many parameters as a torch.nn rebuild of the
official Haiku model (tests/hip_references.py) on the meta device; the tiny variant, given the rebuild's weights,
reproduces its latents and reconstruction; the hierarchy rejects groups that do not divide the tokens; `fit` on
the tiny variant lowers the reconstruction loss."""

from __future__ import annotations

import json
from pathlib import Path

import hip_references as HIP
import pytest
import torch

from mmspec.api import build, load_spec, param_counts
from mmspec.errors import SpecError
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPEC = Path(__file__).resolve().parents[2] / "specs" / "hip.yaml"
ATOL, RTOL = 1e-5, 1e-5


@pytest.mark.parametrize(("variant", "official"), [(None, "16"), ("hip256", "256")])
def test_count_matches_the_official_modules(variant, official):
    with torch.device("meta"):
        reference = HIP.hip(official)
    assert param_counts(build(load_spec(SPEC, variant), device="meta"))["total"] == sum(
        p.numel() for p in reference.parameters())


def _levels(loaded, index: int, **change) -> str:
    """A --set override of the tiny variant's levels with level `index` changed."""
    levels = [lv.model_dump() for lv in loaded.spec.encoders["hip"].levels]
    levels[index].update(change)
    return f"encoders.hip.levels={json.dumps(levels)}"


def _tiny_reference(spec) -> HIP.HiP:
    cfg, m = spec.encoders["hip"], spec.modalities["pixels"]
    levels = cfg.levels
    torch.manual_seed(0)
    reference = HIP.HiP(m.length, m.dim, [lv.groups for lv in levels], [lv.layers for lv in levels],
                        [lv.latents for lv in levels], [lv.width for lv in levels], [lv.heads for lv in levels],
                        cfg.embed)
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_(0.0, 0.3)
    return reference.eval()


def _cross(ours: dict, theirs: dict, dst: str, src: str) -> None:
    names = {"query_norm": "norm", "kv_norm": "kv_norm", "dense_norm": "ffn_res.norm",
             "attention.query_linear": "attn.q", "attention.key_linear": "attn.k", "attention.value_linear": "attn.v",
             "attention.attention_output_linear": "attn.out", "dense.mlp_hidden_linear": "ffn.fc1",
             "dense.mlp_output_linear": "ffn.fc2"}
    for a, b in names.items():
        for p in ("weight", "bias"):
            if f"{src}.{a}.{p}" in theirs:
                ours[f"{dst}.{b}.{p}"] = theirs.pop(f"{src}.{a}.{p}")


def _weights(reference: HIP.HiP) -> dict[str, torch.Tensor]:
    """The rebuild's state dict (official module names) under the spec's names."""
    theirs, ours, h = dict(reference.state_dict()), {}, "components.hip"
    for p in ("weight", "bias"):
        ours[f"{h}.embed.{p}"], ours[f"{h}.unembed.{p}"] = theirs.pop(f"embed.{p}"), theirs.pop(f"unembed.{p}")
    ours[f"{h}.position"] = theirs.pop("pos_emb_mae")
    for i, block in enumerate(reference.blocks):
        ours[f"{h}.levels.{i}.latents"] = theirs.pop(f"blocks.{i}.projector.query_inputs")
        for p in ("weight", "bias"):
            key = f"blocks.{i}.projector.pre_attention_residual_linear.{p}"
            if key in theirs:
                ours[f"{h}.levels.{i}.skip.{p}"] = theirs.pop(key)
        _cross(ours, theirs, f"{h}.levels.{i}.cross", f"blocks.{i}.projector")
        for j in range(len(block.self_attentions)):
            src, dst = f"blocks.{i}.self_attentions.{j}", f"{h}.levels.{i}.layers.{j}"
            _cross(ours, theirs, dst, src)
            for p in ("weight", "bias"):
                ours[f"{dst}.norm.{p}"] = theirs.pop(f"{src}.norm.{p}")
    _cross(ours, theirs, f"{h}.head", "reconstruction_head")
    assert not theirs, sorted(theirs)
    return ours


@pytest.mark.parametrize("skips", ["projected", "unprojected"])
def test_tiny_equals_the_official_modules(skips):
    loaded = load_spec(SPEC, "tiny")
    if skips == "unprojected":  # mirrored levels of equal widths: the skip is added without a Linear
        loaded = load_spec(SPEC, "tiny", [_levels(loaded, -1, width=loaded.spec.encoders["hip"].levels[0].width)])
    reference = _tiny_reference(loaded.spec)
    model = build(loaded).eval()
    model.load_state_dict(_weights(reference), strict=True)
    m = loaded.spec.modalities["pixels"]
    x = torch.randn(2, m.length, m.dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model.components["hip"]({"input": {"values": x}})
        latents, reconstruction = reference(x)
    torch.testing.assert_close(ours["sequence"], latents, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(ours["reconstruction"], reconstruction, atol=ATOL, rtol=RTOL)


def test_groups_must_divide_the_tokens():
    with pytest.raises(SpecError, match="equal groups"):
        load_spec(SPEC, "tiny", [_levels(load_spec(SPEC, "tiny"), 1, groups=3)])


def test_fit_lowers_the_loss_of_the_tiny_variant():
    loaded = load_spec(SPEC, "tiny")
    history = Trainer(loaded, lr=3e-3).fit(synthetic_batch(loaded, 4, 0), 30, seed=0)
    first, last = sum(history.losses[:3]) / 3, sum(history.losses[-3:]) / 3
    assert last < 0.9 * first, history.losses[::3]
