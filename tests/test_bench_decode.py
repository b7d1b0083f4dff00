"""benchmarks/decode_cost.py runs (`--quick`: the tiny variant, a few steps) and writes its JSON; no timing checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "decode_cost.py"


def test_decode_cost_quick(tmp_path):
    out = tmp_path / "cost.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--batch", "1", "2", "--out", str(tmp_path / "build"),
                          "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "verdict (batch 1)" in run.stdout and "verdict (batch 2)" in run.stdout
    summary = json.loads(out.read_text())
    assert summary["variant"] == "quick"
    assert [r["batch"] for r in summary["results"]] == [1, 2]
    for result in summary["results"]:
        assert result["tokens_equal"] is True and result["first_difference"] is None
        assert isinstance(result["linear"], bool)
        for name in ("cached", "full"):
            assert len(result["step_ms"][name]) == result["new_tokens"] - 1
            assert len(result["runs_ms"][name]) == result["repeats"]
            assert set(result["fit"][name]) == {"intercept_ms", "slope_ms_per_token", "r2", "early_ms", "late_ms",
                                                "late_over_early", "context_late_over_early", "total_ms",
                                                "total_exponent"}
