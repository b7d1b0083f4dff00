"""Flamingo (BOTH-03) in IDEFICS's reproduction: the default and IDEFICS-9B counts equal
transformers.IdeficsForVisionText2Text built on the meta device; the tiny spec loads an IdeficsForVisionText2Text
checkpoint (random weights, save_pretrained) through its `weights:` layouts and computes its logits on an
interleaved two-image prompt; the image-causal mask and the zero-initialised gates behave as the paper says; the
`media` + `decoder_step` graphs (KV cache, media computed once) generate on ONNX Runtime as eager; and the tiny
variant trains."""

from __future__ import annotations

import math
from pathlib import Path

import nfnet_references as NF
import numpy as np
import pytest
import torch
import yaml
from flamingo_references import DEFAULT, IDEFICS_9B, IDEFICS_9B_SETS, idefics
from hf_reference import PARITY_ATOL, randomize
from references import PaperSize
from safetensors.torch import save_file

from mmspec import api, cli
from mmspec.blocks.flamingo import image_causal
from mmspec.errors import UsageError
from mmspec.importers.hf import import_hf, write_spec
from mmspec.runtime import greedy
from mmspec.runtime.decoding import FullDecoder, Pipeline
from mmspec.train.data import mixture_batches
from mmspec.train.trainer import Trainer

FLAMINGO = Path(__file__).resolve().parents[2] / "specs" / "flamingo.yaml"
IMAGE = 31
TINY = {  # IdeficsForVisionText2Text at the tiny variant's sizes: 30 + 2 tokens, the second added one is <image>
    "vocab_size": 30, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2,
    "cross_layer_interval": 2,
    "vision_config": {"embed_dim": 16, "image_size": 16, "patch_size": 8, "intermediate_size": 32,
                      "num_hidden_layers": 1, "num_attention_heads": 2},
    "perceiver_config": {"use_resampler": True, "resampler_depth": 2, "resampler_n_heads": 2,
                         "resampler_head_dim": 8, "resampler_n_latents": 4},
}
def _prompt(batch: int = 2) -> torch.Tensor:
    """Interleaved ids: text, <image>, text, <image>, text (two images per example)."""
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(2, 30, (batch, 9), generator=g)
    ids[:, 2], ids[:, 5] = IMAGE, IMAGE
    return ids


def _image_attention_mask(ids: torch.Tensor, images: int) -> torch.Tensor:
    """IDEFICS's image_attention_mask [B, T, M] as its processor builds it: a token attends to the last image
    before it."""
    last = (ids == IMAGE).long().cumsum(1)  # B,T
    return (last[:, :, None] == torch.arange(1, images + 1)[None, None]).long()


def test_default_and_idefics_9b_counts_equal_transformers():
    with torch.device("meta"):
        default = sum(p.numel() for p in idefics(DEFAULT).parameters())
        nine_b = sum(p.numel() for p in idefics(IDEFICS_9B).parameters())
    assert api.param_counts(api.build(api.load_spec(FLAMINGO), device="meta"))["total"] == default
    loaded = api.load_spec(FLAMINGO, sets=IDEFICS_9B_SETS, budget=None)
    assert api.param_counts(api.build(loaded, device="meta"))["total"] == nine_b


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    """(IdeficsForVisionText2Text with random weights and open gates, the tiny spec's model loaded from its
    save_pretrained checkpoint through the spec's `weights:` layouts, pixels, the checkpoint directory)."""
    torch.manual_seed(0)
    reference = randomize(idefics(TINY)).eval()
    with torch.no_grad():
        for name, p in reference.named_parameters():
            if "alpha" in name:
                p.fill_(0.7)  # open the gates, so the media matter
    ckpt = tmp_path_factory.mktemp("idefics_tiny") / "ckpt"
    reference.save_pretrained(ckpt)
    model = api.build(api.load_spec(FLAMINGO, "tiny"), weights=ckpt).eval()
    pixels = torch.randn(2, 2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    return reference, model, pixels, ckpt


def test_tiny_computes_idefics_logits(tiny_pair):
    reference, model, pixels, _ = tiny_pair
    ids = _prompt()
    with torch.no_grad():
        expected = reference(input_ids=ids, pixel_values=pixels,
                             image_attention_mask=_image_attention_mask(ids, 2)).logits
        ours = dict(zip(model.output_names, model({"image": pixels, "text": ids}), strict=True))["lm"]
    assert (ours - expected).abs().max().item() <= PARITY_ATOL
    assert expected.std() > 1e-2


def test_import_hf_reproduces_transformers(tiny_pair, tmp_path):
    """`mmspec import hf` on the IdeficsForVisionText2Text checkpoint writes a spec whose `--weights` build
    computes the same logits."""
    reference, _, pixels, ckpt = tiny_pair
    tree, found = import_hf(ckpt)
    assert found == "IdeficsForVisionText2Text"
    assert tree["reference"]["implementation"] == "transformers.IdeficsForVisionText2Text"
    write_spec(tree, tmp_path / "idefics.yaml")
    model = api.build(api.load_spec(tmp_path / "idefics.yaml"), weights=ckpt).eval()
    assert model.weights_report["new"] == []
    ids = _prompt()
    with torch.no_grad():
        expected = reference(input_ids=ids, pixel_values=pixels,
                             image_attention_mask=_image_attention_mask(ids, 2)).logits
        ours = dict(zip(model.output_names, model({"image": pixels, "text": ids}), strict=True))["lm"]
    assert (ours - expected).abs().max().item() <= PARITY_ATOL


def test_image_causal_mask(tiny_pair):
    """Each token's cross-attention reads only the latents of the last <image> before it (none before the first;
    the last item for an <image> beyond the media, as a decoding step continues with its count); so the logits
    before the first <image> ignore the media, and changing the first image changes the tokens after it."""
    ids = torch.tensor([[4, 5, IMAGE, 6, IMAGE, 7, IMAGE, 8]])
    bias, gate = image_causal(ids, IMAGE, 2, 3)
    reads = (bias[0, 0] == 0).long()  # T,M*N
    expected = torch.zeros(8, 6, dtype=torch.long)
    expected[2:4, :3] = 1
    expected[4:, 3:] = 1
    assert torch.equal(reads, expected)
    assert gate[0, :, 0].tolist() == [0, 0, 1, 1, 1, 1, 1, 1]
    bias2, _ = image_causal(ids[:, 4:], IMAGE, 2, 3, before=torch.tensor([[1.0]]))  # a step after 1 <image>
    assert torch.equal(bias2, bias[:, :, 4:])

    _, model, pixels, _ = tiny_pair
    ids = _prompt()
    other = pixels.clone()
    other[:, 0] = torch.randn_like(other[:, 0])
    with torch.no_grad():
        a = dict(zip(model.output_names, model({"image": pixels, "text": ids}), strict=True))["lm"]
        b = dict(zip(model.output_names, model({"image": other, "text": ids}), strict=True))["lm"]
    torch.testing.assert_close(a[:, :2], b[:, :2], atol=0, rtol=0)  # before any image
    assert (a[:, 2:] - b[:, 2:]).abs().max() > 1e-4


def test_gates_start_closed():
    """At initialisation tanh(0) = 0: the media do not change the logits (the frozen LM's behaviour)."""
    model = api.build(api.load_spec(FLAMINGO, "tiny")).eval()
    ids = _prompt()
    pixels = torch.randn(2, 2, 3, 16, 16)
    with torch.no_grad():
        a = dict(zip(model.output_names, model({"image": pixels, "text": ids}), strict=True))["lm"]
        b = dict(zip(model.output_names, model({"image": -pixels, "text": ids}), strict=True))["lm"]
    torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.fixture(scope="module")
def tiny_graphs(tmp_path_factory, tiny_pair):
    """(ORT pipeline, the same graphs eager, the eager monolithic model), compiled from IDEFICS's checkpoint."""
    _, model, _, ckpt = tiny_pair
    out = tmp_path_factory.mktemp("flamingo_tiny")
    api.compile(FLAMINGO, out_dir=out, variant="tiny", weights=ckpt)
    ort = Pipeline.open(out)
    eager = Pipeline(ort.manifest, {name: api.eager_graph(model, name) for name in ort.graphs})
    return ort, eager, api.eager_graph(model), out


def test_tiny_generates_on_ort_as_eager(tiny_graphs, tiny_pair):
    """The media graph runs once; the step graph (KV cache, <image> count state) on ONNX Runtime, the same graphs
    eager and the monolithic model rerun on the whole sequence each step generate the same tokens."""
    ort, eager, full, _ = tiny_graphs
    inputs = {"image": tiny_pair[2].numpy()}
    prompt = _prompt().numpy()
    ours = greedy(ort.decoder(inputs), prompt, 8)
    np.testing.assert_array_equal(ours, greedy(eager.decoder(inputs), prompt, 8))
    np.testing.assert_array_equal(ours, greedy(FullDecoder(full, "text", "lm", inputs), prompt, 8))
    assert ours.shape[1] > prompt.shape[1]


def test_video_frames_are_resampled_together():
    """`frames`: a clip's frames (with their time embeddings) become one media item of `latents` tokens, which
    the text after its <image> token reads."""
    sets = ["modalities.image.count=3", "encoders.resampler.tokens=5", "encoders.resampler.frames=3",
            "encoders.resampler.time_embedding=true"]
    model = api.build(api.load_spec(FLAMINGO, "tiny", sets=sets)).eval()
    ids = torch.tensor([[4, IMAGE, 5, 6]])
    clip = torch.randn(1, 3, 3, 16, 16)
    with torch.no_grad():
        latents, logits = model({"image": clip, "text": ids})
        model.components["resampler"].resampler.time.normal_()
        latents2, _ = model({"image": clip, "text": ids})
    assert latents.shape == (1, 1, 4, 16) and logits.shape == (1, 4, 32)
    assert (latents - latents2).abs().max() > 1e-4


def test_mmspec_generate_decodes_an_interleaved_prompt(tiny_graphs, tiny_pair, capsys):
    """`mmspec generate` with the two images flattened on the command line prints what the pipeline decodes."""
    ort, _, _, build = tiny_graphs
    pixels = tiny_pair[2].numpy()
    prompt = _prompt().numpy()
    expected = greedy(ort.decoder({"image": pixels}), prompt, 6)
    args = [a for row in range(2) for a in ("--prompt", " ".join(map(str, prompt[row])),
                                            "--input", "image=" + " ".join(map(repr, pixels[row].ravel().tolist())))]
    with pytest.raises(SystemExit) as info:
        cli.main(["generate", str(build), *args, "--max-new-tokens", "6", "-q"])
    out, _ = capsys.readouterr()
    assert info.value.code == 0
    assert [list(map(int, line.split())) for line in out.strip().splitlines()] == expected.tolist()


def test_fit_lowers_the_loss_of_the_tiny_variant():
    loaded = api.load_spec(FLAMINGO, "tiny")
    history = Trainer(loaded, lr=1e-2).fit(mixture_batches(loaded, 4, 0), 20, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < 0.9 * first, history.losses[::3]
    assert set(history.objectives) == {f"{m}.lm_loss" for m in ("m3w", "align", "ltip", "vtp")}


def test_dataset_mixture_accumulates_the_weighted_gradient():
    """One step's gradient over the four datasets (one batch each, their own sizes) equals
    sum_m lambda_m * grad L_m, each L_m computed alone by hand; the reported total is sum_m lambda_m * L_m."""
    loaded = api.load_spec(FLAMINGO, "tiny")
    lambdas = {"m3w": 1.0, "align": 0.2, "ltip": 0.2, "vtp": 0.03}  # Appendix B.1.2
    assert {m: d.weight for m, d in loaded.spec.datasets.items()} == lambdas
    batches = mixture_batches(loaded, 3, 0)
    assert batches["m3w"].inputs["image"].shape[1] == 3 and batches["align"].inputs["text"].shape[1] == 8
    trainer = Trainer(loaded)
    for module in (trainer.model.components["lm"], trainer.model.components["resampler"]):
        with torch.no_grad():  # open the gates so the media reach the loss
            for name, p in module.named_parameters():
                if name.endswith("_gate"):
                    p.fill_(0.5)
    trainer.model.eval()
    prepared = {m: trainer.prepare(b, 0) for m, b in batches.items()}
    params = trainer.groups[0].params
    expected = [torch.zeros_like(p) for p in params]
    hand = {}
    for m, (clean, student) in prepared.items():
        loss = trainer.step_module(student.inputs, clean.inputs, student.targets, 0)["lm_loss"]
        hand[m] = loss.item()
        for e, g in zip(expected, torch.autograd.grad(loss, params, allow_unused=True), strict=True):
            if g is not None:
                e += lambdas[m] * g
    for p in params:
        p.grad = None
    losses = trainer.accumulate(prepared, 0)
    assert {m: losses[f"{m}.lm_loss"].item() for m in lambdas} == pytest.approx(hand, abs=1e-6)
    assert len({round(v, 4) for v in hand.values()}) == 4  # four different batches
    for p, e in zip(params, expected, strict=True):
        got = torch.zeros_like(p) if p.grad is None else p.grad
        torch.testing.assert_close(got, e, atol=1e-6, rtol=0)
    assert max(e.abs().max().item() for e in expected) > 1e-3


def test_vision_tower_and_lm_layers_are_frozen():
    model = api.build(api.load_spec(FLAMINGO, "tiny"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("components.vision.", "components.lm.layers.", "components.lm.norm."))
                   for n in trainable)
    assert "components.lm.embed.weight" not in trainable  # the LM's own token rows
    assert {"components.lm.xattn.0.attn_gate", "components.resampler.resampler.latents",
            "components.lm.added.weight", "components.lm.head.weight"} <= trainable


NFNET_TINY = {"widths": [16, 32, 32, 48], "depths": [1, 2, 1, 1], "group_width": 8}


def _nfnet_spec(tmp_path: Path, side: int, **cfg) -> Path:
    path = tmp_path / "nfnet.yaml"
    path.write_text(yaml.safe_dump({
        "mmspec": 1, "name": "nfnet", "outputs": ["vision"],
        "modalities": {"image": {"type": "image", "channels": 3, "height": side, "width": side}},
        "encoders": {"vision": {"type": "nfnet", "input": "image", **cfg}}}))
    return path


@pytest.mark.parametrize("variant", ["F0", "F6"])
def test_nfnet_counts_equal_the_official_code(tmp_path, variant):
    """The `nfnet` encoder at an F-series depth has the parameters of DeepMind's NFNet without its classifier
    (F6: 435,286,116, Flamingo's Table 5 '435M'; with the 1000-way classifier 438,359,116, the NFNet paper's
    438.4M)."""
    with torch.device("meta"):
        reference = sum(p.numel() for p in NF.nfnet(variant).parameters())
        classifier = sum(p.numel() for p in NF.nfnet(variant, 1000).parameters())
    loaded = api.load_spec(_nfnet_spec(tmp_path, 320, depths=NF.F_SERIES[variant]))
    assert api.param_counts(api.build(loaded, device="meta"))["total"] == reference
    assert reference + 3072 * 1000 + 1000 == classifier
    if variant == "F6":
        assert (reference, classifier) == (435_286_116, 438_359_116)


def test_nfnet_computes_the_official_features(tmp_path):
    """A small NFNet (random weights, open skip gains) copied into the `nfnet` encoder by name computes the
    official rebuild's final activations on 64 x 64 images: the grid, its row-major sequence and its mean."""
    torch.manual_seed(0)
    reference = NF.NFNet(NFNET_TINY["depths"], NFNET_TINY["widths"], None, group_size=8).eval()
    with torch.no_grad():
        for name, p in reference.named_parameters():
            if name.endswith(("skip_gain", "gain", "bias")):
                p.copy_(1 + 0.2 * torch.randn_like(p) if name.endswith("gain") else 0.1 * torch.randn_like(p))
    model = api.build(api.load_spec(_nfnet_spec(tmp_path, 64, **NFNET_TINY))).eval()
    ours = dict(model.components["vision"].net.named_parameters())
    theirs = dict(reference.named_parameters())
    renames = {"stem_conv0": "stem.0", "stem_conv1": "stem.2", "stem_conv2": "stem.4", "stem_conv3": "stem.6",
               "conv_shortcut": "shortcut", "se.fc0": "se.reduce", "se.fc1": "se.expand"}
    with torch.no_grad():
        for name, p in theirs.items():
            target = name.replace(".w", ".weight") if name.endswith(".w") else name
            for a, b in renames.items():
                target = target.replace(a, b)
            mine = ours.pop(target)
            mine.copy_(p.reshape(mine.shape))  # the SE's Linear weights are 1x1 convs here
    assert not ours  # every parameter came from the reference
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(pixels)  # B,96,2,2
        out = dict(zip(model.output_names, model({"image": pixels}), strict=True))
    assert expected.shape == (2, 96, 2, 2) and expected.std() > 1e-2
    assert (out["vision_features"] - expected).abs().max().item() <= 1e-5
    torch.testing.assert_close(out["vision_sequence"], expected.flatten(2).transpose(1, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(out["vision_pooled"], expected.mean((2, 3)), atol=1e-5, rtol=0)


PAPER = {  # Table 4: LM layers, width, heads, gated block every k-th layer; Table 5's printed total
    "flamingo_3b": (24, 2048, 16, 1, "3.2B"), "flamingo_9b": (40, 4096, 32, 4, "9.3B"),
    "flamingo_80b": (80, 8192, 64, 7, "80B"),
}


@pytest.mark.parametrize("variant", sorted(PAPER))
def test_paper_variants_count_tables_4_and_5(variant):
    """Flamingo-3B/9B/80B on the meta device: the vision tower is DeepMind's NFNet-F6 without its classifier
    (Table 5: 435M); the resampler is 6 layers of 1536 (Table 4; a 3072 -> 1536 input map); the LM and the gated
    blocks have Table 4's shapes, counted here layer by layer. The totals stay below Table 5's (see the spec's
    notes: the tables disagree, and Chinchilla's relative-position projections are not expressed)."""
    layers, d, heads, every, printed = PAPER[variant]
    loaded = api.load_spec(FLAMINGO, variant)
    counts = api.param_counts(api.build(loaded, device="meta"))
    with torch.device("meta"):
        nfnet_f6 = sum(p.numel() for p in NF.nfnet("F6").parameters())
    e, vocab = 1536, 32002
    resampler = 3072 * e + 64 * e + 6 * (3 * 2 * e + 4 * e * e + 2 * e * 4 * e) + 2 * e
    lm_layer = 2 * d + 4 * d * d + 2 * d * 4 * d  # two RMSNorms, q/k/v/out, GeLU MLP
    block = 2 * d + 2 * d * d + 2 * e * d + 2 * d * 4 * d + 2  # + k/v from the latents, two tanh gates
    lm = 2 * vocab * d + layers * lm_layer + math.ceil(layers / every) * block + d
    assert counts["by_component"] == {"vision": nfnet_f6, "resampler": resampler, "lm": lm, "lm_loss": 0}
    total = counts["total"]
    assert not PaperSize(printed, "Table 5").matches(total)  # the gap the spec's notes explain
    frozen = nfnet_f6 + layers * lm_layer + (vocab - 2) * d + d
    assert counts["trainable"] == total - frozen


def test_tiny_paper_variant_exports_generates_and_trains(tmp_path):
    """flamingo_3b's architecture at test size (NFNet tower, projected squared-ReLU resampler, GeLU-MLP LM with
    squared-ReLU gated blocks every 2nd of 3 layers): both graphs verify on ONNX Runtime, greedy decoding there
    equals eager, and the dataset mixture lowers the loss."""
    model = api.build(api.load_spec(FLAMINGO, "tiny_paper")).eval()
    with torch.no_grad():  # open the tanh gates and the NF blocks' skip gains, so the images matter
        for name, p in model.named_parameters():
            if name.endswith(("_gate", "skip_gain")):
                p.fill_(0.7)
    save_file({k: v.contiguous() for k, v in model.components.state_dict().items()}, tmp_path / "open.safetensors")
    api.compile(FLAMINGO, out_dir=tmp_path / "build", variant="tiny_paper", weights=tmp_path / "open.safetensors")
    ort = Pipeline.open(tmp_path / "build")
    eager = Pipeline(ort.manifest, {name: api.eager_graph(model, name) for name in ort.graphs})
    pixels = torch.randn(2, 2, 3, 64, 64, generator=torch.Generator().manual_seed(2)).numpy()
    prompt = _prompt().numpy()
    ours = greedy(ort.decoder({"image": pixels}), prompt, 6)
    np.testing.assert_array_equal(ours, greedy(eager.decoder({"image": pixels}), prompt, 6))
    full = FullDecoder(api.eager_graph(model), "text", "lm", {"image": pixels})
    np.testing.assert_array_equal(ours, greedy(full, prompt, 6))
    with torch.no_grad():
        a, b = (dict(zip(model.output_names, model({"image": torch.from_numpy(x), "text": _prompt()}), strict=True))
                ["lm"] for x in (pixels, -pixels))
    assert (a[:, 2:] - b[:, 2:]).abs().max() > 1e-4  # the images reach the logits after their <image>
    loaded = api.load_spec(FLAMINGO, "tiny_paper")
    history = Trainer(loaded, lr=1e-2).fit(mixture_batches(loaded, 4, 0), 15, seed=0)
    assert sum(history.losses[-3:]) / 3 < 0.9 * history.losses[0], history.losses[::3]


def test_dataset_sizes_are_checked_against_the_axes():
    for sizes, message in (("{media: 9}", "exceeds its maximum 3"), ("{frames: 2}", "not a dynamic axis")):
        loaded = api.load_spec(FLAMINGO, "tiny", sets=[f"datasets.vtp.sizes={sizes}"])
        with pytest.raises(UsageError, match=message):
            mixture_batches(loaded, 2, 0)
    loaded = api.load_spec(FLAMINGO, "tiny")
    with pytest.raises(UsageError, match="one batch per dataset"):
        Trainer(loaded).step(mixture_batches(loaded, 2, 0)["m3w"], 0, 1)
