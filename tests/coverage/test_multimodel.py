"""MultiModel (MP-02, specs/multimodel.yaml text -> text, specs/multimodel_imagenet.yaml image -> class): the counts
(total and active per token) equal tensor2tensor's variables rebuilt in tests/multimodel_references.py, the tiny
specs compute the reference forward (written from the TF code) with the same weights, the encoder + decoder-step
graphs decode on ONNX Runtime as eager (greedy and beam search), the mixture of experts adds noise only while
training, and the tiny variants train."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from multimodel_references import MultiModelReference
from references import REFERENCES, key

from mmspec import api
from mmspec.runtime import beam_search, greedy
from mmspec.runtime.decoding import FullDecoder, Pipeline
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPEC = Path(__file__).resolve().parents[2] / "specs" / "multimodel.yaml"
IMAGENET = SPEC.with_name("multimodel_imagenet.yaml")
ATOL, RTOL = 1e-5, 1e-4


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("spec", "variant"), [(SPEC, None), (SPEC, "t2t_tiny"), (IMAGENET, None)],
                         ids=["base", "t2t_tiny", "imagenet"])
def test_counts_equal_the_tensor2tensor_variables(spec, variant):
    """Total, and active per token: all but the unrouted experts (moe_k of them are used) and W_noise."""
    loaded = api.load_spec(spec, variant)
    with torch.device("meta"):
        ref = REFERENCES[key(loaded.spec.name, variant)]()
    total = api.param_counts(api.build(loaded, device="meta"))["total"]
    assert total == _count(ref)
    moes = [layer["moe"] for layer in ref.enc] + [layer["ffn"] for layer in ref.dec or () if "w_gate" in layer["ffn"]]
    idle = sum(m["w_noise"].numel() + (m["w_0"].shape[0] - 2) * (m["w_0"][0].numel() + m["w_1"][0].numel())
               for m in moes)
    assert sum(c.idle_params() for c in loaded.spec.encoders.values()) == idle


def _reference(**image) -> MultiModelReference:
    torch.manual_seed(0)
    ref = MultiModelReference(vocab=40, hidden=16, layers=2, filter_size=24, kernel=3, large_kernel=5, heads=2,
                              experts=4, moe_layers=(1,), dilation=2, timescales=4, spaces=4, moe_hidden=20, **image)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(1.0 + 0.1 * torch.randn(p.shape) if name.endswith("scale") else 0.3 * torch.randn(p.shape))
    return ref.eval()


def _norm(mine, v) -> None:
    mine.weight.copy_(v["layer_norm_scale"])
    mine.bias.copy_(v["layer_norm_bias"])


def _moe(mine, v) -> None:
    mine.moe.router.weight.copy_(v["w_gate"].t())
    mine.moe.noise.weight.copy_(v["w_noise"].t())
    mine.moe.fc1.copy_(v["w_0"])
    mine.moe.fc2.copy_(v["w_1"])


def _copy_encoder(ref: MultiModelReference, enc) -> None:
    """TF layouts -> the spec's modules: kernels [k, 1, C, 1] -> [C, 1, k], [3, 3, C, D] -> [D, C, 3, 3],
    matrices [in, out] -> [out, in]."""
    norm, moe = _norm, _moe
    if hasattr(ref, "project_to_hidden"):
        enc.embed.conv.weight.copy_(ref.project_to_hidden["kernel"].permute(3, 2, 0, 1))
        norm(enc.embed.norm, ref.project_to_hidden)
    else:
        enc.embed.weight.copy_(ref.input_emb)
    for mine, theirs in zip(enc.layers, ref.enc, strict=True):
        for block, steps in ((mine.conv1, theirs["residual1"]), (mine.conv2, theirs["residual2"])):
            for conv, n, step in zip(block.convs, block.norms, steps, strict=True):
                conv.depthwise.weight.copy_(step["conv"]["depthwise_kernel"][:, 0, :, 0].t()[:, None, :])
                conv.pointwise.weight.copy_(step["conv"]["pointwise_kernel"][0, 0].t())
                norm(n, step["norm"])
        moe(mine.moe, theirs["moe"])
        norm(mine.norm, theirs["layer_norm"])


def _copy(ref: MultiModelReference, model) -> None:
    enc, dec = model.components["encoder"], model.components["decoder"]
    norm, moe = _norm, _moe
    _copy_encoder(ref, enc)
    dec.embed.weight.copy_(ref.symbols["target_emb"])
    dec.out.weight.copy_(ref.symbols["softmax"])
    dec.space.weight.copy_(ref.target_space_embedding)
    for mine, theirs in zip(dec.layers, ref.dec, strict=True):
        for attn, v in ((mine.attn, theirs["decoder_self_attention"]), (mine.cross_attn, theirs["encdec_attention"])):
            for proj, name in ((attn.q, "q"), (attn.k, "k"), (attn.v, "v"), (attn.out, "output_transform")):
                proj.weight.copy_(v[name].t())
        norm(mine.attn_norm, theirs["layer_norm_1"])
        norm(mine.ffn_norm, theirs["layer_norm_2"])
        ffn = theirs["ffn"]
        if "w_gate" in ffn:
            moe(mine.ffn, ffn)
        else:
            mine.ffn.fc1.weight.copy_(ffn["conv1_kernel"][0, 0].t())
            mine.ffn.fc1.bias.copy_(ffn["conv1_bias"])
            mine.ffn.fc2.weight.copy_(ffn["conv2_kernel"][0, 0].t())
            mine.ffn.fc2.bias.copy_(ffn["conv2_bias"])


def test_tiny_computes_the_tensor2tensor_forward():
    """Separable conv steps under the padding mask, top-2 experts beside them, summed attentions, the target-space
    embedding at position 0: the tiny spec's logits equal the reference equations' with the same weights."""
    ref = _reference()
    model = api.build(api.load_spec(SPEC, "tiny")).eval()
    g = torch.Generator().manual_seed(1)
    text = torch.randint(1, 40, (3, 7), generator=g)
    text[1, 4:] = 0  # padding
    target = torch.randint(1, 40, (3, 5), generator=g)
    target[:, 0] = torch.tensor([0, 3, 2])  # the target-space ids
    with torch.no_grad():
        _copy(ref, model)
        expected = ref(text, target)
        outs = dict(zip(model.output_names, model({"text": text, "text_mask": (text != 0).long(),
                                                    "target": target}), strict=True))
    torch.testing.assert_close(outs["decoder_logits"], expected, atol=ATOL, rtol=RTOL)
    assert expected.std() > 0.1


def test_tiny_imagenet_computes_the_tensor2tensor_forward():
    """The image net (3 x 3 conv, LayerNorm, positions row by row), the encoder, the class-label mean + dense."""
    ref = _reference(image_channels=3, classes=10)
    model = api.build(api.load_spec(IMAGENET, "tiny")).eval()
    pixels = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        _copy_encoder(ref, model.components["encoder"])
        head = model.components["classes"]
        linear = next(m for m in head.modules() if isinstance(m, torch.nn.Linear))
        linear.weight.copy_(ref.class_label["kernel"].t())
        linear.bias.copy_(ref.class_label["bias"])
        expected = ref(pixels)
        (ours,) = model({"image": pixels})
    torch.testing.assert_close(ours, expected, atol=ATOL, rtol=RTOL)
    assert expected.std() > 0.1


def test_noise_acts_only_while_training():
    model = api.build(api.load_spec(SPEC, "tiny"))
    inputs = {"text": torch.randint(1, 40, (2, 6)), "text_mask": torch.ones(2, 6, dtype=torch.long),
              "target": torch.randint(1, 40, (2, 4))}
    with torch.no_grad():
        model.components["encoder"].layers[0].moe.moe.noise.weight.normal_()
        train = [model.train()(inputs)[0] for _ in range(2)]
        evaluation = [model.eval()(inputs)[0] for _ in range(2)]
    assert not torch.equal(*train)
    assert torch.equal(*evaluation)


@pytest.fixture(scope="module")
def tiny(tiny_export):
    """(ORT pipeline, the same graphs eager, the eager monolithic model) of the tiny variant."""
    out, _ = tiny_export(SPEC)
    ort = Pipeline.open(out)
    model = api.build(api.load_spec(SPEC, "tiny"))
    eager = Pipeline(ort.manifest, {name: api.eager_graph(model, name) for name in ort.graphs})
    return ort, eager, api.eager_graph(model)


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_tiny_decodes_on_ort_as_eager(tiny, strategy):
    """Step graphs (self-attention KV cache, encoder sequence fed whole) on ONNX Runtime, the same graphs eager,
    and the monolithic model rerun on the whole target each step give the same outputs."""
    ort, eager, full = tiny
    rng = np.random.default_rng(1)
    mask = np.ones((2, 6), np.int64)
    mask[1, 4:] = 0
    inputs = {"text": rng.integers(1, 40, (2, 6)).astype(np.int64) * mask, "text_mask": mask}
    start = np.array([[1], [2]], np.int64)  # target-space ids
    run = {"greedy": lambda d: greedy(d, start, 10),
           "beam": lambda d: beam_search(d, start, 10, beams=3, eos_id=1)}[strategy]
    ours = run(ort.decoder(inputs))
    np.testing.assert_array_equal(ours, run(eager.decoder(inputs)))
    np.testing.assert_array_equal(ours, run(FullDecoder(full, "target", "decoder_logits", inputs)))
    assert ours.shape[1] > 1


@pytest.mark.parametrize("spec", [SPEC, IMAGENET], ids=["text", "imagenet"])
def test_fit_lowers_the_loss_of_the_tiny_variant(spec):
    loaded = api.load_spec(spec, "tiny")
    history = Trainer(loaded, lr=1e-2).fit(synthetic_batch(loaded, 4, 0), 20, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < 0.9 * first, history.losses[::3]
