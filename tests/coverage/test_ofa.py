"""MP-04 OFA (specs/ofa.yaml): parameter parity of OFA-Tiny/Medium/Base/Large/Huge with the torch rebuild of the
official model (tests/ofa_references.py) on the meta device; the tiny variant's encoder states and logits equal the
rebuild holding the same weights; one-token decoding steps with a KV cache equal the full decoder; greedy and
beam decoding with the compiled encoder and KV-cache step graphs on ONNX Runtime equal eager; `fit` lowers the
loss."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hf_reference import randomize
from ofa_references import SIZES, OFAConfig, OFAModel, ResNet

from mmspec import api
from mmspec.blocks.attention import KVCache
from mmspec.cli import run
from mmspec.errors import SpecError
from mmspec.runtime import ConstrainedDecoder, TokenRange, Trie, beam_search, greedy
from mmspec.runtime.decoding import FullDecoder, Pipeline

OFA = Path(__file__).resolve().parents[2] / "specs" / "ofa.yaml"
ATOL, RTOL = 1e-5, 1e-4
TINY = OFAConfig(embed_dim=16, ffn_dim=32, encoder_layers=2, decoder_layers=2, heads=2, resnet_layers=(1, 1, 1),
                 vocab=64, max_positions=16, token_bucket_size=8, image_bucket_size=3, code_image_size=16)
"""The reference configuration of the spec's tiny variant (its ResNet: stem 4, planes 2/3/4; a 2 x 2 code window)."""

_NAMES = (  # our tensor names -> the official ones (order matters: longer patterns first)
    ("type_embed.", "type_embedding."), ("embed_norm.", "layernorm_embedding."),
    ("patch_norm.", "patch_layernorm_embedding."), ("code_norm.", "code_layernorm_embedding."),
    ("positions.image_embed.", "embed_image_positions."), ("positions.image_norm.", "image_pos_ln."),
    ("positions.embed.", "embed_positions."), ("positions.norm.", "pos_ln."),
    ("self_position_bias.q.", "self_pos_q_linear."), ("self_position_bias.k.", "self_pos_k_linear."),
    ("cross_position_bias.q.", "cross_pos_q_linear."), ("cross_position_bias.k.", "cross_pos_k_linear."),
    ("position_bias.q.", "pos_q_linear."), ("position_bias.k.", "pos_k_linear."),
    ("token_relative.", "token_rel_pos_table_list."), ("image_relative.", "image_rel_pos_table_list."),
    ("final_norm.", "layer_norm."), ("embed.", "embed_tokens."),
)
_LAYER = (
    ("attn_norm.", "self_attn_layer_norm."), ("cross_norm.", "encoder_attn_layer_norm."),
    ("cross_out_norm.", "cross_attn_ln."), ("ffn_inner_norm.", "ffn_layernorm."), ("ffn_norm.", "final_layer_norm."),
    ("cross_attn.", "encoder_attn."), ("attn.", "self_attn."),
)
_ATTENTION = (("q.", "q_proj."), ("k.", "k_proj."), ("v.", "v_proj."), ("out.", "out_proj."),
              ("head_scale", "c_attn"))


def _official(name: str, stack: str) -> str:
    """Our name inside the `encoder`/`decoder` component -> the official `encoder.`/`decoder.` name."""
    m = re.fullmatch(r"layers\.(\d+)\.(.*)", name)
    if m is None:
        rest = next((name.replace(o, t, 1) for o, t in _NAMES if name.startswith(o)), name)
        return f"{stack}.{rest}"
    i, rest = m.groups()
    if rest.startswith("attn_out_norm."):
        rest = rest.replace("attn_out_norm.", "attn_ln." if stack == "encoder" else "self_attn_ln.")
    else:
        rest = next((rest.replace(o, t, 1) for o, t in _LAYER if rest.startswith(o)), rest)
        for o, t in _ATTENTION:
            rest = re.sub(rf"^((self|encoder)_attn\.){re.escape(o)}", rf"\g<1>{t}", rest)
    return f"{stack}.layers.{i}.{rest}"


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("variant", list(SIZES))
def test_sizes_equal_the_official_model(variant):
    loaded = api.load_spec(OFA, None if variant == "base" else variant, budget=None)
    ours = _count(api.build(loaded, device="meta"))
    with torch.device("meta"):
        theirs = _count(OFAModel(SIZES[variant]))
    assert ours == loaded.estimate.params == theirs, (ours, loaded.estimate.params, theirs)


def _tiny_pair() -> tuple[torch.nn.Module, OFAModel]:
    """The tiny spec's model with random weights (BatchNorm statistics included) and the rebuild holding them."""
    model = randomize(api.build(api.load_spec(OFA, "tiny")), seed=1)
    ref = OFAModel(TINY, ResNet(TINY.resnet_layers, stem=4, planes=(2, 3, 4))).eval()
    c = model.components
    theirs = ref.state_dict()
    with torch.no_grad():
        resnet = c["resnet"].state_dict()
        official = {k: v for k, v in theirs.items() if k.startswith("encoder.embed_images.")}
        assert len(resnet) == len(official)
        for (o, a), (t, b) in zip(resnet.items(), official.items(), strict=True):  # same order, same structure
            assert a.shape == b.shape, (o, t)
            b.copy_(a)
        copied = set(official)
        for stack in ("encoder", "decoder"):
            for name, tensor in c[stack].state_dict().items():
                if stack == "decoder" and name.startswith(("embed.", "context_positions.")):
                    continue  # the encoder's, shared
                key = _official(name, stack)
                assert theirs[key].shape == tensor.shape, (name, key)
                theirs[key].copy_(tensor)
                copied.add(key)
    missing = {k for k in theirs if k not in copied and not k.endswith(("_bucket", "_idx"))}
    assert missing == {"decoder.embed_tokens.weight", "decoder.output_projection.weight"}, missing  # tied
    return model.eval(), ref


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    source = torch.randint(4, 64, (3, 7), generator=g)  # B,S
    mask = torch.ones_like(source)
    mask[1, 5:] = 0
    source[1, 5:] = TINY.padding_idx  # the reference finds padding by its id
    target = torch.randint(4, 64, (3, 6), generator=g)  # B,T
    target[:, 0] = 0
    codes = torch.randint(4, 64, (3, 5), generator=g)  # B,1+2*2: a start token and a 2 x 2 window
    codes[:, 0] = 0
    return {"image": torch.randn(3, 3, 32, 32, generator=g), "source": source, "source_mask": mask,
            "target": target, "target_mask": torch.ones_like(target), "codes": codes}


def test_tiny_outputs_equal_the_official_model():
    """Encoder states and teacher-forced logits, with a padded source row, within ATOL + RTOL * |reference|."""
    model, ref = _tiny_pair()
    batch = _batch()
    with torch.no_grad():
        values = model.node_values(batch)
        enc, padding, _ = ref.encoder(batch["source"], batch["image"])
        logits = ref(batch["source"], batch["image"], batch["target"])
    torch.testing.assert_close(values["encoder"]["sequence"], enc.transpose(0, 1), atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(values["encoder"]["mask"], (~padding).long(), atol=0, rtol=0)
    torch.testing.assert_close(values["decoder"]["logits"], logits, atol=ATOL, rtol=RTOL)
    assert logits.abs().max() > 0.1  # not a degenerate comparison


def test_tiny_text_to_image_equals_the_official_model():
    """The text-only encoder and the image-code decoder (the same parameters; OFA without patch_images, with
    code_masks everywhere) equal the rebuild's encoder on text alone and its decoder in code mode."""
    model, ref = _tiny_pair()
    batch = _batch(3)
    with torch.no_grad():
        values = model.node_values(batch)
        enc, _, _ = ref.encoder(batch["source"])
        logits = ref(batch["source"], None, batch["codes"], code_masks=True)
    torch.testing.assert_close(values["text_encoder"]["sequence"], enc.transpose(0, 1), atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(values["image_decoder"]["logits"], logits, atol=ATOL, rtol=RTOL)
    assert not torch.allclose(logits, ref(batch["source"], None, batch["codes"]), atol=1e-2)  # the modes differ


@pytest.mark.parametrize(("node", "encoder", "tokens"), [("decoder", "encoder", "target"),
                                                          ("image_decoder", "text_encoder", "codes")])
def test_cached_steps_equal_the_full_decoder(node, encoder, tokens):
    """A decoder's `step` (one token at a time with a KV cache, the cross-attention keys/values computed once)
    gives the full decoder's logits at every position, for text and for image codes."""
    model, _ = _tiny_pair()
    batch = _batch(1)
    decoder = model.components[node]
    with torch.no_grad():
        values = model.node_values(batch)
        context = values[encoder]
        cross = decoder.cross_kv(context["sequence"])
        past = [KVCache(*(torch.zeros(3, 2, 0, 8),) * 2) for _ in decoder.layers]
        steps = []
        for t in range(batch[tokens].shape[1]):
            out, past = decoder.step({"input": {"ids": batch[tokens][:, t : t + 1]},
                                      "cross": {"mask": context["mask"]}}, past, cross)
            steps.append(out["logits"])
    torch.testing.assert_close(torch.cat(steps, dim=1), values[node]["logits"], atol=ATOL, rtol=RTOL)


@pytest.fixture(scope="module")
def tiny(tiny_export):
    """(ORT pipeline, the same graphs eager, the eager monolithic model) of specs/ofa.yaml's tiny variant."""
    out, _ = tiny_export(OFA)
    ort = Pipeline.open(out)
    model = api.build(api.load_spec(OFA, "tiny"))
    eager = Pipeline(ort.manifest, {name: api.eager_graph(model, name) for name in ort.graphs})
    return ort, eager, api.eager_graph(model)


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
@pytest.mark.parametrize(("graph", "tokens", "logits", "new"), [("decoder_step", "target", "decoder_logits", 10),
                                                               ("image_step", "codes", "image_decoder_logits", 4)])
def test_tiny_decodes_on_ort_as_eager(tiny, strategy, graph, tokens, logits, new):
    """The encoder and KV-cache step graphs on ONNX Runtime (the text step's context length is the derived axis
    `src_len + 4`), the same graphs eager, and the monolithic eager model rerun on the whole target each step
    give the same tokens, with a padded source row: captions after an image, and image codes after a text."""
    ort, eager, full = tiny
    batch = {k: v.numpy() for k, v in _batch(2).items() if k in ("image", "source", "source_mask")}
    start = np.zeros((3, 1), np.int64)
    run_ = {"greedy": lambda d: greedy(d, start, new),
            "beam": lambda d: beam_search(d, start, new, beams=3, eos_id=2, length_penalty=1.2)}[strategy]
    ours = run_(ort.decoder(batch, graph=graph))
    np.testing.assert_array_equal(ours, run_(eager.decoder(batch, graph=graph)))
    feeds = {**batch, "target": np.zeros((3, 1), np.int64), "target_mask": np.ones((3, 1), np.int64),
             "codes": np.zeros((3, 1), np.int64)}
    feeds.pop(tokens)
    monolithic = FullDecoder(full, tokens, logits, feeds, mask="target_mask" if tokens == "target" else None)
    np.testing.assert_array_equal(ours, run_(monolithic))
    assert ours.shape[1] > 1


_TEXT_ENCODER = "{type: ofa, input: source, share: encoder, width: 768, layers: 6, heads: 12, ffn: 3072}"


@pytest.mark.parametrize(("new", "message"), [
    ("{type: ofa, input: source, share: encodr, width: 768, layers: 6, heads: 12, ffn: 3072}",
     "share 'encodr' must name another ofa encoder stack; candidates: encoder"),
    ("{type: ofa, input: source, share: encoder, width: 768, layers: 4, heads: 12, ffn: 3072}",
     "layers 4 differs from the 6 of 'encoder'"),
    ("{type: ofa, input: source, share: encoder, width: 768, layers: 6, heads: 12, ffn: 3072, codes: true}",
     "image-code targets belong to a decoder stack"),
])  # fmt: skip
def test_sharing_errors_are_located(tmp_path, new, message):
    path = tmp_path / "t.yaml"
    text = OFA.read_text()
    assert _TEXT_ENCODER in text
    path.write_text(text.replace(_TEXT_ENCODER, new, 1))
    with pytest.raises(SpecError) as info:
        api.load_spec(path)
    assert message in str(info.value) and f"{path}:" in str(info.value), str(info.value)


ANSWERS = [[5, 9, 11], [5, 7], [20], [33, 4]]
"""Candidate answers (token ids) for trie-constrained decoding, as OFA decodes classification tasks."""


def test_trie_allows_the_candidates_next_tokens_then_eos():
    trie = Trie(ANSWERS, eos_id=2)
    assert trie(()) == [5, 20, 33] and trie((5,)) == [7, 9] and trie((5, 7)) == [2] and trie((20,)) == [2]
    assert trie((5, 8)) is None and trie((20, 2)) is None  # not a candidate's prefix, finished: no constraint
    assert TokenRange(40, 44, eos_id=2)((1, 2)) == [40, 41, 42, 43, 2]


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_tiny_constrained_decoding_on_ort_equals_eager(tiny, strategy):
    """Answers decoded through an answer trie are candidates followed by eos; image codes decoded within a code
    range stay in it; ONNX Runtime and eager pick the same tokens."""
    ort, eager, _ = tiny
    batch = {k: v.numpy() for k, v in _batch(4).items() if k in ("image", "source", "source_mask")}
    start = np.zeros((3, 1), np.int64)
    run_ = {"greedy": lambda d, n: greedy(d, start, n, eos_id=2, pad_id=1),
            "beam": lambda d, n: beam_search(d, start, n, beams=3, eos_id=2, pad_id=1)}[strategy]
    answers = [run_(ConstrainedDecoder(p.decoder(batch, graph="decoder_step"), Trie(ANSWERS, eos_id=2)), 6)
               for p in (ort, eager)]
    np.testing.assert_array_equal(*answers)
    for row in answers[0][:, 1:].tolist():
        end = row.index(2)
        assert row[:end] in ANSWERS and set(row[end + 1 :]) <= {1}, row
    codes = [run_(ConstrainedDecoder(p.decoder(batch, graph="image_step"), TokenRange(40, 56)), 4)
             for p in (ort, eager)]
    np.testing.assert_array_equal(*codes)
    assert ((codes[0][:, 1:] >= 40) & (codes[0][:, 1:] < 56)).all()


def test_fit_lowers_the_loss_of_the_tiny_variant(tmp_path):
    out = tmp_path / "fit.json"
    assert run(["fit", str(OFA), "--variant", "tiny", "--steps", "30", "--json", str(out), "-q"]) == 0
    losses = json.loads(out.read_text())["losses"]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < 0.7 * losses[0], losses[::5]


def test_a_fed_input_may_have_an_axis_derived_from_one_named_axis_only(tmp_path):
    """The step graph's context length `src_len + 4` is a graph input axis; a sum of two named axes is not."""
    path = tmp_path / "two.yaml"
    path.write_text("""mmspec: 1
name: two
modalities:
  a: {type: sequence, dim: 4, length: a_len, max_length: 6}
  b: {type: sequence, dim: 4, length: b_len, max_length: 6}
fusion:
  both: {type: concat, inputs: [a, b], axis: sequence}
heads:
  tags: {type: token_classifier, input: both.sequence, num_classes: 3, transform: false}
exports:
  tagger: {inputs: [both], outputs: [tags]}
""")
    with pytest.raises(SpecError) as info:
        api.load_spec(path)
    assert "has the derived axis 'a_len + b_len', which a graph input cannot have" in str(info.value)
    step = next(g for g in api.load_spec(OFA, "tiny").plan.graphs if g.name == "decoder_step")
    assert [gi.info.shape for gi in step.inputs if gi.name == "encoder_mask"] == [("batch", "src_len + 4")]
