"""`mmspec fit` refuses bad arguments before it trains (and before torch is imported): a non-finite learning
rate, a synthetic batch past the activation budget, output paths it could not write after training; and a loss
that turns non-finite stops the run with exit 1, naming the step, with nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmspec import cli

ROOT = Path(__file__).resolve().parents[2]
BERT = str(ROOT / "specs" / "bert.yaml")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "inf"], "--lr inf: the learning rate must be a finite number >= 0"),
        (["--batch", "100000000"], "--batch 100000000: about 20.3 TiB of activations"),
        (["--out", "SPEC"], "not a directory"),
        (["--json", "TMP"], "it is a directory"),
        (["--json", "TMP/no/such/f.json"], "the directory TMP/no/such does not exist"),
        (["--out", "/proc/mmspec-out"], "cannot write in /proc"),
    ],
    ids=["lr-inf", "batch-budget", "out-file", "json-dir", "json-parent", "out-unwritable"],
)
def test_bad_arguments_exit_2_before_training(args, message, tmp_path, capsys):
    swap = {"SPEC": BERT, "TMP": str(tmp_path)}
    args = [next((a.replace(k, v) for k, v in swap.items() if a.startswith(k)), a) for a in args]
    message = message.replace("TMP", str(tmp_path))
    code = cli.run(["fit", BERT, "-v", "tiny", "--steps", "1", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "internal error" not in err, err
    assert not any(p.name.startswith(".mmspec-probe") for p in tmp_path.iterdir())


def test_argument_errors_come_before_torch():
    script = ("import sys; from mmspec import cli; "
              "code = cli.run(['fit', sys.argv[1], '-v', 'tiny', '--steps', '1', '--lr', 'nan']); "
              "print(code, 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "MMSPEC_DEBUG"}
    proc = subprocess.run([sys.executable, "-c", script, BERT], capture_output=True, text=True, timeout=120, env=env)
    assert proc.stdout.split() == ["2", "False"], proc.stderr


def test_a_non_finite_loss_stops_with_exit_1_and_writes_nothing(tmp_path, capsys):
    code = cli.run(["fit", BERT, "-v", "tiny", "--steps", "4", "--lr", "1e30", "--out", str(tmp_path / "out"),
                    "--json", str(tmp_path / "h.json"), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "the loss became non-finite at step 2 (mlm_loss nan" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == []
