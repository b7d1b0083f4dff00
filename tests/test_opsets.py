"""`--opset N`: every value the option accepts (18 to 25) verifies on every spec, and values outside it are a
usage error (exit 2) before anything runs. From opset 23 the exporter writes SDPA as ONNX's native Attention,
whose ONNX Runtime CPU kernel refuses a broadcast mask; the export expands masks to [..., T, S] (the backend's
`expand_attention_masks`), so BERT's padding mask, causal decoders and cross-attention verify there too.

The sweep runs with random BatchNorm running statistics and norm affines (a fresh module's are the identity, under
which a fold that flips the sign of `running_mean` is exact), so it is also an end-to-end test of the folds.

The CLI runs in a subprocess, so what ONNX Runtime writes to the process's stderr itself (coloured log lines
that bypass Python's sys.stderr and so pytest's capsys) is seen too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fuzz.differential import EXPORT_VARIANCES, randomize_norms

from mmspec import api

ROOT = Path(__file__).resolve().parents[1]
LOWEST, HIGHEST = 18, 25
SPECS = sorted(p.name for p in (ROOT / "specs").glob("*.yaml"))
SAMPLE = {"bert.yaml", "gpt2.yaml", "t5.yaml", "flamingo.yaml", "vilbert.yaml", "glide.yaml", "resnet50.yaml",
          "efficientnet.yaml", "rnnsearch.yaml", "stylegan.yaml", "perceiver.yaml", "multisurv.yaml"}
"""One spec per export feature (padding-masked, causal-cached, cross- and co-attention, a diffusion U-Net, folded
norms, recurrence, modulated convolutions, latent cross-attention, tabular fusion): in the default run. The other
specs are slow-marked (`pytest tests/test_opsets.py -m slow`: about 200 compiles, 20 minutes on 2 cores)."""


def _mmspec(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MMSPEC_DEBUG"}
    return subprocess.run([sys.executable, "-m", "mmspec.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


@pytest.mark.parametrize("command", ["compile", "export-triton"])
@pytest.mark.parametrize(("opset", "bound"), [(LOWEST - 1, f"greater than or equal to {LOWEST}"),
                                              (HIGHEST + 1, f"less than or equal to {HIGHEST}")])  # fmt: skip
def test_opsets_outside_the_range_are_usage_errors(command, opset, bound, tmp_path):
    run = _mmspec(command, "specs/bert.yaml", "--variant", "tiny", "-q", "-o", str(tmp_path / "out"),
                  "--opset", str(opset))  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines()[-1] == f"error: Invalid value for '--opset': Input should be {bound}"
    assert not (tmp_path / "out").exists()


def test_bert_compiles_at_the_highest_opset_with_a_clean_stderr(tmp_path):
    """ONNX Runtime's own log lines (`[E:onnxruntime:...`, ANSI-coloured) would show here; there are none. (With
    the padding mask passed to the native Attention as exported, they did: `inconsistent q_sequence_length`.)"""
    run = _mmspec("compile", "specs/bert.yaml", "--variant", "tiny", "-q", "-o", str(tmp_path / "out"),
                  "--opset", str(HIGHEST))  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert (tmp_path / "out" / "bert-tiny.onnx").is_file()


@pytest.mark.parametrize("opset", [LOWEST, HIGHEST])
@pytest.mark.parametrize("spec", [s if s in SAMPLE else pytest.param(s, marks=pytest.mark.slow) for s in SPECS])
def test_every_spec_verifies_at_the_range_ends(spec, opset, tmp_path, monkeypatch):
    """Every spec's tiny variant at the lowest and highest accepted opset (the default, 20, is test_specs')."""
    build = api.build

    def build_with_statistics(loaded, *args, **kwargs):
        model = build(loaded, *args, **kwargs)
        randomize_norms(model, loaded.spec.seed, EXPORT_VARIANCES)
        return model

    monkeypatch.setattr(api, "build", build_with_statistics)
    report = api.compile(ROOT / "specs" / spec, tmp_path, "tiny", (), opset)
    sections = report["graphs"].values() if "graphs" in report else [report]
    for section in sections:
        assert section["onnx"]["opset"] == opset and section["verification"]["passed"]


@pytest.mark.parametrize(("precision", "quantize"), [("fp16", None), ("fp32", "int8")])
def test_reduced_precision_at_the_highest_opset(precision, quantize, tmp_path):
    """fp16 and int8 copies of a graph with native Attention verify (ONNX Runtime's quantizer would turn that
    Attention into its contrib QAttention, which does not load, unless it is excluded)."""
    report = api.compile(ROOT / "specs" / "bert.yaml", tmp_path, "tiny", (), HIGHEST, precision=precision,
                         quantize=quantize)  # fmt: skip
    assert report["onnx"]["opset"] == HIGHEST and report["verification"]["passed"]


def test_the_default_sample_names_existing_specs():
    assert SAMPLE <= set(SPECS), sorted(SAMPLE - set(SPECS))
