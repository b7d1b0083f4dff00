"""VATT (FM-04): the spec's count equals a torch.nn rebuild of the official video (ViTx3D), waveform (WaT) and text
(T5-small over frozen word2vec) towers and the FAC bridge (tests/vatt_references.py) on the meta device, at every
named size; the tiny towers and bridge, given the rebuild's weights, reproduce its outputs; the NCE temperature is
a fixed 0.07; DropToken keeps `keep` of the tokens while training only; `fit` on the tiny variant lowers the NCE +
MIL-NCE loss."""

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
        reference = VATT.vatt(size)
    video, audio, text, bridge = reference
    counts = param_counts(build(load_spec(SPEC, variant), device="meta"))
    by = counts["by_component"]
    assert by["video_tower"] == _count(video)
    assert by["audio_tower"] == _count(audio)
    assert by["text_tower"] == _count(text)
    assert sum(by[h] for h in ("video_va", "audio_va", "va", "video_vt", "text_vt")) == _count(bridge)
    assert counts["total"] == _count(reference)
    assert counts["total"] - counts["trainable"] == text.embedding.weight.numel()  # the frozen word2vec table


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


def _text_weights(reference: VATT.TextTower) -> dict[str, torch.Tensor]:
    """The text rebuild's state dict under the `t5` stack's names."""
    theirs = dict(reference.state_dict())
    ours = {"agg": theirs.pop("agg"), "embed.weight": theirs.pop("embedding.weight"),
            "project.0.weight": theirs.pop("pre_proj.weight"),
            "position.relative_attention_bias.weight": theirs.pop("relative_attention_bias.weight"),
            "final_norm.weight": theirs.pop("final_norm.weight")}
    for i in range(len(reference.layers)):
        for a, b in (("attn_norm.weight", "attn_norm.weight"), ("q.weight", "attn.q.weight"),
                     ("k.weight", "attn.k.weight"), ("v.weight", "attn.v.weight"), ("o.weight", "attn.out.weight"),
                     ("ffn_norm.weight", "ffn_norm.weight"), ("ffn_norm.bias", "ffn_norm.bias"),
                     ("wi.weight", "ffn.fc1.weight"), ("wo.weight", "ffn.fc2.weight")):
            ours[f"layers.{i}.{b}"] = theirs.pop(f"layers.{i}.{a}")
    assert not theirs, sorted(theirs)
    return ours


def test_tiny_text_tower_equals_the_official_module():
    """The t5 stack with `embed`, `agg_token`, a GELU feed-forward and a LayerNorm before it is the official VATT
    text model (padding, id 0, masked): word states and the aggregation state."""
    loaded = load_spec(SPEC, "tiny")
    cfg, m = loaded.spec.encoders["text_tower"], loaded.spec.modalities["text"]
    ours = build(loaded).eval().components["text_tower"]
    reference = VATT.TextTower(m.vocab_size, cfg.embed.dim, cfg.width, cfg.layers, cfg.heads, cfg.head_dim, cfg.ffn,
                               cfg.buckets, cfg.max_distance).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_(0.0, 0.3)
    ours.load_state_dict(_text_weights(reference))
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(1, m.vocab_size, (3, m.max_length), generator=g)  # B,S
    ids[1, 4:] = 0  # padding
    with torch.no_grad():
        out = ours({"input": {"ids": ids, "mask": (ids != 0).long()}})
        words, sentence = reference(ids)
    torch.testing.assert_close(out["pooled"], sentence, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out["sequence"][0], words[0], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out["sequence"][1, :4], words[1, :4], atol=ATOL, rtol=RTOL)  # unpadded words
    assert not ours.embed.weight.requires_grad and ours.project[0].weight.requires_grad


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_tiny_bridge_equals_the_official_fac_head(mode):
    """The `mlp` heads with `hidden_bias`, `input_activation` and `output_norm` (and the audio projection) are the
    official FAC bridge, BatchNorm in training (batch statistics) and in inference (running statistics)."""
    loaded = load_spec(SPEC, "tiny")
    model = build(loaded)
    heads, enc = loaded.spec.heads, loaded.spec.encoders
    reference = VATT.FACBridge(enc["video_tower"].width, enc["audio_tower"].width, enc["text_tower"].width,
                               heads["video_va"].dim, heads["video_vt"].dim)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_(0.0, 0.5)
        for bn in (reference.hid_to_va[0], reference.hid_to_va[3], reference.va_to_vat[2]):
            bn.running_mean.normal_(0.0, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
    c = model.components
    c["video_va"].load_state_dict({"mlp.0.weight": reference.vid_to_hid.weight,
                                   **{f"mlp.1.{k}": v for k, v in reference.hid_to_va[0].state_dict().items()},
                                   "mlp.3.weight": reference.hid_to_va[2].weight,
                                   **{f"out_norm.{k}": v for k, v in reference.hid_to_va[3].state_dict().items()}})
    c["video_vt"].load_state_dict({"mlp.0.weight": reference.va_to_vat[1].weight,
                                   **{f"out_norm.{k}": v for k, v in reference.va_to_vat[2].state_dict().items()}})
    c["audio_va"].load_state_dict({f"inner.{k}": v for k, v in reference.aud_to_va.state_dict().items()})
    c["text_vt"].load_state_dict({f"mlp.0.{k}": v for k, v in reference.txt_to_vat.state_dict().items()})
    for module in (model, reference):
        module.train(mode == "train")
    g = torch.Generator().manual_seed(6)
    video = torch.randn(5, enc["video_tower"].width, generator=g)  # B,D
    audio = torch.randn(5, enc["audio_tower"].width, generator=g)  # B,D
    text = torch.randn(5, 2, enc["text_tower"].width, generator=g)  # B,K,D
    with torch.no_grad():
        expected = reference(video, audio, text)
        va = c["video_va"]({"input": {"pooled": video}})
        got = {"video_va": va["embedding"], "audio_va": c["audio_va"]({"input": {"pooled": audio}})["embedding"],
               "video_vt": c["video_vt"]({"input": {"embedding": va["embedding"]}})["embedding"],
               "text_vt": c["text_vt"]({"input": {"pooled": text}})["embedding"]}
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, atol=ATOL, rtol=RTOL, msg=name)


def test_nce_temperature_is_a_fixed_constant():
    """`temperature: 0.07, learn_temperature: false`: logits are cos / 0.07, no parameter, nothing in the state
    dict, and the loss's clamping after a step leaves it alone."""
    loaded = load_spec(SPEC, "tiny")
    model = build(loaded)
    head = model.components["va"]
    assert not list(head.parameters()) and not head.state_dict()
    g = torch.Generator().manual_seed(7)
    a, b = torch.randn(3, 8, generator=g), torch.randn(4, 8, generator=g)  # Ba,D; Bb,D
    out = head({"video": {"embedding": a}, "audio": {"embedding": b}})
    cos = torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).t()
    torch.testing.assert_close(out["logits_per_video"], cos / 0.07)
    trainer = Trainer(loaded, lr=1e-2)
    trainer.fit(synthetic_batch(loaded, 4, 0), 2, seed=0)
    assert trainer.model.components["va"].temperature.item() == pytest.approx(0.07)


MA_SPEC = SPEC.with_name("vatt_ma.yaml")


@pytest.mark.parametrize("variant", [None, "base", "large"])
def test_ma_count_matches_the_official_universal_vatt(variant):
    """VATT-MA: three `vatt` towers, the audio and text ones running the video tower's blocks (`share_stack`), count
    as the official UniversalVATT with the FAC bridge; the shared stack counts once, for the video tower."""
    with torch.device("meta"):
        reference = VATT.vatt_ma(variant or "medium")
    model = build(load_spec(MA_SPEC, variant), device="meta")
    counts = param_counts(model)
    assert counts["total"] == _count(reference)
    assert counts["total"] - counts["trainable"] == reference[0].raw["text"].weight.numel()
    c = model.components
    assert c["audio_tower"].layers is c["video_tower"].layers and c["text_tower"].norm is c["video_tower"].norm
    ma = reference[0]
    for modality in ("video", "audio", "text"):
        own = sum(_count(part[modality]) for part in (ma.raw, ma.pre_proj, ma.buckets, ma.pos_norm, ma.post_proj))
        own += ma.agg[modality].numel() + (_count(ma.layers) + _count(ma.final_norm) if modality == "video" else 0)
        assert counts["by_component"][f"{modality}_tower"] + counts["by_component"][f"{modality}_post"] == own


def _ma_weights(reference: VATT.UniversalVATT, modality: str, owner: bool) -> dict[str, torch.Tensor]:
    """One modality of the UniversalVATT rebuild under a `vatt` tower's names (the stack only for its owner)."""
    raw = reference.raw[modality].state_dict()
    ours = {f"{'embed' if modality == 'text' else 'project'}.{k}": v for k, v in raw.items()}
    ours |= {f"pre.0.{k}": v for k, v in reference.pre_proj[modality].state_dict().items()}
    ours |= {f"positions.{i}": e.weight for i, e in enumerate(reference.buckets[modality])}
    ours |= {f"position_norm.{k}": v for k, v in reference.pos_norm[modality].state_dict().items()}
    ours["agg"] = reference.agg[modality][None, None]
    if owner:
        for a, b in (("q", "attn.q"), ("k", "attn.k"), ("v", "attn.v"), ("o", "attn.out"), ("norm1", "attn_res.norm"),
                     ("wi", "ffn.fc1"), ("wo", "ffn.fc2"), ("norm2", "ffn_res.norm")):
            for i in range(len(reference.layers)):
                for p in ("weight", "bias"):
                    ours[f"layers.{i}.{b}.{p}"] = getattr(reference.layers[i], a).state_dict()[p]
        ours |= {f"norm.{k}": v for k, v in reference.final_norm.state_dict().items()}
    return ours


def test_tiny_ma_towers_equal_the_official_universal_vatt():
    """The tiny VATT-MA towers, given the rebuild's weights, reproduce its shared Transformer's states for video,
    audio and text (padding masked) and the pooled post-projections."""
    loaded = load_spec(MA_SPEC, "tiny")
    spec, model = loaded.spec, build(loaded).eval()
    enc, m = spec.encoders, spec.modalities
    (t, h, w), (seg,) = enc["video_tower"].patch, enc["audio_tower"].patch
    reference = VATT.UniversalVATT(
        enc["video_tower"].width, enc["video_tower"].layers, enc["video_tower"].heads, enc["video_tower"].ffn,
        spec.heads["video_post"].dim, (m["video"].channels, [t, h, w]),
        (m["video"].count // t, m["video"].height // h, m["video"].width // w), (m["audio"].dim, [seg]),
        m["audio"].length // seg, m["text"].vocab_size, enc["text_tower"].table.dim, m["text"].length).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_(0.0, 0.2)
    c = model.components
    for modality in ("video", "audio", "text"):
        missing, unexpected = c[f"{modality}_tower"].load_state_dict(
            _ma_weights(reference, modality, modality == "video"), strict=False)
        assert not unexpected and all(k.startswith(("layers.", "norm.")) for k in missing)  # the video tower's
        c[f"{modality}_post"].load_state_dict({f"mlp.0.{k}": v for k, v in reference.post_proj[modality].state_dict()
                                               .items()})
    g = torch.Generator().manual_seed(8)
    video = torch.randn(2, m["video"].count, m["video"].channels, m["video"].height, m["video"].width, generator=g)
    audio = torch.randn(2, m["audio"].length, m["audio"].dim, generator=g)  # B,L,1
    ids = torch.randint(1, m["text"].vocab_size, (2, m["text"].length), generator=g)  # B,S
    ids[0, 3:] = 0  # padding
    mask = (ids != 0).long()
    cases = {"video": ({"pixels": video}, (video.transpose(1, 2),)),
             "audio": ({"values": audio}, (audio.transpose(1, 2),)),
             "text": ({"ids": ids, "mask": mask}, (ids, mask))}
    with torch.no_grad():
        for modality, (ours_in, theirs_in) in cases.items():
            out = c[f"{modality}_tower"]({"input": ours_in})
            states, post = reference(modality, *theirs_in)
            rows = slice(None) if modality != "text" else slice(0, 4)  # the unpadded positions of text 0
            torch.testing.assert_close(out["sequence"][:, rows], states[:, rows], atol=ATOL, rtol=RTOL, msg=modality)
            got = c[f"{modality}_post"]({"input": {"pooled": out["pooled"]}})["embedding"]
            torch.testing.assert_close(got, post, atol=ATOL, rtol=RTOL, msg=modality)


def test_ma_fit_lowers_the_loss_of_the_tiny_variant():
    loaded = load_spec(MA_SPEC, "tiny")
    history = Trainer(loaded, lr=3e-3).fit(synthetic_batch(loaded, 8, 0), 30, seed=0)
    first, last = sum(history.losses[:3]) / 3, sum(history.losses[-3:]) / 3
    assert last < 0.9 * first, history.losses[::3]
