"""AttnGAN (T2I-04) and DM-GAN (T2I-05): the specs' text encoder, generator stages, discriminators and DAMSM image
encoder equal the official networks rebuilt in tests/attngan_references.py, in parameter count (canonical birds
configurations) and, with the same weights, in their outputs (small configurations of the same shape rules, the
full Inception-v3): word and sentence features of padded captions (packed by their lengths), the three stages'
images with the word attention masked at the padding, the discriminators' conditional, unconditional and mismatched
logits, DAMSM's region features and image code; the `damsm` objective equals the official words_loss + sent_loss;
the `generate` graph takes noise, words, sentence and the caption mask only and equals eager on ONNX Runtime; `fit`
on the tiny variants lowers the discriminators' losses and the DAMSM term (in the generator's update, the image
encoder frozen) while the generator stages move. specs/damsm.yaml, the encoders' DAMSM pretraining, counts as the
official encoders and trains its text encoder and projections."""

from __future__ import annotations

import json
from pathlib import Path

import attngan_references as ATG
import onnxruntime as ort
import pytest
import torch

from mmspec import api
from mmspec.components.objectives.damsm.loss import DAMSMLoss
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPECS = Path(__file__).resolve().parents[2] / "specs"
ATOL, RTOL = 1e-5, 1e-4  # the same weights in both networks, fp32 on CPU
REFERENCES = {"attngan": ATG.attngan, "dmgan": ATG.dmgan}
GENERATOR = ("ca", "stage1", "stage2", "stage3")
# Small configurations: ngf 2 (the first stage at 32 x 4 x 4), ndf 2, 6-d words and sentence, 5 words of 20.
SMALL = {
    "attngan": ["heads.stage1.widths=[32, 16, 8, 4, 2]", "heads.d1.widths=[2, 4, 8, 16]",
                "heads.d2.widths=[2, 4, 8, 16, 32]", "heads.d2.tail=[16]", "heads.d3.widths=[2, 4, 8, 16, 32, 64]",
                "heads.d3.tail=[32, 16]"],
}
SMALL["dmgan"] = SMALL["attngan"]
COMMON = ["modalities.noise.dim=4", "modalities.caption.vocab_size=20", "modalities.caption.length=5",
          "encoders.text.embed.dim=7", "encoders.text.hidden=3", "heads.ca.dim=5", "encoders.image_encoder.resize=75",
          "encoders.image_encoder.divisor=16", "heads.damsm_regions.dim=6", "heads.damsm_image.dim=6"]


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", REFERENCES)
def test_canonical_sizes_equal_the_official_networks(name):
    model = api.build(api.load_spec(SPECS / f"{name}.yaml", budget=None), device="meta")
    with torch.device("meta"):
        text, g, d1, d2, d3, image = REFERENCES[name]()
    c = model.components
    assert _count(c["text"]) == _count(text)
    assert sum(_count(c[n]) for n in ("image_encoder", "damsm_regions", "damsm_image")) == _count(image)
    assert not any(p.requires_grad for n in ("text", "image_encoder", "damsm_regions", "damsm_image")
                   for p in c[n].parameters())  # pretrained by DAMSM and frozen
    assert sum(_count(c[n]) for n in GENERATOR) == _count(g)
    assert [_count(c[n]) for n in ("d1", "d2", "d3")] == [_count(d1), _count(d2), _count(d3)]


def _copy_in_order(ours: list[torch.nn.Module], theirs: torch.nn.Module) -> None:
    """Random values (positive running variances) into `ours`, copied tensor by tensor into `theirs`, whose tensors
    come in the same order; a 1x1 conv's weight takes a Linear's of the same numbers."""
    a = [kv for m in ours for kv in m.state_dict().items()]
    b = list(theirs.state_dict().values())
    assert [x.numel() for _, x in a] == [y.numel() for y in b]
    with torch.no_grad():
        for (key, x), y in zip(a, b, strict=True):
            if x.dtype.is_floating_point:
                x.copy_(torch.rand_like(x) + 0.5 if key.endswith("running_var") else 0.3 * torch.randn_like(x))
            y.copy_(x.reshape(y.shape))


@pytest.mark.parametrize("name", REFERENCES)
def test_outputs_equal_the_official_networks(name):
    loaded = api.load_spec(SPECS / f"{name}.yaml", sets=COMMON + SMALL[name])
    model = api.build(loaded).eval()
    c = model.components
    text, g, d1, d2, d3 = (ATG.RNNEncoder(20, 7, 6),
                           ATG.GNet(ngf=2, nef=6, ncf=5, nz=4, memory=name == "dmgan"),
                           *(ATG.DNet(2, 6, stage, spectral=name == "dmgan") for stage in (1, 2, 3)))
    _copy_in_order([c["text"]], text)
    _copy_in_order([c[n] for n in GENERATOR], g)
    for ours, theirs in ((c["d1"], d1), (c["d2"], d2), (c["d3"], d3)):
        _copy_in_order([ours], theirs)
    for m in (text, g, d1, d2, d3):
        m.eval()
    torch.manual_seed(0)
    lengths = torch.tensor([3, 5])  # the first caption padded with ids 0
    ids, z = torch.randint(1, 20, (2, 5)), torch.randn(2, 4)  # B,S / B,nz
    mask = (torch.arange(5)[None] < lengths[:, None]).long()  # B,S
    ids = ids * mask
    with torch.no_grad():
        enc = c["text"]({"input": {"ids": ids, "mask": mask}})
        words, sent = text(ids, lengths)  # B,E,S / B,E
        assert words[0, :, 3:].abs().max() == 0 and words.abs().max() > 0.1
        torch.testing.assert_close(enc["sequence"].transpose(1, 2), words, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(enc["final"], sent, atol=ATOL, rtol=RTOL)
        code = c["ca"]({"input": {"final": sent}})["code"]
        h1 = c["stage1"]({"input": {"noise": z}, "condition": {"code": code}})
        h2 = c["stage2"]({"input": h1, "words": {"sequence": enc["sequence"]}, "mask": {"mask": mask}})
        h3 = c["stage3"]({"input": h2, "words": {"sequence": enc["sequence"]}, "mask": {"mask": mask}})
        images = g(z, sent, words, ids == 0)  # the official mask: captions == 0
        for ours, theirs in zip((h1, h2, h3), images, strict=True):
            assert ours["image"].abs().max() > 0.1
            torch.testing.assert_close(ours["image"], theirs, atol=ATOL, rtol=RTOL)
        assert h2["attention"].shape == (2, 5, 64, 64) and h3["image"].shape == (2, 3, 256, 256)
        torch.testing.assert_close(h2["attention"].sum(1), torch.ones(2, 64, 64))  # weights over the words
        assert h2["attention"][0, 3:].abs().max() == 0  # none on the padding
        for d, ref, stage in ((c["d1"], d1, h1), (c["d2"], d2, h2), (c["d3"], d3, h3)):
            real = torch.randn_like(stage["image"])  # B,3,S,S
            out = d({"real": {"pixels": real}, "fake": {"image": stage["image"]}, "condition": {"final": sent}})
            cond, uncond = ref(real, sent)
            torch.testing.assert_close(out["real"], cond, atol=ATOL, rtol=RTOL)
            torch.testing.assert_close(out["real_uncond"], uncond, atol=ATOL, rtol=RTOL)
            torch.testing.assert_close(out["fake"], ref(stage["image"], sent)[0], atol=ATOL, rtol=RTOL)
            torch.testing.assert_close(out["mismatched"], ref(real, sent.roll(1, 0))[0], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("name", REFERENCES)
def test_padded_words_change_nothing(name):
    """Whatever the ids at the padding, the word features (0 there), the sentence and the images are the same."""
    loaded = api.load_spec(SPECS / f"{name}.yaml", "tiny")
    c = api.build(loaded).eval().components
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 0]])  # B,S
    ids, z = torch.randint(1, 20, (2, 5)), torch.randn(2, 4)  # B,S / B,nz
    outs = []
    with torch.no_grad():
        for pad in (ids, torch.randint(1, 20, (2, 5))):
            caption = torch.where(mask > 0, ids, pad)  # B,S: other words at the padding
            enc = c["text"]({"input": {"ids": caption, "mask": mask}})
            code = c["ca"]({"input": {"final": enc["final"]}})["code"]
            h = c["stage1"]({"input": {"noise": z}, "condition": {"code": code}})
            for stage in ("stage2", "stage3"):
                h = c[stage]({"input": h, "words": {"sequence": enc["sequence"]}, "mask": {"mask": enc["mask"]}})
            outs.append((enc["sequence"], enc["final"], h["image"]))
    assert outs[0][0][0, 2:].abs().max() == 0
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_damsm_image_encoder_equals_the_official_cnn_encoder():
    """specs/attngan.yaml's image_encoder (inception_v3) + damsm_regions + damsm_image with CNN_ENCODER's weights: the
    17 x 17 region features and the image code of a 256 x 256 image (resized to 299 by both)."""
    loaded = api.load_spec(SPECS / "attngan.yaml", budget=None)
    model = api.build(loaded).eval()
    c = model.components
    ref = ATG.CNNEncoder().eval()
    torch.manual_seed(0)
    ours = [kv for m in (c["image_encoder"], c["damsm_regions"], c["damsm_image"]) for kv in m.state_dict().items()]
    with torch.no_grad():  # torch's default conv init and BatchNorm statistics near 1 keep 100 layers at scale
        for (key, x), y in zip(ours, ref.state_dict().values(), strict=True):
            if key.endswith("running_var"):
                x.copy_(torch.rand_like(x) + 0.5)
            elif key.endswith(("running_mean", "bn.bias")):
                x.copy_(0.1 * torch.randn_like(x))
            elif key.endswith("bn.weight"):
                x.copy_(1 + 0.1 * torch.randn_like(x))
            y.copy_(x.reshape(y.shape))
    image = torch.rand(2, 3, 256, 256) * 2 - 1  # B,3,H,W in [-1, 1], as the generator's tanh
    with torch.no_grad():
        out = c["image_encoder"]({"input": {"image": image}})
        regions = c["damsm_regions"]({"input": {"regions": out["regions"]}})["embedding"]  # B,289,256
        code = c["damsm_image"]({"input": {"pooled": out["pooled"]}})["embedding"]  # B,256
        features, cnn_code = ref(image)  # B,256,17,17 / B,256
    assert out["regions"].shape == (2, 289, 768) and out["pooled"].shape == (2, 2048)
    assert 0.05 < features.abs().max() < 10 and 0.05 < cnn_code.abs().max() < 10
    torch.testing.assert_close(regions, features.flatten(2).transpose(1, 2), atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(code, cnn_code, atol=ATOL, rtol=RTOL)


def test_damsm_loss_equals_the_official_words_and_sentence_losses():
    """The `damsm` objective on random features of padded captions = words_loss + sent_loss of miscc/losses.py
    (each caption cut to its length there, masked here), gamma1 4, gamma2 5, gamma3 10; without a mask; with
    class ids (the other examples of a class are no negatives)."""
    torch.manual_seed(0)
    lengths = [3, 5, 1, 4]
    regions, image = torch.randn(4, 9, 6), torch.randn(4, 6)  # B,R,D / B,D
    words, sentence = torch.randn(4, 5, 6), torch.randn(4, 6)  # B,S,D / B,D
    mask = (torch.arange(5)[None] < torch.tensor(lengths)[:, None]).long()  # B,S
    loss = DAMSMLoss(4.0, 5.0, 10.0, 1e-8, {"words": "sequence", "sentence": "final", "mask": "mask"})
    ours = loss({"regions": {"embedding": regions}, "image": {"embedding": image}, "words": {"sequence": words},
                 "sentence": {"final": sentence}, "mask": {"mask": mask}}, {})
    official = ATG.words_loss(regions.transpose(1, 2).reshape(4, 6, 3, 3), words.transpose(1, 2), lengths) \
        + ATG.sent_loss(image, sentence)
    assert official > 1.0
    torch.testing.assert_close(ours, official, atol=1e-5, rtol=1e-5)
    full = loss({"regions": {"e": regions}, "image": {"e": image}, "words": {"sequence": words},
                 "sentence": {"final": sentence}}, {})  # no mask: every position a word
    official = ATG.words_loss(regions.transpose(1, 2).reshape(4, 6, 3, 3), words.transpose(1, 2), [5] * 4) \
        + ATG.sent_loss(image, sentence)
    torch.testing.assert_close(full, official, atol=1e-5, rtol=1e-5)
    classes = torch.tensor([7, 2, 7, 7])  # examples 0, 2 and 3 are of one class: no negatives of each other
    ours = loss({"regions": {"e": regions}, "image": {"e": image}, "words": {"sequence": words},
                 "sentence": {"final": sentence}, "mask": {"mask": mask}}, {"classes": classes})
    official = ATG.words_loss(regions.transpose(1, 2).reshape(4, 6, 3, 3), words.transpose(1, 2), lengths,
                              classes.tolist()) + ATG.sent_loss(image, sentence, classes.tolist())
    assert abs(official - full) > 0.1
    torch.testing.assert_close(ours, official, atol=1e-5, rtol=1e-5)


def test_dynamic_memory_gates_depend_on_the_words():
    """DM-GAN's refinement reads the words through the memory: other words, other features; AttnGAN's stage has no
    memory parameters (the word projection only)."""
    loaded = api.load_spec(SPECS / "dmgan.yaml", "tiny")
    stage = api.build(loaded).eval().components["stage2"]
    torch.manual_seed(0)
    h, w = torch.randn(2, 4, 8, 8), torch.randn(2, 5, 6)  # B,C,h,w / B,S,E
    with torch.no_grad():
        a = stage({"input": {"features": h}, "words": {"sequence": w}})
        b = stage({"input": {"features": h}, "words": {"sequence": w.flip(0)}})
    assert not torch.allclose(a["features"], b["features"])
    attn = api.build(api.load_spec(SPECS / "attngan.yaml", "tiny")).components["stage2"]
    assert [n for n, _ in attn.net.refine.named_parameters()] == ["proj.weight"]


@pytest.mark.parametrize("name", REFERENCES)
def test_generate_graph_equals_eager_and_fit_trains(name, tiny_export):
    out, _ = tiny_export(SPECS / f"{name}.yaml")
    session = ort.InferenceSession(str(out / f"{name}-tiny.generate.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == ["noise", "text_sequence", "text_final", "text_mask"]  # no image, no discriminator, no DAMSM
    manifest = json.loads((out / f"{name}-tiny.manifest.json").read_text())
    assert {(c["from"]["output"], c["to"]["input"]) for c in manifest["connections"]} == {
        (n, n) for n in names[1:]}  # the text encoder's graph feeds words, sentence and mask
    loaded = api.load_spec(SPECS / f"{name}.yaml", "tiny")
    model = api.build(loaded).eval()
    torch.manual_seed(0)
    z, ids = torch.randn(2, 4), torch.randint(0, 20, (2, 5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])  # B,S
    with torch.no_grad():
        enc = model.components["text"]({"input": {"ids": ids, "mask": mask}})
        code = model.components["ca"]({"input": {"final": enc["final"]}})["code"]
        h = model.components["stage1"]({"input": {"noise": z}, "condition": {"code": code}})
        for stage in ("stage2", "stage3"):
            h = model.components[stage]({"input": h, "words": {"sequence": enc["sequence"]}, "mask": {"mask": mask}})
    feeds = dict(zip(names, (z.numpy(), enc["sequence"].numpy(), enc["final"].numpy(), mask.numpy()), strict=True))
    image = session.run(None, feeds)[-1]  # the 32x32 image of the third stage
    torch.testing.assert_close(torch.from_numpy(image), h["image"], atol=1e-4, rtol=1e-3)

    trainer = Trainer(loaded, lr=3e-3)
    assert {g.key for g in trainer.groups} == {("d1",), ("d2",), ("d3",), GENERATOR}
    assert "damsm" in next(g for g in trainer.groups if g.key == GENERATOR).losses  # lambda 5 times DAMSM
    before = {n: p.detach().clone() for n, p in trainer.model.components["stage3"].named_parameters()}
    history = trainer.fit(synthetic_batch(loaded, 4, 0), 32, seed=0).objectives
    for loss in ("d1_loss", "d2_loss", "d3_loss", "damsm"):  # the KL gives way to DAMSM's pull on the CA code
        assert sum(history[loss][-3:]) / 3 < 0.95 * history[loss][0], (loss, history[loss][::4])
    after = dict(trainer.model.components["stage3"].named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before)


def test_damsm_pretraining_trains_the_text_encoder_and_projections():
    """specs/damsm.yaml (pretrain_DAMSM.py): RNN_ENCODER + CNN_ENCODER in count; the Inception-v3 is frozen, the text
    encoder and the two projections train, and `fit` on the tiny variant lowers the DAMSM loss."""
    model = api.build(api.load_spec(SPECS / "damsm.yaml", budget=None), device="meta")
    with torch.device("meta"):
        text, image = ATG.RNNEncoder(), ATG.CNNEncoder()
    c = model.components
    assert _count(c["text"]) == _count(text)
    assert sum(_count(c[n]) for n in ("image_encoder", "damsm_regions", "damsm_image")) == _count(image)
    loaded = api.load_spec(SPECS / "damsm.yaml", "tiny")
    trainer = Trainer(loaded, lr=3e-3)
    (group,) = trainer.groups
    parts = trainer.model.components
    trained = {id(p) for n in ("text", "damsm_regions", "damsm_image") for p in parts[n].parameters()}
    assert {id(p) for p in group.params} == trained
    history = trainer.fit(synthetic_batch(loaded, 4, 0), 12, seed=0).objectives["damsm"]
    assert sum(history[-3:]) / 3 < 0.8 * history[0], history[::3]
