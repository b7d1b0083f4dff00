"""The README's import -> compile -> run section works as written, on a small random BertForMaskedLM, and the
ONNX it produces computes what transformers computes."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import transformers as tf
from hf_reference import randomize

from mmspec.backends import TOLERANCE_FP32

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_import_compile_run(tmp_path):
    section = README.split("## Pretrained weights", 1)[1].split("\n## ", 1)[0]
    (console,) = re.findall(r"```console\n(.*?)```", section, re.S)
    (python,) = re.findall(r"```python\n(.*?)```", section, re.S)
    config = tf.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=37, max_position_embeddings=40)  # fmt: skip
    reference = randomize(tf.BertForMaskedLM(config))
    reference.save_pretrained(tmp_path / "ckpt")
    for line in console.strip().splitlines():
        program, *args = shlex.split(line)
        assert program == "mmspec"
        proc = subprocess.run([sys.executable, "-m", "mmspec.cli", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    run = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("(1, 4, 99)")
    ids = np.array([[2, 17, 43, 3]])
    session = ort.InferenceSession(str(tmp_path / "build" / "ckpt.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"text": ids, "text_mask": np.ones_like(ids), "text_segments": np.zeros_like(ids)})
    with torch.no_grad():
        expected = reference(input_ids=torch.from_numpy(ids)).logits.numpy()
    np.testing.assert_allclose(logits, expected, **TOLERANCE_FP32)
