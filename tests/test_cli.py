"""The `mmspec` command line: exit codes, diagnostics on stderr, no tracebacks, no stray files.

Subprocess tests run the real entry point (`python -m mmspec.cli`); the rest call `mmspec.cli.main`
in-process (it exits with SystemExit) to keep the suite fast and to monkeypatch failures in.
"""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mmspec.api
from mmspec import cli

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted(str(p) for p in (ROOT / "specs").glob("*.yaml"))

SMALL = """\
mmspec: 1
name: small
modalities:
  x: {type: vector, dim: 8}
heads:
  a: {type: classifier, input: x, num_classes: 3}
  b: {type: classifier, input: x, num_classes: 2}
"""


def mmspec_cmd(*args: str, cwd: Path | str = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "MMSPEC_DEBUG"} | (env or {})
    return subprocess.run([sys.executable, "-m", "mmspec.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=environ)


def main(capsys, *args: str) -> tuple[int, str, str]:
    """Run `mmspec ARGS` in-process; (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        cli.main(list(args))
    out, err = capsys.readouterr()
    return info.value.code, out, err


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("MMSPEC_DEBUG", raising=False)


# --- spec errors ----------------------------------------------------------------------------------


def test_validate_reports_a_misspelled_key(tmp_path):
    spec = tmp_path / "typo.yaml"
    spec.write_text(SMALL.replace("num_classes: 2", "num_clases: 2").replace("dim: 8", "dim: '8'"))
    proc = mmspec_cmd("validate", str(spec))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines == [
        f"{spec}:4:26: error[type]: modalities.x.dim: expected an integer, got string '8' (write 8 without quotes)",
        f"{spec}:7:3: error[missing-key]: missing required key 'num_classes' in heads.b",
        f"{spec}:7:35: error[unknown-key]: unknown key 'num_clases' in heads.b (did you mean 'num_classes'?)",
        "error: 1 of 1 spec(s) invalid",
    ]
    assert "Traceback" not in proc.stderr


def test_yaml_tags_execute_nothing_and_write_nothing(tmp_path):
    spec = tmp_path / "evil.yaml"
    spec.write_text(SMALL + 'description: !!python/object/apply:os.system ["touch CANARY"]\n')
    out = tmp_path / "out"
    validate = mmspec_cmd("validate", "evil.yaml", cwd=tmp_path)
    compiled = mmspec_cmd("compile", "evil.yaml", "-o", "out", cwd=tmp_path)
    for proc in (validate, compiled):
        assert proc.returncode == 2, proc.stderr
        assert "evil.yaml:8:14: error[yaml-tag]: tags are not allowed" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "CANARY").exists()
    assert not out.exists() or list(out.iterdir()) == []


def test_validate_reference_specs():
    proc = mmspec_cmd("validate", *SPECS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert [line.split(": ok (")[0] for line in proc.stdout.splitlines()] == SPECS


def test_validate_does_not_import_torch():
    code = (
        "import sys\n"
        "from mmspec.cli import main\n"
        "try:\n"
        f"    main(['validate', *{SPECS!r}, '--variant', 'tiny'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "heavy = sorted(m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules)\n"
        "print('heavy:', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "heavy: []"


def test_validate_checks_every_file(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMALL.replace("dim: 8", "dim: 0"))
    code, out, err = main(capsys, "validate", str(bad), SPECS[0], str(tmp_path / "missing.yaml"))
    assert code == 2
    assert out.startswith(f"{SPECS[0]}: ok (")
    assert err.splitlines() == [
        f"{bad}:4:26: error[range]: modalities.x.dim: must be >= 1, got 0",
        f"{tmp_path / 'missing.yaml'}:0:0: error[read-error]: cannot read spec: no such file or directory",
        "error: 2 of 3 spec(s) invalid",
    ]


# --- usage errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["validate", "specs/bert.yaml", "--variantt", "tiny"], ["No such option: --variantt", "--variant"]),
        (["validate"], ["Missing argument", "Usage: mmspec validate"]),
        (["compile", "specs/bert.yaml", "--device", "tpu"], ["'tpu' is not one of 'cpu', 'cuda'"]),
        (["validate", "specs/bert.yaml", "--variant", "tyny"],
         ["error: specs/bert.yaml: unknown variant 'tyny' (did you mean 'tiny'?); variants: large, tiny"]),
        (["compil", "specs/bert.yaml"], ["No such command 'compil'", "Did you mean 'compile'?"]),
    ],
    ids=["unknown-option", "missing-argument", "bad-device", "unknown-variant", "unknown-command"],
)
def test_usage_errors_exit_2(args, words):
    proc = mmspec_cmd(*args)
    assert proc.returncode == 2, proc.stderr
    for word in words:
        assert word in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_usage_errors_in_process(capsys):
    code, out, err = main(capsys, "validate", "specs/bert.yaml", "--set", "encoders.bert.layers")
    assert (code, out) == (2, "")
    assert err.strip() == "error: --set 'encoders.bert.layers': expected PATH=VALUE with a dotted PATH, e.g. " \
                          "--set encoders.text.layers=2"
    code, out, err = main(capsys, "components", "transfomer")
    assert (code, out, err) == (2, "", "error: unknown component 'transfomer' (did you mean 'transformer'?)\n")
    code, out, err = main(capsys, "--help")
    assert code == 0 and "validate" in out and "Exit codes: 0 success" in out
    assert main(capsys, "--version") == (0, f"mmspec {mmspec.__version__}\n", "")
    code, out, err = main(capsys, "compile", "--help")
    assert (code, err) == (0, "")
    for word in ("--variant", "PATH=VALUE", "--out", "DIR", "<cpu|cuda>", "--no-verify", "--quiet"):
        assert word in out


def test_set_errors_are_located_on_the_command_line(capsys):
    code, _, err = main(capsys, "validate", "specs/bert.yaml", "--variant", "tiny", "--set", "encoders.bert.heads=5")
    assert code == 2
    assert err.splitlines()[0] == ("--set #1:1:21: error[check]: encoders.bert: width 32 is not divisible by "
                                   "heads 5; choose heads that divide width (e.g. 4)")


# --- internal errors and interrupts ---------------------------------------------------------------


def test_internal_error_is_one_line_without_traceback(capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom\non two lines")

    monkeypatch.setattr(mmspec.api, "load_spec", broken)
    code, out, err = main(capsys, "validate", SPECS[0])
    assert (code, out) == (1, "")
    assert err == "internal error: RuntimeError: boom on two lines (set MMSPEC_DEBUG=1 for the traceback)\n"
    monkeypatch.setenv("MMSPEC_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["validate", SPECS[0]])


def test_ctrl_c_exits_130_quietly(capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mmspec.api, "load_spec", interrupted)
    assert main(capsys, "validate", SPECS[0]) == (130, "", "")


# --- compile --------------------------------------------------------------------------------------

REPORT_KEYS = {"spec", "name", "variant", "mmspec_version", "spec_sha256", "params", "passes", "onnx",
               "verification", "timings_s", "precision", "peak_rss_bytes"}


def test_compile_writes_a_verified_model_and_its_report(tmp_path):
    out = tmp_path / "out"
    proc = mmspec_cmd("compile", "specs/bert.yaml", "--variant", "tiny", "-o", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout, proc.stderr) == ("", "")
    assert sorted(p.name for p in out.iterdir()) == ["bert-tiny.onnx", "bert-tiny.report.json"]
    report = json.loads((out / "bert-tiny.report.json").read_text())
    assert set(report) == REPORT_KEYS
    assert (report["name"], report["variant"], report["spec"]) == ("bert", "tiny", "specs/bert.yaml")
    assert len(report["spec_sha256"]) == 64
    assert set(report["params"]) == {"total", "trainable", "by_component"}
    assert report["params"]["total"] == sum(report["params"]["by_component"].values()) > 0
    assert all(set(p) == {"name", "modified", "nodes_before", "nodes_after"} for p in report["passes"])
    onnx = report["onnx"]
    assert set(onnx) == {"path", "opset", "bytes", "inputs", "outputs"}
    assert Path(onnx["path"]) == out / "bert-tiny.onnx" and onnx["bytes"] == (out / "bert-tiny.onnx").stat().st_size
    assert [i["name"] for i in onnx["inputs"]] == ["text", "text_mask", "text_segments"]
    assert onnx["inputs"][0]["shape"] == ["batch", "seq"]
    assert [o["name"] for o in onnx["outputs"]] == ["mlm", "nsp"]
    v = report["verification"]
    assert v["passed"] is True and set(v) == {"passed", "tolerance", "cases"}
    assert len(v["cases"]) >= 3
    batches = [case["shapes"]["text"][0] for case in v["cases"]]
    assert 1 in batches and any(b > 1 and b % 2 for b in batches)
    for case in v["cases"]:
        assert set(case) == {"shapes", "provider", "ort_optimization", "outputs"}
        assert set(case["outputs"]) == {"mlm", "nsp"}
    assert set(report["timings_s"]) == {"load", "build", "capture", "passes", "export", "verify"}
    assert report["precision"] == {"mode": "fp32"}
    assert report["peak_rss_bytes"] > 50 * 2**20  # at least the interpreter with torch and onnxruntime loaded


def _shift_first_output(gm):
    """A test-only FX pass: add 1e-2 to the graph's first output."""
    out = next(n for n in gm.graph.nodes if n.op == "output")
    first, *rest = out.args[0]
    with gm.graph.inserting_before(out):
        shifted = gm.graph.call_function(operator.add, (first, 1e-2))
    out.args = ((shifted, *rest),)
    gm.recompile()
    return gm


def test_failed_verification_exits_1_and_keeps_nothing(tmp_path, capsys, monkeypatch):
    spec = tmp_path / "small.yaml"
    spec.write_text(SMALL)
    optimize = mmspec.api.optimize

    def optimize_then_break(gm):
        gm, records = optimize(gm)
        return _shift_first_output(gm), records

    monkeypatch.setattr(mmspec.api, "optimize", optimize_then_break)
    out = tmp_path / "out"
    code, stdout, err = main(capsys, "compile", str(spec), "-o", str(out), "-q")
    assert (code, stdout) == (1, "")
    (line,) = err.splitlines()
    assert line.startswith("error: verification failed: output 'a' differs: max_abs 1.0e-02 max_rel ")
    assert list(out.iterdir()) == []


def test_compile_progress_and_summary_line(tmp_path, capsys):
    spec = tmp_path / "small.yaml"
    spec.write_text(SMALL)
    code, stdout, err = main(capsys, "compile", str(spec), "-o", str(tmp_path / "out"), "--no-verify")
    assert (code, stdout) == (0, "")
    lines = err.splitlines()
    assert lines[:-1] == [f"{spec}: {step}..." for step in (
        "loading the spec", "building the model", "capturing the FX graph", "running graph passes",
        "exporting to ONNX")]
    assert lines[-1].startswith(f"wrote {tmp_path / 'out' / 'small.onnx'} (")
    assert lines[-1].endswith("params), NOT verified (--no-verify)")


# --- summary, schema, components ------------------------------------------------------------------


def test_summary_full_size_vilbert(capsys):
    code, out, err = main(capsys, "summary", "specs/vilbert.yaml", "--json")
    assert (code, err) == (0, "")
    info = json.loads(out)
    params = info["params"]
    assert params["total"] == sum(params["by_component"].values()) > 200_000_000
    assert set(params["by_component"]) >= {"text_embed", "image_embed", "coattn", "mlm"}
    assert info["flops"]["forward"] > 0


def test_schema_is_json(capsys):
    code, out, err = main(capsys, "schema")
    assert (code, err) == (0, "")
    schema = json.loads(out)
    assert {"mmspec", "name", "modalities", "encoders"} <= set(schema["properties"])


def test_components(capsys):
    code, out, err = main(capsys, "components")
    assert (code, err) == (0, "")
    assert "co_attention" in out and "cross_entropy" in out
    code, out, err = main(capsys, "components", "co_attention", "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert (row["slot"], row["name"], row["exportable"]) == ("fusion", "co_attention", True)
    assert row["fields"]["type"] == {"type": "'co_attention'", "required": True, "default": None,
                                     "doc": "`co_attention`: selects this component."}
    code, out, err = main(capsys, "components", "cross_entropy", "--json")
    (row,) = json.loads(out)
    assert (row["exportable"], row["training_only"]) == (False, True)
    assert row["fields"]["weight"]["type"] == "float > 0.0" and row["fields"]["weight"]["default"] == "1.0"


def test_components_shows_examples_as_specs_that_validate(capsys, tmp_path):
    code, out, err = main(capsys, "components", "concat")
    assert code == 0 and "example 'sequence_tensors'" in out and "type: concat" in out
    code, out, err = main(capsys, "components", "concat", "--json")
    (row,) = json.loads(out)
    assert set(row["examples"]) >= {"default", "sequence_tensors"}
    for example, tree in row["examples"].items():
        path = tmp_path / f"{example}.yaml"
        path.write_text(json.dumps(tree))  # JSON is YAML
        code, out, err = main(capsys, "validate", str(path))
        assert (code, err) == (0, ""), err
