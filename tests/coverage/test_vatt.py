"""VATT (FM-04): the spec's count equals a torch.nn rebuild of the official video (ViTx3D) and waveform (WaT)
towers plus the video-audio projections (tests/vatt_references.py) on the meta device, at every named size; the
tiny towers, given the rebuild's weights, reproduce its hidden states; DropToken keeps `keep` of the tokens while
training only; `fit` on the tiny variant lowers the NCE loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import vatt_references as VATT

from mmspec.api import build, load_spec, param_counts
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPEC = Path(__file__).resolve().parents[2] / "specs" / "vatt.yaml"
ATOL, RTOL = 1e-5, 1e-5


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("variant", [None, "medium", "large"])
def test_count_matches_the_official_towers(variant):
    size = variant or "base"
    with torch.device("meta"):
        video, audio, reference = VATT.video_tower(size), VATT.audio_tower(), VATT.vatt_va(size)
    counts = param_counts(build(load_spec(SPEC, variant), device="meta"))
    assert counts["by_component"]["video_tower"] == _count(video)
    assert counts["by_component"]["audio_tower"] == _count(audio)
    assert counts["total"] == _count(reference)


def _weights(reference: VATT.Tower) -> dict[str, torch.Tensor]:
    """The rebuild's state dict under the `vatt` encoder's names."""
    theirs, ours = dict(reference.state_dict()), {}
    ours["agg"] = theirs.pop("agg")[None, None]
    for i in range(len(reference.buckets)):
        ours[f"positions.{i}"] = theirs.pop(f"buckets.{i}.weight")
    names = [("voxel_to_patch", "project"), ("pos_norm", "position_norm"), ("final_norm", "norm")]
    for i in range(len(reference.layers)):
        names += [(f"layers.{i}.{a}", f"layers.{i}.{b}") for a, b in (
            ("q", "attn.q"), ("k", "attn.k"), ("v", "attn.v"), ("o", "attn.out"), ("norm1", "attn_res.norm"),
            ("wi", "ffn.fc1"), ("wo", "ffn.fc2"), ("norm2", "ffn_res.norm"))]
    for a, b in names:
        for p in ("weight", "bias"):
            ours[f"{b}.{p}"] = theirs.pop(f"{a}.{p}")
    assert not theirs, sorted(theirs)
    return ours


@pytest.mark.parametrize("tower", ["video_tower", "audio_tower"])
def test_tiny_towers_equal_the_official_modules(tower):
    spec = load_spec(SPEC, "tiny").spec
    cfg = spec.encoders[tower]
    model = build(load_spec(SPEC, "tiny")).eval()
    ours = model.components[tower]
    g = torch.Generator().manual_seed(3)
    if tower == "video_tower":
        m = spec.modalities["video"]
        x = torch.randn(2, m.count, m.channels, m.height, m.width, generator=g)  # B,T,C,H,W
        buckets = [m.count // cfg.patch[0], m.height // cfg.patch[1], m.width // cfg.patch[2]]
        reference = VATT.Tower(m.channels, cfg.patch, buckets, cfg.width, cfg.layers, cfg.heads, cfg.ffn)
        inputs, theirs_in = {"input": {"pixels": x}}, x.transpose(1, 2)
    else:
        m = spec.modalities["audio"]
        x = torch.randn(2, m.length, m.dim, generator=g)  # B,L,1
        reference = VATT.Tower(m.dim, cfg.patch, [m.length // cfg.patch[0]], cfg.width, cfg.layers, cfg.heads,
                               cfg.ffn)
        inputs, theirs_in = {"input": {"values": x}}, x.transpose(1, 2)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_(0.0, 0.2)
    ours.load_state_dict(_weights(reference.eval()))
    with torch.no_grad():
        out, expected = ours(inputs), reference(theirs_in)
    torch.testing.assert_close(out["sequence"], expected, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out["pooled"], expected[:, 0], atol=ATOL, rtol=RTOL)


def test_droptoken_keeps_a_share_of_the_tokens_while_training_only():
    loaded = load_spec(SPEC, "tiny")
    model = build(loaded)
    batch = synthetic_batch(loaded, 2, 0)
    video = {"input": {"pixels": batch.inputs["video"]}}
    cfg, m = loaded.spec.encoders["video_tower"], loaded.spec.modalities["video"]
    tokens = (m.count // cfg.patch[0]) * (m.height // cfg.patch[1]) * (m.width // cfg.patch[2])
    model.train()
    assert model.components["video_tower"](video)["sequence"].shape[1] == 1 + int(tokens * cfg.keep)
    model.eval()
    assert model.components["video_tower"](video)["sequence"].shape[1] == 1 + tokens


def test_fit_lowers_the_loss_of_the_tiny_variant():
    loaded = load_spec(SPEC, "tiny")
    history = Trainer(loaded, lr=3e-3).fit(synthetic_batch(loaded, 8, 0), 30, seed=0)
    first, last = sum(history.losses[:3]) / 3, sum(history.losses[-3:]) / 3  # a fresh DropToken every step
    assert last < 0.9 * first, history.losses[::3]


def test_mil_nce_equals_its_definition():
    """MIL-NCE against a term-by-term evaluation of Miech et al.'s loss: for clip i, -log(sum of its K captions'
    exp(cos / t) over that sum plus every other (clip i, caption of clip j) and (clip j, caption of clip i) term)."""
    from mmspec.components.objectives.mil_nce.loss import MILNCELoss

    g = torch.Generator().manual_seed(5)
    v, t = torch.randn(3, 4, generator=g), torch.randn(3, 2, 4, generator=g)  # B,D; B,K,D
    ours = MILNCELoss(0.07)({"video": {"embedding": v}, "text": {"embedding": t}}, {})
    vn, tn = torch.nn.functional.normalize(v, dim=-1), torch.nn.functional.normalize(t, dim=-1)
    losses = []
    for i in range(3):
        pos = sum(torch.exp(vn[i] @ tn[i, k] / 0.07) for k in range(2))
        neg = sum(torch.exp(vn[i] @ tn[j, k] / 0.07) + torch.exp(vn[j] @ tn[i, k] / 0.07)
                  for j in range(3) if j != i for k in range(2))
        losses.append(-torch.log(pos / (2 * pos + neg)))  # the positives appear in both directions' rows
    torch.testing.assert_close(ours, torch.stack(losses).mean())
