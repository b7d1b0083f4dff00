"""The train -> deploy loop: `mmspec fit --out DIR` writes a checkpoint that `compile --weights`, `summary
--weights` and `fit --weights` read as it is, and `fit --resume` continues with the optimizer state and the
step count. End to end: import hf -> fit --weights -> compile --weights -> ONNX equals the trained model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import transformers as tf
from hf_reference import randomize
from safetensors.torch import load_file

from mmspec.api import build, load_spec
from mmspec.cli import run
from mmspec.graph.inputs import make_inputs, trace_sizes
from mmspec.importers.hf import import_hf, write_spec

VIT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37,
       "image_size": 32, "patch_size": 8, "num_labels": 5, "hidden_dropout_prob": 0.0}  # fmt: skip


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> tuple[Path, Path]:
    """(a fine-tuning spec: `import hf` of a random ViTForImageClassification plus a cross-entropy objective,
    that checkpoint's directory)."""
    root = tmp_path_factory.mktemp("vit")
    torch.manual_seed(0)
    randomize(tf.ViTForImageClassification(tf.ViTConfig(**VIT))).save_pretrained(root / "ckpt")
    tree, _ = import_hf(root / "ckpt")
    tree["name"] = "vit"
    tree["objectives"] = {"ce": {"type": "cross_entropy", "input": "classifier"}}
    write_spec(tree, root / "vit.yaml")
    return root / "vit.yaml", root / "ckpt"


def _fit(spec: Path, out: Path, *args: str) -> dict:
    history = out.parent / f"{out.name}.json"
    assert run(["fit", str(spec), "--batch", "4", "--out", str(out), "--json", str(history), "-q", *args]) == 0
    return json.loads(history.read_text())


def _outputs(spec: Path, weights: Path) -> tuple[dict, list[torch.Tensor]]:
    loaded = load_spec(spec)
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=4)
    with torch.no_grad():
        return inputs, list(build(loaded, weights=weights)(inputs))


def test_import_fit_compile_exports_the_trained_model(imported, tmp_path):
    spec, ckpt = imported
    _fit(spec, tmp_path / "tuned", "--weights", str(ckpt), "--steps", "3")
    inputs, trained = _outputs(spec, tmp_path / "tuned")
    _, pretrained = _outputs(spec, ckpt)
    assert not torch.allclose(trained[0], pretrained[0], atol=1e-3)  # three steps moved the weights
    assert run(["compile", str(spec), "--weights", str(tmp_path / "tuned"), "-o", str(tmp_path / "build"), "-q"]) == 0
    report = json.loads((tmp_path / "build" / "vit.report.json").read_text())
    assert report["verification"]["passed"] and report["weights"]["format"] == "mmspec-fit"
    assert report["weights"]["new"] == report["weights"]["ignored"] == []
    session = ort.InferenceSession(str(tmp_path / "build" / "vit.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"image": inputs["image"].numpy()})
    np.testing.assert_allclose(logits, trained[0].numpy(), atol=1e-5, rtol=1e-4)


def test_fit_weights_starts_from_the_pretrained_checkpoint(imported, tmp_path):
    """At learning rate 0 the written checkpoint is the imported one: the model computes what it computes."""
    spec, ckpt = imported
    _fit(spec, tmp_path / "still", "--weights", str(ckpt), "--steps", "1", "--lr", "0")
    _, ours = _outputs(spec, tmp_path / "still")
    _, theirs = _outputs(spec, ckpt)
    assert torch.equal(ours[0], theirs[0])
    fresh = _fit(spec, tmp_path / "fresh", "--steps", "1")
    started = _fit(spec, tmp_path / "started", "--weights", str(ckpt), "--steps", "1")
    assert fresh["losses"][0] != started["losses"][0]


def test_resume_continues_the_run_exactly(imported, tmp_path):
    """Two steps, then two resumed ones, give the weights, optimizer state and losses of four steps in one run."""
    spec, ckpt = imported
    whole = _fit(spec, tmp_path / "whole", "--weights", str(ckpt), "--steps", "4")
    first = _fit(spec, tmp_path / "first", "--weights", str(ckpt), "--steps", "2")
    second = _fit(spec, tmp_path / "second", "--resume", str(tmp_path / "first"), "--steps", "2")
    assert first["losses"] + second["losses"] == pytest.approx(whole["losses"], rel=1e-5)
    a, b = (load_file(str(tmp_path / run / "vit.safetensors")) for run in ("whole", "second"))
    assert a.keys() == b.keys() and any(k.startswith("optimizer.0.") and k.endswith(".exp_avg_sq") for k in a)
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=1e-6, rtol=1e-5, msg=key)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "second" / "vit.safetensors"), "pt") as f:
        assert f.metadata()["steps"] == "4"


def test_summary_checks_a_fit_checkpoint(imported, tmp_path, capsys):
    spec, ckpt = imported
    _fit(spec, tmp_path / "tuned", "--weights", str(ckpt), "--steps", "1")
    capsys.readouterr()
    assert run(["summary", str(spec), "--weights", str(tmp_path / "tuned"), "--json"]) == 0
    weights = json.loads(capsys.readouterr().out)["weights"]
    assert weights["format"] == "mmspec-fit" and weights["loaded"] == weights["tensors"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--weights", "CKPT", "--resume", "CKPT"], "--weights and --resume both give the starting state"),
        (["--resume", "CKPT"], "not a checkpoint written by `mmspec fit` (use --weights"),
        (["--resume", "OTHER"], "error[shape-mismatch]"),
    ],
    ids=["both", "foreign", "other-spec"],
)
def test_bad_starting_points_exit_2(imported, tmp_path, capsys, args, message):
    spec, ckpt = imported
    other = tmp_path / "other.yaml"
    tree = load_spec(spec).raw
    tree["encoders"]["vit"]["ffn"] = 40
    write_spec(tree, other)
    _fit(other, tmp_path / "other", "--steps", "1")
    paths = {"CKPT": str(ckpt), "OTHER": str(tmp_path / "other")}
    capsys.readouterr()
    code = run(["fit", str(spec), "--steps", "1", "--out", str(tmp_path / "out"), *(paths.get(a, a) for a in args)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
