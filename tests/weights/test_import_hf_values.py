"""`mmspec import hf` trusts nothing in config.json: wrong types, non-finite numbers, values that make no valid
model (heads that do not divide the width, negative sizes, dropout past 1, sizes past any checkpoint's, 1e13
parameters) exit 2 with a diagnostic located in config.json (at the offending key where there is one) -- never an
internal error, a temporary path, or a written spec."""

from __future__ import annotations

import json
import re

import pytest

from mmspec import cli


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"model_type": 5}, "model_type must be a string naming the architecture family, got 5"),
        ({"model_type": ["bert"]}, "model_type must be a string"),
        ({"model_type": "bert", "hidden_size": 30, "num_attention_heads": 4},
         "its values do not make a valid model: encoders.bert: width 30 is not divisible by heads 4"),
        ({"model_type": "bert", "num_hidden_layers": -1}, "encoders.bert.layers: must be >= 0, got -1"),
        ({"model_type": "bert", "hidden_dropout_prob": 5}, "encoders.bert.dropout: must be < 1.0, got 5.0"),
        ({"model_type": "bert", "hidden_size": 4096 * 64, "num_hidden_layers": 999, "num_attention_heads": 64},
         "exceeds budget 10,000,000,000,000 params"),
        ({"model_type": "bert", "layer_norm_eps": "x"}, "layer_norm_eps: expected int or float, got 'x'"),
        ({"model_type": "bert", "layer_norm_eps": float("inf")}, "layer_norm_eps: expected a finite number, got inf"),
        ({"model_type": "bert", "hidden_size": "9" * 200}, "hidden_size: expected int, got '999"),
        ({"model_type": "gpt2", "n_embd": [768]}, "n_embd: expected int, got [768]"),
    ],
    ids=["type-int", "type-list", "heads", "negative", "dropout", "budget", "eps-str", "eps-inf", "long", "list"],
)
def test_bad_values_exit_2_naming_the_config(config, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MMSPEC_DEBUG", raising=False)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(config))
    code = cli.run(["import", "hf", str(tmp_path / "ckpt"), "-o", str(tmp_path / "m.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    located = re.search(rf"{re.escape(str(tmp_path / 'ckpt' / 'config.json'))}:(\d+):\d+: error\[hf-config\]", err)
    assert located and ".mmspec-" not in err and "internal error" not in err, err
    key = next((k for k in config if f"{k}: " in message or message.startswith(k)), None)
    assert (int(located[1]) > 0) == (key is not None), err  # at the key's line when a key is named, else 0:0
    assert list(tmp_path.iterdir()) == [tmp_path / "ckpt"]  # nothing written, no temporary left


def test_an_existing_output_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "m.yaml").write_text("mine")
    code = cli.run(["import", "hf", str(tmp_path / "ckpt"), "-o", str(tmp_path / "m.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and "already exists; import hf never replaces a file" in err, err
    assert (tmp_path / "m.yaml").read_text() == "mine"
