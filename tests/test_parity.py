"""Fidelity (docs/contracts.md): every spec whose reference implementation is installable computes what the reference
computes once the reference's weights are imported with --weights.

For each such spec, the reference is built with the spec's tiny sizes and random weights (nothing is
downloaded), saved with save_pretrained (safetensors), and loaded into the tiny spec: eager outputs match
within 1e-5 max abs (fp32, eval) on every verification shape, and the ONNX compiled with --weights matches the
reference within the fp32 verification tolerance on ONNX Runtime.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import SPECS
from hf_reference import FROM_SPEC, PARITY_ATOL, cases, max_abs_diff, randomize, run_reference

from mmspec.api import build, compile, load_spec
from mmspec.backends import TOLERANCE_FP32
from mmspec.components.encoders.transformer import TransformerEncoder
from mmspec.spec.layout import Rule

WITH_REFERENCE = [p for p in SPECS if load_spec(p).spec.reference.implementation in FROM_SPEC]
ELSEWHERE = {
    "transformers.VisualBertForPreTraining": "language/test_visualbert.py",  # copies the weights by name
    "transformers.GPT2LMHeadModel": "generation/test_decoding.py",
    "transformers.OpenAIGPTLMHeadModel": "coverage/test_gpt_transformer.py",
    "transformers.T5ForConditionalGeneration": "coverage/test_t5.py",
    "transformers.ViTForImageClassification": "weights/test_import_hf.py",
    "transformers.ViTMAEForPreTraining": "coverage/test_vision.py",
    "transformers.EfficientNetForImageClassification": "coverage/test_efficientnet.py",
    "transformers.Data2VecVisionForImageClassification": "coverage/test_data2vec_vision.py",
    "transformers.Data2VecVisionModel": "coverage/test_data2vec_vision_pretraining.py",
    "transformers.AlignModel": "weights/test_import_hf.py",
    "transformers.Data2VecTextModel": "weights/test_import_hf.py",
    "transformers.Data2VecAudioModel": "weights/test_import_hf.py",
    "transformers.FlavaModel": "weights/test_import_hf.py",
    "transformers.PerceiverModel": "weights/test_import_hf.py",
    "transformers.PerceiverForMaskedLM": "weights/test_import_hf.py",
    "transformers.PerceiverForImageClassificationLearned": "weights/test_import_hf.py",
    "transformers.SwitchTransformersSparseMLP": "coverage/test_moe.py",  # routing and counts of the MoE layer
    "transformers.IdeficsForVisionText2Text": "coverage/test_flamingo.py",  # weights copied by name
    "diffusers.UNet2DModel": "coverage/test_diffusion_models.py",
    "diffusers.AutoencoderKL": "coverage/test_autoencoders.py",
    "diffusers.VQModel": "coverage/test_autoencoders.py",
    "diffusers.VQModel (the taming-transformers VQGAN) + transformers.CLIPModel": "coverage/test_guided_generation.py",
    "lifelines.CoxPHFitter": "coverage/test_survival_models.py",  # fitted coefficients and partial likelihood
    "torch.nn.LSTM": "coverage/test_rnn.py",
    "torch.nn.Transformer": "coverage/test_gpt_transformer.py",
}
"""References whose parity test lives in another file: `import hf` + `--weights` against the reference's outputs
(or, for torch.nn modules, their weights copied into ours)."""


def test_every_installable_reference_has_a_parity_test():
    for path in SPECS:
        impl = load_spec(path).spec.reference.implementation
        if impl is None:
            continue
        module, _, cls = impl.rpartition(".")
        try:
            installed = hasattr(importlib.import_module(module), cls)
        except (ImportError, ValueError):  # not installed, or prose rather than an importable name
            installed = False
        elsewhere = ELSEWHERE.get(impl)
        if elsewhere is not None:
            test = Path(__file__).parent / elsewhere
            assert cls in test.read_text(), f"{path.name}: {elsewhere} does not test against {impl}"
            continue
        assert not installed or impl in FROM_SPEC, f"{path.name}: {impl} is installed but has no parity test"
    assert {p.stem for p in WITH_REFERENCE} == {"bert", "clip", "resnet50"}


@pytest.fixture(params=WITH_REFERENCE, ids=[p.stem for p in WITH_REFERENCE])
def checkpoint(request, tmp_path):
    """(tiny spec path, loaded spec, reference model, its save_pretrained directory)."""
    loaded = load_spec(request.param, "tiny")
    reference = randomize(FROM_SPEC[loaded.spec.reference.implementation](loaded.spec))
    reference.save_pretrained(tmp_path / "ckpt")
    return request.param, loaded, reference, tmp_path / "ckpt"


def _ours(model, inputs) -> dict[str, np.ndarray]:
    with torch.no_grad():
        return {name: t.numpy() for name, t in zip(model.output_names, model(inputs), strict=True)}


def test_eager_matches_reference(checkpoint):
    _, loaded, reference, ckpt = checkpoint
    model = build(loaded, weights=ckpt)
    report = model.weights_report
    expected = {id(t) for t in model.state_dict(keep_vars=True).values()}
    assert report["loaded"] == len(expected) and report["new"] == [] and report["ignored"] == []
    impl = loaded.spec.reference.implementation
    for inputs in cases(loaded):
        diffs = max_abs_diff(_ours(model, inputs), run_reference(reference, impl, inputs))
        assert max(diffs.values()) <= PARITY_ATOL, diffs


def test_onnx_from_imported_weights_matches_reference(checkpoint, tmp_path):
    path, loaded, reference, ckpt = checkpoint
    report = compile(path, tmp_path / "out", variant="tiny", weights=ckpt)
    assert report["verification"]["passed"] and report["weights"]["loaded"] > 0
    session = ort.InferenceSession(report["onnx"]["path"], providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    atol, rtol = TOLERANCE_FP32["atol"], TOLERANCE_FP32["rtol"]
    for inputs in cases(loaded):
        theirs = run_reference(reference, loaded.spec.reference.implementation, inputs)
        ours = dict(zip(names, session.run(None, {k: v.numpy() for k, v in inputs.items()}), strict=True))
        for name, ref in theirs.items():
            np.testing.assert_allclose(ours[name].reshape(ref.shape), ref, atol=atol, rtol=rtol, err_msg=name)


def test_a_wrong_layout_is_caught(monkeypatch, tmp_path):
    """Control: with the two LayerNorms of each layer swapped (same shapes, so loading succeeds), parity fails,
    because randomize() gives every LayerNorm its own values."""
    loaded = load_spec("specs/bert.yaml", "tiny")
    reference = randomize(FROM_SPEC["transformers.BertForPreTraining"](loaded.spec))
    reference.save_pretrained(tmp_path / "ckpt")
    swapped = tuple(
        Rule(r.src, r.dst.replace("attn_res.norm", "ffn_res.X").replace("ffn_res.norm", "attn_res.norm")
             .replace("ffn_res.X", "ffn_res.norm"))
        if isinstance(r.dst, str) else r
        for r in TransformerEncoder.weight_layouts["bert"]
    )  # fmt: skip
    monkeypatch.setitem(TransformerEncoder.weight_layouts, "bert", swapped)
    model = build(loaded, weights=tmp_path / "ckpt")
    inputs = cases(loaded)[0]
    diffs = max_abs_diff(_ours(model, inputs), run_reference(reference, "transformers.BertForPreTraining", inputs))
    assert max(diffs.values()) > 1e-3, diffs


@pytest.mark.slow
@pytest.mark.parametrize("path", WITH_REFERENCE, ids=[p.stem for p in WITH_REFERENCE])
def test_full_size_eager_matches_reference(path, tmp_path):
    """The canonical sizes too (BERT-base, CLIP ViT-B/32, ResNet-50: about 1 GB written and read)."""
    loaded = load_spec(path)
    reference = randomize(FROM_SPEC[loaded.spec.reference.implementation](loaded.spec))
    reference.save_pretrained(tmp_path / "ckpt")
    model = build(loaded, weights=tmp_path / "ckpt")
    inputs = cases(loaded)[0]
    diffs = max_abs_diff(_ours(model, inputs), run_reference(reference, loaded.spec.reference.implementation, inputs))
    assert max(diffs.values()) <= PARITY_ATOL, diffs
