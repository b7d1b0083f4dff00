"""`mmspec import hf`: for every supported architecture, a spec written from a small random checkpoint's config,
with that checkpoint's weights, computes what transformers computes (max abs <= 1e-5, fp32, eval). Unsupported
model types, architectures and options exit 2 and say what is missing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers as tf
from hf_reference import PARITY_ATOL, randomize

from mmspec import cli, components
from mmspec.api import build, load_spec
from mmspec.components.encoders.transformer.hf import CLIP_TEXT, CLIP_VISION
from mmspec.components.hf import hf_family
from mmspec.graph.inputs import make_inputs, trace_sizes
from mmspec.importers.hf import NOT_YET, families, import_hf, write_spec

ROOT = Path(__file__).resolve().parents[2]
TEXT = {"vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 37, "max_position_embeddings": 40}  # fmt: skip
ROBERTA = {**TEXT, "max_position_embeddings": 42, "type_vocab_size": 1, "layer_norm_eps": 1e-5}
VIT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37,
       "image_size": 32, "patch_size": 8, "num_labels": 5}  # fmt: skip
GPT2 = {"vocab_size": 99, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 40, "bos_token_id": 0,
        "eos_token_id": 0}  # fmt: skip
OPENAI_GPT = {k: GPT2[k] for k in ("vocab_size", "n_embd", "n_layer", "n_head", "n_positions")}
FLAVA = {"text_config": {**TEXT, "max_position_embeddings": 16},
         "image_config": {k: v for k, v in VIT.items() if k != "num_labels"},
         "multimodal_config": {k: TEXT[k] for k in ("hidden_size", "num_attention_heads", "intermediate_size")},
         "projection_dim": 16}  # fmt: skip
PERCEIVER = {"num_latents": 4, "d_latents": 32, "d_model": 16, "num_self_attends_per_block": 2, "num_blocks": 2,
             "num_self_attention_heads": 4, "num_cross_attention_heads": 2, "vocab_size": 40,
             "max_position_embeddings": 12}  # fmt: skip
CLIP_SMALL = {
    "text_config": {**TEXT, "max_position_embeddings": 16, "bos_token_id": 3, "pad_token_id": 4, "eos_token_id": 5},
    "vision_config": {k: v for k, v in VIT.items() if k != "num_labels"},
    "projection_dim": 16,
}


def _text(x):
    return {"input_ids": x["text"], "attention_mask": x["text_mask"]}


def _text_segments(x):
    return {**_text(x), "token_type_ids": x["text_segments"]}


def _padded(pad: int):
    """RoBERTa inputs with padding tokens where the mask is 0, so positions depend on the ids (fairseq rule)."""

    def call(x):
        x["text"][x["text_mask"] == 0] = pad
        return _text(x)

    return call


def _with_eos(x):
    """CLIP text with eos_token_id 5 at position 3 of row 0 only; the other rows have none (pooled at 0)."""
    x["text"][x["text"] == 5] = 6
    x["text"][0, 3] = 5
    return {"input_ids": x["text"], "pixel_values": x["image"]}


def _image(x):
    return {"pixel_values": x["image"]}


SWIN = {"image_size": 32, "embed_dim": 8, "depths": [2, 2], "num_heads": [2, 4], "window_size": 4}  # shifts in stage 0
T5 = {"vocab_size": 99, "d_model": 16, "d_kv": 4, "d_ff": 37, "num_layers": 2, "num_heads": 4,
      "relative_attention_num_buckets": 8, "relative_attention_max_distance": 20}  # fmt: skip


EFFICIENTNET = {"width_coefficient": 0.25, "depth_coefficient": 1.5, "kernel_sizes": [3, 5], "in_channels": [32, 16],
                "out_channels": [16, 24], "strides": [1, 2], "num_block_repeats": [1, 2], "expand_ratios": [1, 6],
                "hidden_dim": 320, "image_size": 32}  # fmt: skip

ALIGN_SMALL = {"text_config": TEXT, "vision_config": EFFICIENTNET, "projection_dim": 8}  # the last block's 8 channels


def _text_image(x):
    return {**_text_segments(x), "pixel_values": x["image"]}


MAE = {**{k: v for k, v in VIT.items() if k != "num_labels"}, "mask_ratio": 0.0}


def _in_order(x):
    """ViTMAEModel shuffles its patches by `noise`; increasing noise keeps them in place (mask_ratio 0: all kept)."""
    b, patches = x["image"].shape[0], (x["image"].shape[-1] // VIT["patch_size"]) ** 2
    return {"pixel_values": x["image"], "noise": torch.arange(float(patches)).expand(b, patches)}


def _seq2seq(x):
    return {"input_ids": x["source"], "attention_mask": x["source_mask"], "decoder_input_ids": x["target"],
            "decoder_attention_mask": x["target_mask"]}


CASES = {  # architecture -> (reference, its inputs, our output -> its output)
    "BertModel": (lambda: tf.BertModel(tf.BertConfig(**TEXT)), _text_segments,
                  {"bert_sequence": "last_hidden_state", "bert_pooled": "pooler_output"}),
    "BertForPreTraining": (lambda: tf.BertForPreTraining(tf.BertConfig(**TEXT, hidden_act="gelu_new")),
                           _text_segments, {"mlm": "prediction_logits", "nsp": "seq_relationship_logits"}),
    "BertForMaskedLM": (lambda: tf.BertForMaskedLM(tf.BertConfig(**TEXT, tie_word_embeddings=False)),
                        _text_segments, {"mlm": "logits"}),
    "BertForSequenceClassification": (lambda: tf.BertForSequenceClassification(tf.BertConfig(**TEXT, num_labels=3)),
                                      _text_segments, {"classifier": "logits"}),
    "RobertaModel": (lambda: tf.RobertaModel(tf.RobertaConfig(**ROBERTA)), _padded(1),
                     {"roberta_sequence": "last_hidden_state", "roberta_pooled": "pooler_output"}),
    "RobertaForMaskedLM": (lambda: tf.RobertaForMaskedLM(tf.RobertaConfig(**ROBERTA)), _padded(1), {"mlm": "logits"}),
    "XLMRobertaForMaskedLM": (lambda: tf.XLMRobertaForMaskedLM(tf.XLMRobertaConfig(**ROBERTA, pad_token_id=3)),
                              _padded(3), {"mlm": "logits"}),
    "XLMRobertaModel": (lambda: tf.XLMRobertaModel(tf.XLMRobertaConfig(**ROBERTA)), _padded(1),
                        {"roberta_sequence": "last_hidden_state", "roberta_pooled": "pooler_output"}),
    "Data2VecTextModel": (lambda: tf.Data2VecTextModel(tf.Data2VecTextConfig(**ROBERTA)), _padded(1),
                          {"data2vec_text_sequence": "last_hidden_state", "data2vec_text_pooled": "pooler_output"}),
    "Data2VecTextForMaskedLM": (lambda: tf.Data2VecTextForMaskedLM(tf.Data2VecTextConfig(**ROBERTA)), _padded(1),
                                {"mlm": "logits"}),
    "GPT2Model": (lambda: tf.GPT2Model(tf.GPT2Config(**GPT2)), _text, {"gpt2_sequence": "last_hidden_state"}),
    "GPT2LMHeadModel": (lambda: tf.GPT2LMHeadModel(tf.GPT2Config(**GPT2)), _text, {"lm": "logits"}),
    "OpenAIGPTModel": (lambda: tf.OpenAIGPTModel(tf.OpenAIGPTConfig(**OPENAI_GPT)), _text,
                       {"gpt_sequence": "last_hidden_state"}),
    "OpenAIGPTLMHeadModel": (lambda: tf.OpenAIGPTLMHeadModel(tf.OpenAIGPTConfig(**OPENAI_GPT)), _text,
                             {"lm": "logits"}),
    "T5ForConditionalGeneration": (lambda: tf.T5ForConditionalGeneration(tf.T5Config(**T5, num_decoder_layers=3)),
                                   _seq2seq, {"decoder_logits": "logits"}),
    "T5EncoderModel": (lambda: tf.T5EncoderModel(tf.T5Config(**T5, feed_forward_proj="gated-gelu")),
                       lambda x: {"input_ids": x["source"], "attention_mask": x["source_mask"]},
                       {"encoder_sequence": "last_hidden_state"}),
    "ViTModel": (lambda: tf.ViTModel(tf.ViTConfig(**VIT, pooler_output_size=24)), _image,
                 {"vit_sequence": "last_hidden_state", "vit_pooled": "pooler_output"}),
    "ViTForImageClassification": (lambda: tf.ViTForImageClassification(tf.ViTConfig(**VIT)), _image,
                                  {"classifier": "logits"}),
    "Data2VecVisionModel": (  # per-layer relative biases, absolute positions, mask token, final LayerNorm
        lambda: tf.Data2VecVisionModel(tf.Data2VecVisionConfig(
            **VIT, use_relative_position_bias=True, use_absolute_position_embeddings=True, use_mask_token=True,
            use_mean_pooling=False)),
        _image, {"data2vec_vision": "last_hidden_state"}),
    "Data2VecVisionForImageClassification": (  # one shared relative bias table, mean pooling + LayerNorm
        lambda: tf.Data2VecVisionForImageClassification(tf.Data2VecVisionConfig(
            **VIT, use_shared_relative_position_bias=True)),
        _image, {"classifier": "logits"}),
    "ViTMAEModel": (lambda: tf.ViTMAEModel(tf.ViTMAEConfig(**MAE)), _in_order,
                    {"encoder": "last_hidden_state"}),
    "CLIPModel": (lambda: tf.CLIPModel(tf.CLIPConfig(**CLIP_SMALL)), _with_eos,
                  {"clip_logits_per_image": "logits_per_image", "clip_logits_per_text": "logits_per_text",
                   "clip_image_embeds": "image_embeds", "clip_text_embeds": "text_embeds"}),
    "SwinModel": (lambda: tf.SwinModel(tf.SwinConfig(**SWIN)), _image,
                  {"swin_sequence": "last_hidden_state", "swin_pooled": "pooler_output"}),
    "SwinForImageClassification": (lambda: tf.SwinForImageClassification(tf.SwinConfig(**SWIN, num_labels=3)),
                                   _image, {"classifier": "logits"}),
    "ResNetModel": (lambda: tf.ResNetModel(tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24], depths=[2, 1, 1],
                                                           layer_type="basic")),
                    _image, {"backbone_features": "last_hidden_state", "backbone_pooled": "pooler_output"}),
    "ResNetForImageClassification": (
        lambda: tf.ResNetForImageClassification(tf.ResNetConfig(embedding_size=8, hidden_sizes=[16, 32],
                                                                depths=[1, 2], num_labels=4)),
        _image, {"classifier": "logits"}),
    "EfficientNetModel": (lambda: tf.EfficientNetModel(tf.EfficientNetConfig(**EFFICIENTNET)), _image,
                          {"backbone_features": "last_hidden_state", "backbone_pooled": "pooler_output"}),
    "EfficientNetForImageClassification": (
        lambda: tf.EfficientNetForImageClassification(tf.EfficientNetConfig(**EFFICIENTNET, num_labels=4)), _image,
        {"classifier": "logits"}),
    "FlavaModel": (lambda: tf.FlavaModel(tf.FlavaConfig(**FLAVA)),
                   lambda x: {"input_ids": x["text"], "attention_mask": x["text_mask"], "pixel_values": x["image"]},
                   {"image_tower_sequence": "image_embeddings", "text_tower_sequence": "text_embeddings",
                    "multimodal_sequence": "multimodal_embeddings"}),
    "PerceiverModel": (lambda: tf.PerceiverModel(tf.PerceiverConfig(**PERCEIVER)), lambda x: {"inputs": x["inputs"]},
                       {"perceiver": "last_hidden_state"}),
    "PerceiverForImageClassificationLearned": (
        lambda: tf.PerceiverForImageClassificationLearned(tf.PerceiverConfig(**PERCEIVER, image_size=8, num_labels=5)),
        lambda x: {"inputs": x["image"]}, {"classifier": "logits"}),
    "PerceiverForMaskedLM": (
        lambda: tf.PerceiverForMaskedLM(tf.PerceiverConfig(**PERCEIVER, qk_channels=16, v_channels=32)),
        lambda x: {"inputs": x["text"], "attention_mask": x["text_mask"]}, {"mlm": "logits"}),
    "AlignModel": (lambda: tf.AlignModel(tf.AlignConfig(**ALIGN_SMALL)), _text_image,
                   {"align_logits_per_image": "logits_per_image", "align_logits_per_text": "logits_per_text",
                    "align_image_embeds": "image_embeds", "align_text_embeds": "text_embeds"}),
}  # fmt: skip


ELSEWHERE = {  # architectures whose outputs need a training-mode comparison -> where it is
    "Data2VecAudioModel": "tests/coverage/test_data2vec.py::test_audio_import_hf_reproduces_transformers",
    "ViTMAEForPreTraining": "tests/coverage/test_vision.py::test_import_hf_vit_mae_pretraining_matches_transformers",
    "IdeficsForVisionText2Text": "tests/coverage/test_flamingo.py::test_import_hf_reproduces_transformers",
}


def test_every_supported_architecture_is_tested():
    assert {a for f in families().values() for a in f.architectures} == set(CASES) | set(ELSEWHERE)
    for where in ELSEWHERE.values():
        path, _, name = where.partition("::")
        assert f"def {name}(" in (ROOT / path).read_text(), where


@pytest.mark.parametrize("arch", sorted(CASES))
def test_imported_spec_matches_transformers(arch, tmp_path):
    make, call, names = CASES[arch]
    torch.manual_seed(0)
    reference = randomize(make())
    ckpt = tmp_path / "ckpt"
    reference.save_pretrained(ckpt)
    tree, found = import_hf(ckpt)
    assert found == arch and tree["reference"]["implementation"] == f"transformers.{arch}"
    write_spec(tree, tmp_path / "m.yaml")
    loaded = load_spec(tmp_path / "m.yaml")
    model = build(loaded, weights=ckpt)
    assert model.weights_report["new"] == []
    assert model.weights_report["ignored"] == tree["weights"].get("ignore", [])  # an untied head's unused bias
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=1)
    kwargs = call(inputs)
    with torch.no_grad():
        ours = dict(zip(model.output_names, model(inputs), strict=True))
        theirs = reference(**kwargs)
    assert set(ours) == set(names)
    for name, field in names.items():
        ref = getattr(theirs, field)
        diff = (ours[name].reshape(ref.shape) - ref).abs().max().item()
        assert diff <= PARITY_ATOL, f"{arch} {name}: max abs diff {diff:.3g}"


@pytest.mark.parametrize("model_type", sorted(families()))
def test_defaults_are_those_of_transformers(model_type):
    """A key missing from config.json means the transformers default; ours must be the same."""
    config_class = tf.AutoConfig.for_model(model_type).__class__
    reference = config_class()
    for key, value in families()[model_type].defaults.items():
        if key not in LEGACY_KEYS:
            assert _plain(getattr(reference, key)) == value, f"{model_type}.{key}"
    if model_type == "clip":
        for sub, ours in (("text_config", CLIP_TEXT), ("vision_config", CLIP_VISION)):
            for key, value in ours.items():
                assert getattr(getattr(reference, sub), key) == value, f"{sub}.{key}"


LEGACY_KEYS = {"position_embedding_type"}
"""Keys that transformers 5 no longer has but older config.json files carry (the importer refuses other values)."""


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _config(tmp_path, **data):
    (tmp_path / "config.json").write_text(json.dumps(data))
    return str(tmp_path)


def _main(capsys, *args):
    with pytest.raises(SystemExit) as info:
        cli.main(list(args))
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("model_type", sorted(NOT_YET))
def test_unsupported_model_types_exit_2(model_type, tmp_path, capsys):
    code, err = _main(capsys, "import", "hf", _config(tmp_path, model_type=model_type), "-o", str(tmp_path / "m.yaml"))
    assert code == 2
    assert f"model_type {model_type!r} is not supported yet ({NOT_YET[model_type]} is missing); supported: " in err
    assert "supported: " + ", ".join(sorted(families())) in err and "bert, clip" in err
    assert not (tmp_path / "m.yaml").exists() and "Traceback" not in err


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"model_type": "bert", "architectures": ["BertForQuestionAnswering"]},
         "architecture 'BertForQuestionAnswering' is not supported yet for model_type 'bert'; supported: BertModel"),
        ({"model_type": "vit", "qkv_bias": False}, "qkv_bias: False is not supported yet (only True)"),
        ({"model_type": "bert", "hidden_act": "mish"}, "hidden_act: activation 'mish' is not supported yet"),
        ({"model_type": "bert", "hidden_size": "768"}, "hidden_size: expected int, got '768'"),
        ({"model_type": "clip", "text_config": {"hidden_act": "gelu_fast"}}, "text_config.hidden_act: activation"),
        ({"model_type": "resnet", "downsample_in_bottleneck": True}, "downsample_in_bottleneck: True is not supported"),
    ],
)  # fmt: skip
def test_unsupported_options_name_the_key(data, message, tmp_path, capsys):
    code, err = _main(capsys, "import", "hf", _config(tmp_path, **data), "-o", str(tmp_path / "m.yaml"))
    assert code == 2 and message in err, err


def test_families_live_in_their_component_folders():
    """Each model_type is mapped by the `hf.py` of a component folder, which the importer finds on its own."""
    folders = {f"mmspec.components.{folder}.hf" for folder in components.FAMILIES}
    modules = {model_type: family.build.__module__ for model_type, family in families().items()}
    assert set(modules.values()) <= folders, modules
    assert modules["bert"] == "mmspec.components.encoders.transformer.hf"
    assert modules["resnet"] == "mmspec.components.encoders.resnet.hf"


def test_a_model_type_is_mapped_once():
    with pytest.raises(ValueError, match="model_type 'bert' is mapped twice: mmspec.components.encoders.transformer"):
        hf_family("bert", ("BertModel",), {}, survey=[], paper="")(lambda cfg, arch: {})
    assert families()["bert"].build.__module__ == "mmspec.components.encoders.transformer.hf"


RELEASED = {"IdeficsForVisionText2Text": {"use_resampler": True, "additional_vocab_size": 2}}
"""Keys that the released checkpoints of an architecture set away from the config class's defaults, where the
defaults describe a model the importer refuses (IDEFICS: no resampler, no <image> token)."""

_TORCH_FREE = """\
import json, sys
from pathlib import Path
from mmspec import cli
from mmspec.importers.hf import families
released = json.loads(sys.argv[2])
for model_type, family in sorted(families().items()):
    for arch in family.architectures:
        ckpt = Path(sys.argv[1], arch)
        ckpt.mkdir()
        config = {"model_type": model_type, "architectures": [arch], **released.get(arch, {})}
        (ckpt / "config.json").write_text(json.dumps(config))
        try:
            cli.main(["import", "hf", str(ckpt), "-o", str(ckpt / "m.yaml")])
        except SystemExit as e:
            assert e.code == 0, (arch, e.code)
        assert (ckpt / "m.yaml").is_file(), arch
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers")))
"""


def test_import_does_not_import_torch(tmp_path):
    """`mmspec import hf` of every architecture, in a fresh process, leaves torch and transformers unimported."""
    proc = subprocess.run(
        [sys.executable, "-c", _TORCH_FREE, str(tmp_path), json.dumps(RELEASED)], capture_output=True, text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "[]\n"
    assert len(list(tmp_path.glob("*/m.yaml"))) == len(CASES) + len(ELSEWHERE)


def test_bad_name_exits_2(tmp_path, capsys):
    code, err = _main(capsys, "import", "hf", _config(tmp_path, model_type="bert"), "-o", "m.yaml", "--name", "B 1")
    assert code == 2 and "--name 'B 1': use lower-case letters" in err


def test_unreadable_config_exits_2(tmp_path, capsys):
    code, err = _main(capsys, "import", "hf", str(tmp_path), "-o", str(tmp_path / "m.yaml"))
    assert code == 2 and "config.json:0:0: error[read-error]: cannot read the config" in err
    (tmp_path / "config.json").write_text("{not json")
    code, err = _main(capsys, "import", "hf", str(tmp_path), "-o", str(tmp_path / "m.yaml"))
    assert code == 2 and "config.json:1:2: error[hf-config]: not valid JSON" in err  # at the JSON syntax error


def test_transposed_conv1d_in_the_wrong_orientation(tmp_path):
    """GPT-2 stores Conv1D weights [in, out]; one saved the other way round is named with both shapes."""
    from safetensors.torch import load_file, save_file

    from mmspec.errors import WeightsError

    ckpt = tmp_path / "ckpt"
    tf.GPT2LMHeadModel(tf.GPT2Config(**GPT2)).save_pretrained(ckpt)
    write_spec(import_hf(ckpt)[0], tmp_path / "m.yaml")
    tensors = load_file(ckpt / "model.safetensors")
    tensors["transformer.h.1.mlp.c_fc.weight"] = tensors["transformer.h.1.mlp.c_fc.weight"].t().contiguous()
    save_file(tensors, ckpt / "model.safetensors")
    with pytest.raises(WeightsError) as info:
        build(load_spec(tmp_path / "m.yaml"), weights=ckpt)
    assert info.value.diagnostics[0].message == (
        "'transformer.h.1.mlp.c_fc.weight' -> 'gpt2.layers.1.ffn.fc1.weight': expected [128,32] got [32,128] "
        "(checkpoint shape [128,32], transposed by the layout)"
    )


def test_a_checkpoint_past_the_default_budget_imports_and_says_how_to_compile_it(tmp_path, capsys):
    """IDEFICS's default sizes (about 12.7 B parameters) import: the count is the checkpoint's, not a mistake.
    The message gives the --max-params that validate and compile need, and that value is enough."""
    config = _config(tmp_path, model_type="idefics", architectures=["IdeficsForVisionText2Text"],
                     **RELEASED["IdeficsForVisionText2Text"])
    out = tmp_path / "m.yaml"
    code, err = _main(capsys, "import", "hf", config, "-o", str(out))
    assert code == 0, err
    limit = re.search(r"--max-params (\d+)", err)
    assert limit and int(limit[1]) > 2_000_000_000 and "note:" in err, err
    code, err = _main(capsys, "validate", str(out))
    assert code == 2 and "budget" in err, err
    code, err = _main(capsys, "validate", str(out), "--max-params", limit[1])
    assert code == 0, err
