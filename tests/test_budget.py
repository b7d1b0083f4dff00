"""Budgets before allocation (mmspec.spec.budget): exact formulas, no allocation, located refusals."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from mmspec import api
from mmspec.components.heads.classifier import Classifier
from mmspec.errors import SpecError, UsageError
from mmspec.spec.budget import (
    DEFAULT_BUDGET,
    DEFAULT_MAX_PARAMS,
    Budget,
    budget_from_options,
    estimate,
    fmt_bytes,
    fmt_count,
    parse_amount,
)

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))

SMALL = """\
mmspec: 1
name: small
modalities:
  x: {type: vector, dim: 8}
heads:
  a: {type: classifier, input: x, num_classes: 3, hidden: [16]}
"""


def linear(fan_in: int, fan_out: int) -> int:
    return fan_in * fan_out + fan_out


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("variant", [None, "tiny"])
def test_formula_equals_the_meta_device_count_for_every_component(spec_path, variant):
    loaded = api.load_spec(spec_path, variant)
    est = estimate(loaded.spec, loaded.plan)
    counts = api.param_counts(api.build(loaded, device="meta"))["by_component"]
    assert est.by_node == {name: counts[name] for name in est.by_node}
    assert set(est.unknown) | set(est.by_node) == set(counts)
    assert est.params == sum(est.by_node.values())


def test_default_admits_every_canonical_spec_with_room():
    """Every reference spec loads under the default budget or the one it declares; activations leave 16x room.
    (Parameters leave less: word2vec's and fastText's canonical tables hold 1.8B parameters, 90% of 2e9.) A spec
    declares a budget only when its canonical size is past the default."""
    for path in SPECS:
        loaded = api.load_spec(path)
        est = estimate(loaded.spec, loaded.plan)
        budget = DEFAULT_BUDGET.for_spec(loaded.spec)
        assert est.params < budget.max_params, path.name
        assert est.activation_bytes * 16 < budget.max_activation_bytes, path.name
        if loaded.spec.budget is not None:
            assert est.params > DEFAULT_MAX_PARAMS, f"{path.name} declares a budget it does not need"


def test_estimating_a_trillion_parameters_allocates_nothing(tmp_path):
    huge = SMALL.replace("dim: 8", "dim: 1000000").replace("hidden: [16]", "hidden: [1000000, 1000000]")
    path = write(tmp_path, huge)
    loaded = api.load_spec(path, budget=None)
    tracemalloc.start()
    est = estimate(loaded.spec, loaded.plan)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert est.params == 2 * linear(1_000_000, 1_000_000) + linear(1_000_000, 3)
    assert peak < 1 << 20, f"estimating allocated {peak} bytes"


def test_over_budget_is_a_located_spec_error(tmp_path):
    path = write(tmp_path, SMALL.replace("hidden: [16]", "hidden: [100000, 100000]"))
    with pytest.raises(SpecError) as info:
        api.load_spec(path)
    (d,) = info.value.diagnostics
    n = linear(8, 100_000) + linear(100_000, 100_000) + linear(100_000, 3)
    assert (d.code, d.line, d.col) == ("budget", 6, 3)
    assert d.message == (f"estimated {n:,} params / {n * 4 / 2**30:.1f} GiB exceeds budget 2,000,000,000 params "
                         f"(use --max-params); largest: heads.a with {n:,}")
    loaded = api.load_spec(path, budget=Budget(max_params=20_000_000_000))
    assert estimate(loaded.spec, loaded.plan).params == n


def test_activation_budget_names_the_axis_sizes(tmp_path):
    text = ("mmspec: 1\nname: long\nmodalities:\n  s: {type: sequence, dim: 64, length: frames, "
            "max_length: 1000000000}\nheads:\n  tag: {type: token_classifier, input: s, num_classes: 4}\n")
    with pytest.raises(SpecError) as info:
        api.load_spec(write(tmp_path, text))
    (d,) = info.value.diagnostics
    assert (d.code, d.line) == ("budget", 4)
    assert d.message.startswith("estimated activation memory 253.3 GiB per example")  # batch 1: input + logits
    assert "(batch=1, frames=1,000,000,000)" in d.message and "(use --max-activation-bytes)" in d.message
    assert "largest tensor: s (238.4 GiB)" in d.message


def test_budget_from_a_set_override_and_a_variant(tmp_path):
    text = SMALL + "variants:\n  big: {heads.a.hidden: [100000, 100000]}\n"
    path = write(tmp_path, text)
    for kwargs in ({"variant": "big"}, {"sets": ["heads.a.hidden=[100000, 100000]"]}):
        with pytest.raises(SpecError) as info:
            api.load_spec(path, **kwargs)
        assert [d.code for d in info.value.diagnostics] == ["budget"]


def test_compile_refuses_before_importing_torch(tmp_path):
    path = write(tmp_path, SMALL.replace("dim: 8", "dim: 100000").replace("hidden: [16]", "hidden: [100000]"))
    code = (
        "import sys\n"
        "from mmspec.cli import run\n"
        f"rc = run(['compile', {str(path)!r}, '-o', {str(tmp_path / 'out')!r}, '-q'])\n"
        "print(rc, 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["2", "False"], proc.stderr
    assert f"error[budget]: estimated {linear(100_000, 100_000) + linear(100_000, 3):,} params" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_components_without_a_formula_are_counted_on_the_meta_device(tmp_path, monkeypatch):
    monkeypatch.delattr(Classifier, "estimate_params")
    path = write(tmp_path, SMALL)
    loaded = api.load_spec(path)  # torch-free: a component without a formula is not counted
    assert estimate(loaded.spec, loaded.plan).unknown == ["a"]
    with pytest.raises(SpecError) as info:
        api.compile(path, tmp_path / "out", budget=Budget(max_params=100))
    (d,) = info.value.diagnostics
    assert (d.code, d.line, d.col) == ("budget", 6, 3)
    assert d.message.startswith("estimated 195 params / 780 bytes exceeds budget 100 params (use --max-params)")
    assert "largest without a formula: heads.a with 195 (meta device)" in d.message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("text", "value"),
    [("20000000000", 20_000_000_000), ("2e10", 20_000_000_000), ("20_000", 20_000), ("1.5e3", 1500),
     ("64GiB", 64 << 30), ("2G", 2_000_000_000), ("512MiB", 512 << 20), ("1k", 1000), (" 7 ", 7), ("10B", 10)],
)
def test_parse_amount(text, value):
    assert parse_amount(text, "--max-params") == value


@pytest.mark.parametrize("text", ["inf", "nan", "0", "-1", "abc", "1e400", "2 GiBs", "", "1e31", "0.4"])
def test_parse_amount_rejects(text):
    with pytest.raises(UsageError, match="--max-params"):
        parse_amount(text, "--max-params")


def test_cli_budget_flags(tmp_path):
    path = write(tmp_path, SMALL)
    run = [sys.executable, "-m", "mmspec.cli", "validate", str(path)]
    ok = subprocess.run([*run, "--max-params", "195"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    over = subprocess.run([*run, "--max-params", "194"], capture_output=True, text=True, timeout=120)
    assert over.returncode == 2 and f"{path}:6:3: error[budget]: estimated 195 params" in over.stderr
    bad = subprocess.run([*run, "--max-params", "nan"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "error: --max-params 'nan': expected a" in bad.stderr
    assert "Traceback" not in bad.stderr + over.stderr


def test_numbers_for_people_never_overflow():
    assert fmt_count(1_234_567) == "1,234,567"
    assert fmt_count(10**15) == "1.00e+15" and fmt_count(123_456 * 10**20) == "1.23e+25"
    assert fmt_count(10**8000) == "1.00e+8000"  # beyond float range and the int-to-str digit limit
    assert fmt_count(10**8000 - 1) == "9.99e+7999"
    assert fmt_bytes(512) == "512 bytes" and fmt_bytes(64 << 30) == "64.0 GiB" and fmt_bytes(3 << 60) == "3.0 EiB"
    assert fmt_bytes(4 * 10**8000) == "4.00e+8000 bytes"


BIG = SMALL.replace("hidden: [16]", "hidden: [100000, 100000]")
BIG_PARAMS = linear(8, 100_000) + linear(100_000, 100_000) + linear(100_000, 3)


def test_a_spec_declares_its_own_budget_and_the_command_line_still_wins(tmp_path, capsys):
    """`budget:` replaces the default limits for that spec; --max-params given explicitly replaces the spec's."""
    path = write(tmp_path, BIG + "budget: {max_params: 20_000_000_000}\n")
    assert api.load_spec(path).estimate.params == BIG_PARAMS
    from mmspec import cli

    assert cli.run(["validate", str(path)]) == 0
    assert cli.run(["validate", str(path), "--max-params", "1e9"]) == 2
    assert "exceeds budget 1,000,000,000 params" in capsys.readouterr().err
    assert api.load_spec(write(tmp_path, BIG + "budget: {max_params: 2e10}\n")).estimate.params == BIG_PARAMS
    tight = write(tmp_path, BIG + "budget: {max_params: 1000}\n")  # a declared budget can also be lower
    with pytest.raises(SpecError, match="exceeds budget 1,000 params"):
        api.load_spec(tight)


@pytest.mark.parametrize(("budget", "message"), [("{max_params: 0}", "must be >= 1"),
                                                 ("{max_params: 2.5}", "integer"),
                                                 ("{max_params: lots}", "expected a count such as"),
                                                 ("{max_parms: 10}", "max_parms")])  # fmt: skip
def test_a_bad_budget_is_a_located_error(tmp_path, budget, message):
    with pytest.raises(SpecError) as info:
        api.load_spec(write(tmp_path, SMALL + f"budget: {budget}\n"))
    (d,) = info.value.diagnostics
    assert d.line == 7 and message in d.message, d.render() if hasattr(d, "render") else d


def test_compile_refuses_a_declared_size_this_machine_cannot_hold(tmp_path, monkeypatch):
    """A spec's budget admits its size to validate; compile still refuses, before torch, a build whose weights
    (twice: the model and its export) exceed physical memory, unless --max-params is given explicitly."""
    import os

    path = write(tmp_path, BIG + "budget: {max_params: 20_000_000_000}\n")
    page = os.sysconf("SC_PAGE_SIZE")
    monkeypatch.setattr(os, "sysconf", lambda name: page if name == "SC_PAGE_SIZE" else BIG_PARAMS * 4 // page)
    with pytest.raises(UsageError, match=r"parameters need at least .* to compile .*pass --max-params"):
        api.compile(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    loaded = api.load_spec(path)
    api.check_memory(loaded, budget_from_options("2e10", None))  # explicit: the user insists
