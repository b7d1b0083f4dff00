"""`--weights`: bad checkpoints are refused with one located line per problem and exit 2, nothing is written and
no pickle payload ever runs; good ones load exactly, with a report of what happened."""

from __future__ import annotations

import builtins
import json
import pickle
import subprocess
import sys

import pytest
import torch
from hf_reference import FROM_SPEC, randomize
from safetensors.torch import load_file, save_file

from mmspec import cli
from mmspec.api import build, load_spec
from mmspec.components.encoders.transformer import TransformerEncoder
from mmspec.errors import WeightsError
from mmspec.graph.inputs import make_inputs, trace_sizes
from mmspec.weights import checkpoint

BERT = "specs/bert.yaml"
QUERY = "bert.encoder.layer.1.attention.self.query.weight"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A transformers BertForPreTraining with the tiny sizes of specs/bert.yaml, saved; and its tensors."""
    ckpt = tmp_path_factory.mktemp("bert") / "ckpt"
    randomize(FROM_SPEC["transformers.BertForPreTraining"](load_spec(BERT, "tiny").spec)).save_pretrained(ckpt)
    return ckpt, load_file(ckpt / "model.safetensors")


def _main(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        cli.main(list(args))
    out, err = capsys.readouterr()
    return info.value.code, out, err


def _compile(capsys, tmp_path, weights, *extra) -> tuple[int, str]:
    code, _, err = _main(capsys, "compile", BERT, "--variant", "tiny", "-q", "-o", str(tmp_path / "out"),
                         "--weights", str(weights), *extra)  # fmt: skip
    if code:
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert "Traceback" not in err
    return code, err


def _save(tmp_path, tensors: dict, name="bad.safetensors"):
    save_file(tensors, tmp_path / name)
    return tmp_path / name


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("MMSPEC_DEBUG", raising=False)


def _outputs(model, loaded):
    with torch.no_grad():
        return model(make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=3))


# --- refused inputs -------------------------------------------------------------------------------


def test_truncated_safetensors(tiny_bert, tmp_path, capsys):
    data = (tiny_bert[0] / "model.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    code, err = _compile(capsys, tmp_path, tmp_path / "cut.safetensors")
    assert code == 2
    assert err.splitlines() == [
        f"{tmp_path / 'cut.safetensors'}:0:0: error[weights-read]: not a readable safetensors file (Error while "
        "deserializing header: incomplete metadata, file not fully covered); is it truncated or corrupt?"
    ]


def test_missing_tensor_lists_its_checkpoint_name(tiny_bert, tmp_path, capsys):
    tensors = dict(tiny_bert[1])
    del tensors[QUERY], tensors["cls.seq_relationship.bias"]
    path = _save(tmp_path, tensors)
    code, err = _compile(capsys, tmp_path, path)
    assert code == 2
    assert (
        f"{path}:0:0: error[missing-tensor]: model tensor 'bert.layers.1.attn.q.weight' [32,32] is not loaded: "
        f"the checkpoint has no '{QUERY}'" in err.splitlines()
    )
    assert "model tensor 'nsp.mlp.0.bias' [2] is not loaded: the checkpoint has no 'cls.seq_relationship.bias'" in err
    assert err.splitlines()[-1] == (
        f"error: cannot load weights from {path}: 2 missing; nothing was loaded; the spec's weights.new / "
        "weights.ignore allow missing / unused tensors on purpose"
    )


def test_misspelled_tensor_gets_did_you_mean_both_ways(tiny_bert, tmp_path, capsys):
    tensors = dict(tiny_bert[1])
    tensors[QUERY.replace("query", "querry")] = tensors.pop(QUERY)
    path = _save(tmp_path, tensors)
    code, err = _compile(capsys, tmp_path, path)
    typo = QUERY.replace("query", "querry")
    assert code == 2
    assert (
        f"error[unexpected-tensor]: checkpoint tensor '{typo}' [32,32] matches no model tensor "
        f"(did you mean '{QUERY}'?)" in err
    )
    assert f"the checkpoint has no '{QUERY}' (did you mean '{typo}'?)" in err


def test_shape_mismatch(tiny_bert, tmp_path, capsys):
    tensors = dict(tiny_bert[1])
    name = "bert.encoder.layer.0.intermediate.dense.weight"
    tensors[name] = tensors[name].t().contiguous()
    code, err = _compile(capsys, tmp_path, _save(tmp_path, tensors))
    assert code == 2
    assert f"error[shape-mismatch]: '{name}' -> 'bert.layers.0.ffn.fc1.weight': expected [64,32] got [32,64]" in err
    assert "missing" not in err  # the tensor is there, with the wrong shape: one problem, not two


def test_non_finite_values(tiny_bert, tmp_path, capsys):
    tensors = dict(tiny_bert[1])
    bad = tensors["bert.pooler.dense.bias"].clone()
    bad[0], bad[5] = float("nan"), float("inf")
    tensors["bert.pooler.dense.bias"] = bad
    code, err = _compile(capsys, tmp_path, _save(tmp_path, tensors))
    assert code == 2
    assert "error[non-finite]: 'bert.pooler.dense.bias' [32] has 2 non-finite value(s) (NaN or Inf)" in err


def test_integer_tensor_for_a_float_parameter(tiny_bert, tmp_path, capsys):
    tensors = dict(tiny_bert[1])
    tensors["cls.seq_relationship.bias"] = torch.tensor([1, 2])
    code, err = _compile(capsys, tmp_path, _save(tmp_path, tensors))
    assert code == 2
    assert "error[dtype]: 'cls.seq_relationship.bias' -> 'nsp.mlp.0.bias': the checkpoint holds int64, the model " \
           "float32; integers and floats do not mix" in err


def test_tied_tensors_must_agree(tiny_bert, tmp_path):
    loaded = load_spec(BERT, "tiny")
    tensors = dict(tiny_bert[1])
    tensors["cls.predictions.decoder.weight"] = tensors["bert.embeddings.word_embeddings.weight"].clone()
    model = build(loaded, weights=_save(tmp_path, tensors, "same.safetensors"))  # an older file stores both
    assert model.weights_report["tensors"] == len(tensors)
    tensors["cls.predictions.decoder.weight"] = tensors["cls.predictions.decoder.weight"] + 1
    with pytest.raises(WeightsError, match=r"error\[tied-mismatch\]: 'cls.predictions.decoder.weight' and "
                                           r"'bert.embeddings.word_embeddings.weight' both fill the tied tensor "
                                           r"'bert.embed.word.weight' but hold different values"):  # fmt: skip
        build(loaded, weights=_save(tmp_path, tensors, "differ.safetensors"))


def test_unknown_format_and_missing_path(tmp_path, capsys):
    (tmp_path / "w.npz").write_bytes(b"\0")
    code, err = _compile(capsys, tmp_path, tmp_path / "w.npz")
    assert code == 2 and "error[weights-read]: unknown weights format" in err
    code, err = _compile(capsys, tmp_path, tmp_path / "nowhere")
    assert code == 2 and "nowhere:0:0: error[weights-read]: no such file or directory" in err
    (tmp_path / "empty").mkdir()
    code, err = _compile(capsys, tmp_path, tmp_path / "empty")
    assert code == 2 and "no model.safetensors or model.safetensors.index.json in this directory" in err


def test_shard_index_may_not_leave_its_directory(tiny_bert, tmp_path, capsys):
    index = {"weight_map": {QUERY: "../model.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    code, err = _compile(capsys, tmp_path, tmp_path)
    assert code == 2 and "error[weights-read]: shard '../model.safetensors' is not a file name in" in err


def test_index_size_guard(tiny_bert, tmp_path, monkeypatch):
    """An index one byte over INDEX_MAX_BYTES is refused before parsing; at the limit it opens."""
    (tmp_path / "a.safetensors").write_bytes((tiny_bert[0] / "model.safetensors").read_bytes())
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": dict.fromkeys(tiny_bert[1], "a.safetensors")}))
    size = index.stat().st_size
    monkeypatch.setattr(checkpoint, "INDEX_MAX_BYTES", size)
    with checkpoint.open_checkpoint(tmp_path) as ckpt:
        assert set(ckpt.entries) == set(tiny_bert[1])
    monkeypatch.setattr(checkpoint, "INDEX_MAX_BYTES", size - 1)
    with pytest.raises(WeightsError) as info:
        checkpoint.open_checkpoint(tmp_path)
    message = f"index of {size} bytes is larger than the limit of {size - 1} bytes"
    assert str(info.value).splitlines() == [f"{index}:0:0: error[weights-read]: {message}"]
    monkeypatch.undo()
    assert checkpoint.INDEX_MAX_BYTES == 64 << 20


def _header_length(file) -> int:
    return int.from_bytes(file.read_bytes()[:8], "little")


def test_safetensors_header_guard(tiny_bert, tmp_path, monkeypatch, capsys):
    """mmspec's own check of the 8-byte header length (not the library's message): over the limit, past the end of
    the file, or no length at all; a header exactly at the limit opens."""
    good = tiny_bert[0] / "model.safetensors"
    length, size = _header_length(good), good.stat().st_size
    monkeypatch.setattr(checkpoint, "HEADER_MAX_BYTES", length)
    with checkpoint.open_checkpoint(good) as ckpt:
        assert len(ckpt.entries) == len(tiny_bert[1])
    monkeypatch.setattr(checkpoint, "HEADER_MAX_BYTES", length - 1)
    with pytest.raises(WeightsError) as info:
        checkpoint.open_checkpoint(good)
    message = f"safetensors header of {length} bytes is larger than the limit of {length - 1} bytes"
    assert f"error[weights-read]: {message}" in str(info.value)
    monkeypatch.undo()
    huge = (64 << 20) + 1  # over the default limit, below the library's own (100 MB)
    (tmp_path / "huge.safetensors").write_bytes(huge.to_bytes(8, "little") + b"{}")
    (tmp_path / "past.safetensors").write_bytes((size).to_bytes(8, "little") + good.read_bytes()[8:])
    (tmp_path / "short.safetensors").write_bytes(b"\x01\x00")
    expected = {
        "huge": f"safetensors header of {huge} bytes is larger than the limit of {64 << 20} bytes",
        "past": f"safetensors header of {size} bytes runs past the end of the file ({size} bytes); is it truncated?",
        "short": "not a safetensors file: 2 bytes, shorter than the 8-byte header length",
    }
    for name, message in expected.items():
        code, err = _compile(capsys, tmp_path, tmp_path / f"{name}.safetensors")
        assert code == 2
        assert err.splitlines() == [f"{tmp_path / name}.safetensors:0:0: error[weights-read]: {message}"]


# --- pickles --------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this creates the file at `path` (what a malicious checkpoint would do, harmlessly)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (builtins.open, (self.path, "w"))


@pytest.mark.parametrize("kind", ["zip", "raw"])
def test_pickle_payload_never_runs(kind, tmp_path, capsys):
    canary = tmp_path / "CANARY"
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    state = {"bert.embeddings.word_embeddings.weight": torch.zeros(2), "x": _Payload(canary)}
    if kind == "zip":
        torch.save(state, ckpt / "pytorch_model.bin")
    else:
        (ckpt / "pytorch_model.bin").write_bytes(pickle.dumps(state))
    code, err = _compile(capsys, tmp_path, ckpt)
    assert code == 2
    assert err.splitlines() == [
        f"{ckpt / 'pytorch_model.bin'}:0:0: error[unsafe-pickle]: refusing to unpickle a PyTorch checkpoint; convert "
        "it to .safetensors (pickles can run code), or pass --allow-torch-load to read plain tensors only "
        "(torch.load with weights_only=True)"
    ]
    code, err = _compile(capsys, tmp_path, ckpt / "pytorch_model.bin", "--allow-torch-load")
    assert code == 2 and "error[unsafe-pickle]: refused: the pickle needs" in err
    if kind == "zip":
        assert "the pickle needs io.open, not just tensors" in err
    assert not canary.exists()
    # The fixture is real: an unrestricted unpickler runs the payload.
    proof = tmp_path / "PROOF"
    (tmp_path / "proof.bin").write_bytes(pickle.dumps(_Payload(proof)))
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.load(open({str(tmp_path / 'proof.bin')!r}, 'rb'))"],
                   check=True)  # fmt: skip
    assert proof.exists()


def test_plain_tensor_pickle_loads_only_when_allowed(tiny_bert, tmp_path, capsys):
    torch.save(tiny_bert[1], tmp_path / "weights.pt")
    code, err = _compile(capsys, tmp_path, tmp_path / "weights.pt")
    assert code == 2 and "error[unsafe-pickle]" in err
    loaded = load_spec(BERT, "tiny")
    from_pickle = build(loaded, weights=tmp_path / "weights.pt", allow_torch_load=True)
    from_safetensors = build(loaded, weights=tiny_bert[0])
    assert from_pickle.weights_report["format"] == "torch"
    for a, b in zip(_outputs(from_pickle, loaded), _outputs(from_safetensors, loaded), strict=True):
        assert torch.equal(a, b)


# --- what loads, and the report -------------------------------------------------------------------


def test_compile_report_and_summary(tiny_bert, tmp_path, capsys):
    code, err = _compile(capsys, tmp_path, tiny_bert[0])
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "bert-tiny.report.json").read_text())
    w = report["weights"]
    count = len(tiny_bert[1])
    nbytes = sum(t.numel() * t.element_size() for t in tiny_bert[1].values())
    assert (w["format"], w["files"], w["tensors"], w["loaded"]) == ("safetensors", ["model.safetensors"], count, count)
    assert w["bytes"] == nbytes
    assert (w["new"], w["ignored"], w["cast"]) == ([], [], {})
    assert "weights" in report["timings_s"]
    code, out, _ = _main(capsys, "summary", BERT, "--variant", "tiny", "--weights", str(tiny_bert[0]))
    assert code == 0 and f"weights: {count} tensors from {tiny_bert[0]} ({nbytes:,} bytes); all tensors fit" in out
    code, _, err = _main(capsys, "summary", BERT, "--weights", str(tiny_bert[0]))  # full size: nothing fits
    assert code == 2 and "error[shape-mismatch]" in err and "error[missing-tensor]" in err


def test_sharded_and_half_precision_checkpoints(tmp_path):
    loaded = load_spec(BERT, "tiny")
    reference = randomize(FROM_SPEC["transformers.BertForPreTraining"](loaded.spec))
    reference.save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    assert len(list((tmp_path / "sharded").glob("*.safetensors"))) > 1
    reference.save_pretrained(tmp_path / "whole")
    sharded = build(loaded, weights=tmp_path / "sharded")
    whole = build(loaded, weights=tmp_path / "whole")
    assert len(sharded.weights_report["files"]) > 1
    for a, b in zip(_outputs(sharded, loaded), _outputs(whole, loaded), strict=True):
        assert torch.equal(a, b)
    half = {k: v.half() for k, v in load_file(tmp_path / "whole" / "model.safetensors").items()}
    model = build(loaded, weights=_save(tmp_path, half, "half.safetensors"))
    assert model.weights_report["cast"] == {"float16->float32": len(half)}
    word = model.components["bert"].embed.word.weight
    assert word.dtype == torch.float32 and torch.equal(word, half["bert.embeddings.word_embeddings.weight"].float())


def test_spec_allows_new_and_unused_tensors(tiny_bert, tmp_path, capsys):
    tensors = {k: v for k, v in tiny_bert[1].items() if not k.startswith("cls.seq_relationship.")}
    tensors["extra.head.weight"] = torch.zeros(3)
    path = _save(tmp_path, tensors)
    code, err = _compile(capsys, tmp_path, path)
    assert code == 2 and "2 missing, 1 unexpected" in err
    code, err = _compile(capsys, tmp_path, path, "--set", "weights.new=[nsp]", "--set", "weights.ignore=['extra.*']")
    assert code == 0, err
    w = json.loads((tmp_path / "out" / "bert-tiny.report.json").read_text())["weights"]
    assert (w["new"], w["ignored"]) == (["nsp.mlp.0.weight", "nsp.mlp.0.bias"], ["extra.head.weight"])


def test_mmspec_names_round_trip(tmp_path):
    """Without a `weights:` section, checkpoints use mmspec's own node-qualified names (any spec, ViLBERT here)."""
    loaded = load_spec("specs/vilbert.yaml", "tiny")
    source = build(loaded)
    with torch.no_grad():
        for t in source.parameters():
            t.add_(torch.randn_like(t) * 0.02)
    state = {k.split(".", 1)[1]: v for k, v in source.state_dict().items()}
    state = {k: v for k, v in state.items() if not k.startswith("mlm.weight")}  # tied: saved once
    model = build(loaded, weights=_save(tmp_path, state, "vilbert.safetensors"))
    for a, b in zip(_outputs(model, loaded), _outputs(source, loaded), strict=True):
        assert torch.equal(a, b)


def test_validate_checks_the_weights_section(tmp_path, capsys):
    spec = tmp_path / "b.yaml"
    text = (
        open(BERT)
        .read()
        .replace(
            "mlm: {prefix: cls.predictions, layout: bert_lm_head}",
            "mlmm: {prefix: cls.predictions, layout: bert_lm_head}",
        )
    )
    spec.write_text(text.replace("layout: linear}", "layout: liner}"))
    code, _, err = _main(capsys, "validate", str(spec))
    lines = err.splitlines()
    assert code == 2
    assert any("error[unknown-reference]: weights.nodes: 'mlmm' is not a component (did you mean 'mlm'?)" in x
               for x in lines)  # fmt: skip
    assert any("error[value]: weights.nodes.nsp.layout: 'classifier' has no layout 'liner' (did you mean "
               "'linear'?); it has: linear, mmspec" in x for x in lines)  # fmt: skip


def test_components_list_their_layouts(capsys):
    code, out, _ = _main(capsys, "components", "transformer", "--json")
    listed = json.loads(out)[0]["weight_layouts"]
    assert code == 0 and listed == sorted(["mmspec", *TransformerEncoder.weight_layouts])
    assert {"bert", "clip", "gpt2", "mmspec", "openai_gpt", "vit", "vit_mae_decoder"} <= set(listed)


def test_float8_checkpoint_is_checked_and_cast(tiny_bert, tmp_path):
    """float8 has no isfinite in torch; its NaNs are still found, and finite values load as float32."""
    tensors = {k: v.to(torch.float8_e4m3fn) if v.is_floating_point() else v for k, v in tiny_bert[1].items()}
    model = build(load_spec(BERT, "tiny"), weights=_save(tmp_path, tensors, "f8.safetensors"))
    assert model.weights_report["cast"] == {"float8_e4m3fn->float32": len(tensors)}
    tensors["bert.pooler.dense.bias"][3] = float("nan")
    with pytest.raises(WeightsError, match=r"'bert.pooler.dense.bias' \[32\] has 1 non-finite value"):
        build(load_spec(BERT, "tiny"), weights=_save(tmp_path, tensors, "f8nan.safetensors"))
