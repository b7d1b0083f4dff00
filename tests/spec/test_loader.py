"""Spec diagnostics end to end through `mmspec.api.load_spec`: codes, exact positions, messages.

Every test writes a spec to tmp_path, so positions are checked against real files. Positions are
computed from the spec text (`at`), independently of the loader's source map. Torch-free and fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmspec.api import load_spec
from mmspec.errors import Diagnostic, SpecError, UsageError
from mmspec.registry import components

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))

BASE = """\
mmspec: 1
name: demo
modalities:
  text: {type: tokens, vocab_size: 100, max_length: 16, mask: true}
  image: {type: image, channels: 3, height: 32, width: 32}
encoders:
  bert:
    type: transformer
    input: text
    embed: {type: tokens, positions: 16}
    width: 32
    layers: 1
    heads: 4
    ffn: 64
    activation: gelu
    pool: {type: cls}
  vit:
    type: transformer
    input: image
    embed: {type: patches, patch_size: 16}
    width: 32
    layers: 1
    heads: 4
    ffn: 64
    pool: {type: cls}
fusion:
  joint: {type: elementwise, inputs: [bert.pooled, vit.pooled]}
heads:
  text_proj: {type: projection, input: bert.pooled, dim: 16}
  image_proj: {type: projection, input: vit.pooled, dim: 16}
  clip: {type: contrastive, inputs: {text: text_proj, image: image_proj}}
  mlm: {type: token_classifier, input: bert.sequence, tie_to: bert}
  itm: {type: classifier, input: joint.fused, num_classes: 2}
objectives:
  itm_loss: {type: cross_entropy, input: itm}
variants:
  tiny:
    encoders.bert.layers: 0
    encoders.vit.pool: {type: mean}
"""


def edit(*pairs: str, text: str = BASE) -> str:
    """BASE with each (old, new) pair replaced once; `old` must occur."""
    for old, new in zip(pairs[::2], pairs[1::2], strict=True):
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def at(text: str, needle: str, offset: int = 0) -> tuple[int, int]:
    """1-based (line, col) of the first occurrence of `needle` (plus `offset` characters) in `text`."""
    index = text.index(needle) + offset
    return text.count("\n", 0, index) + 1, index - text.rfind("\n", 0, index)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def diagnostics(tmp_path: Path, text: str, variant: str | None = None, sets=()) -> list[Diagnostic]:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_spec(path, variant, sets)
    for d in info.value.diagnostics:
        assert d.file in (str(path),) or d.file.startswith("--set #"), d
    return info.value.diagnostics


def one(tmp_path: Path, text: str, variant: str | None = None, sets=()) -> tuple[str, int, int, str]:
    diags = diagnostics(tmp_path, text, variant, sets)
    assert len(diags) == 1, [d.render() for d in diags]
    (d,) = diags
    return d.code, d.line, d.col, d.message


def test_base_spec_is_valid(tmp_path):
    loaded = load_spec(write(tmp_path, BASE))
    assert loaded.stem == "demo"
    assert [n.name for n in loaded.plan.nodes] == ["bert", "vit", "image_proj", "joint", "mlm", "text_proj",
                                                   "clip", "itm", "itm_loss"]


# --- unknown keys and types --------------------------------------------------------------------


def test_unknown_key_with_suggestion(tmp_path):
    """A typo'd key is unknown, and the key it meant is then missing: both are reported."""
    text = edit("    width: 32\n    layers: 1\n    heads: 4", "    widht: 32\n    layers: 1\n    heads: 4")
    missing, unknown = diagnostics(tmp_path, text)
    assert (unknown.code, unknown.line, unknown.col) == ("unknown-key", 11, 5) == ("unknown-key", *at(text, "widht"))
    assert unknown.message == "unknown key 'widht' in encoders.bert (did you mean 'width'?)"
    assert (missing.code, missing.line, missing.col) == ("missing-key", 7, 3)
    assert missing.message == "missing required key 'width' in encoders.bert"


def test_unknown_key_without_match_lists_allowed_keys(tmp_path):
    text = edit("    ffn: 64\n    activation", "    ffn: 64\n    foo: 1\n    activation")
    code, line, col, msg = one(tmp_path, text)
    assert (code, line, col) == ("unknown-key", *at(text, "foo: 1"))
    assert "did you mean" not in msg
    from mmspec.registry import get_component

    allowed = ", ".join(sorted(get_component("transformer").config.model_fields))
    assert msg.startswith(f"unknown key 'foo' in encoders.bert; allowed keys: {allowed[:60]}")
    assert "width" in msg and "heads" in msg


def test_unknown_key_in_a_flow_mapping(tmp_path):
    text = edit("{type: tokens, positions: 16}", "{type: tokens, positons: 16}")
    assert one(tmp_path, text) == ("unknown-key", 10, 27,
                                   "unknown key 'positons' in encoders.bert.embed (did you mean 'positions'?)")


def test_unknown_top_level_key(tmp_path):
    text = edit("name: demo\n", "name: demo\nmodalites: {}\n")
    code, line, col, msg = one(tmp_path, text)
    assert (code, line, col) == ("unknown-key", 3, 1)
    assert msg == "unknown key 'modalites' at the top level (did you mean 'modalities'?)"


def test_unknown_component_type(tmp_path):
    text = edit("    type: transformer\n    input: text", "    type: transfomer\n    input: text")
    code, line, col, msg = one(tmp_path, text)
    assert (code, line, col) == ("unknown-type", 8, 11) == ("unknown-type", *at(text, "transfomer"))
    assert msg.startswith("unknown type 'transfomer' for encoders.bert (did you mean 'transformer'?)")
    known = ", ".join(sorted(components("encoders")))
    assert f"known types: {known}" in msg and "resnet, " in known  # every registered encoder, in name order


def test_unknown_modality_type(tmp_path):
    text = edit("{type: image,", "{type: imgae,")
    code, line, col, msg = one(tmp_path, text)
    assert (code, line, col) == ("unknown-type", *at(text, "imgae"))
    assert "unknown type 'imgae' for modalities.image (did you mean 'image'?)" in msg
    assert "known types: categorical, image, regions, scalar, sequence, tokens, vector" in msg


def test_missing_type_tag(tmp_path):
    text = edit("  joint: {type: elementwise, inputs", "  joint: {inputs")
    code, line, col, msg = one(tmp_path, text)
    assert (code, line, col) == ("missing-key", *at(text, "joint"))
    assert "missing required key 'type' in fusion.joint" in msg


def test_missing_required_key_points_at_the_component(tmp_path):
    text = edit("    width: 32\n    layers: 1\n    heads: 4\n    ffn: 64\n    activation",
                "    layers: 1\n    heads: 4\n    ffn: 64\n    activation")
    assert one(tmp_path, text) == ("missing-key", 7, 3, "missing required key 'width' in encoders.bert")


def test_missing_top_level_key(tmp_path):
    code, line, col, msg = one(tmp_path, edit("mmspec: 1\n", ""))
    assert (code, line, col, msg) == ("missing-key", 1, 1, "missing required key 'mmspec'")


def test_unsupported_format_version(tmp_path):
    code, line, col, msg = one(tmp_path, edit("mmspec: 1", "mmspec: 2"))
    assert (code, line, col) == ("version", 1, 9)
    assert "unsupported spec format version 2" in msg


# --- strict types, finite numbers, ranges, enums -------------------------------------------------


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('"64"', "expected an integer, got string '64' (write 64 without quotes)"),
        ("64.0", "expected an integer, got number 64.0 (write 64 without the decimal point)"),
        ("true", "expected an integer, got boolean true"),
        ("[64]", "expected an integer, got a list"),
        ("", "expected an integer, got null"),
    ],
)
def test_strict_integer(tmp_path, value, words):
    text = edit("    ffn: 64\n    activation", f"    ffn: {value}\n    activation")
    code, line, col, msg = one(tmp_path, text)
    assert (code, line) == ("type", 14)
    assert col == (10 if value else 9)
    assert msg == f"encoders.bert.ffn: {words}"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("1", "got number 1"),
        ("yes", "got string 'yes' (YAML 1.2 reads yes/no/on/off as strings; write true or false)"),
        ("no", "got string 'no' (YAML 1.2"),
        ('"true"', "got string 'true'"),
    ],
)
def test_strict_boolean(tmp_path, value, words):
    text = edit("mask: true}", f"mask: {value}}}")
    code, line, col, msg = one(tmp_path, text)
    assert (code, line, col) == ("type", 4, 63)
    assert msg.startswith(f"modalities.text.mask: expected true or false, {words}")


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN"])
def test_non_finite_numbers(tmp_path, value):
    text = edit("    ffn: 64\n", f"    ffn: 64\n    eps: {value}\n")
    code, line, col, msg = one(tmp_path, text)
    assert (code, line, col) == ("not-finite", 15, 10)
    assert msg.startswith("encoders.bert.eps: expected a finite number, got ")


def test_integer_accepts_no_float_even_when_finite_check_would(tmp_path):
    text = edit("    ffn: 64\n", "    ffn: .nan\n")
    assert one(tmp_path, text)[:3] == ("type", 14, 10)


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        ("    heads: 4\n    ffn", "    heads: 0\n    ffn", "heads: 0", "encoders.bert.heads: must be >= 1, got 0"),
        ("    ffn: 64\n", "    ffn: 64\n    dropout: 1.0\n", "dropout",
         "encoders.bert.dropout: must be < 1.0, got 1.0"),
        ("    ffn: 64\n", "    ffn: 64\n    dropout: -0.1\n", "dropout",
         "encoders.bert.dropout: must be >= 0.0, got -0.1"),
        ("vocab_size: 100", "vocab_size: -1", "vocab_size", "modalities.text.vocab_size: must be >= 1, got -1"),
        ("num_classes: 2", "num_classes: 0", "num_classes", "heads.itm.num_classes: must be >= 1, got 0"),
    ],
)
def test_out_of_range(tmp_path, old, new, needle, message):
    text = edit(old, new)
    line, col = at(text, needle)
    assert one(tmp_path, text) == ("range", line, col + len(needle.split(":")[0]) + 2, message)


def test_negative_layers(tmp_path):
    """`layers` has no schema bound (0 is valid); the component's check rejects negatives, at the value."""
    text = edit("    layers: 1\n    heads: 4\n    ffn: 64\n    activation", "    layers: -1\n    heads: 4\n"
                "    ffn: 64\n    activation")
    code, line, col, msg = one(tmp_path, text)
    assert (line, col) == (12, 13)
    assert "layers" in msg and "-1" in msg


def test_empty_section_below_its_minimum(tmp_path):
    text = "mmspec: 1\nname: x\nmodalities: {}\n"
    assert one(tmp_path, text) == ("range", 3, 1, "modalities: needs at least 1 entry, got 0")


def test_enum_typo(tmp_path):
    text = edit("    activation: gelu", "    activation: gleu")
    code, line, col, msg = one(tmp_path, text)
    assert (code, line, col) == ("value", 15, 17)
    assert msg.startswith("encoders.bert.activation: invalid value 'gleu' (did you mean 'gelu'?); expected one "
                          "of: gelu, gelu_tanh,")


def test_union_reports_the_member_that_matched_the_type(tmp_path):
    """An axis is a name or a size: a bad size gets the range error, a float gets both types."""
    assert one(tmp_path, edit("max_length: 16,", "max_length: 16, length: 0,"))[::3] == (
        "range", "modalities.text.length: must be >= 1, got 0")
    assert one(tmp_path, edit("max_length: 16,", "max_length: 16, length: 1.5,"))[::3] == (
        "type", "modalities.text.length: expected a string or an integer, got number 1.5")


# --- names ----------------------------------------------------------------------------------------


def test_bad_name_with_space(tmp_path):
    text = edit("  image: {", '  "Bad Name": {')
    code, line, col, msg = one(tmp_path, text)
    assert (code, line, col) == ("bad-name", 5, 3)
    assert msg.startswith("invalid name 'Bad Name' in modalities: use lower-case letters")
    assert msg.endswith("(e.g. 'bad_name')")


def test_name_longer_than_64_characters(tmp_path):
    long = "a" * 65
    text = edit("  image: {", f"  {long}: {{")
    code, line, col, msg = one(tmp_path, text)
    assert (code, line, col) == ("bad-name", 5, 3)
    assert "it is 65 characters long; at most 64 are allowed" in msg
    loaded = load_spec(write(tmp_path, edit("  image: {", f"  {long[:64]}: {{", "input: image", f"input: {long[:64]}")))
    assert long[:64] in loaded.spec.modalities


def test_name_with_an_escape_character_is_never_echoed_raw(tmp_path):
    text = edit("  image: {", '  "\\x1b[31m": {')
    (d,) = diagnostics(tmp_path, text)
    assert (d.code, d.line, d.col) == ("bad-name", 5, 3)
    rendered = SpecError([d]).render()
    assert "\x1b" not in rendered
    assert "'\\x1b[31m'" in rendered


def test_bad_spec_name_and_bad_reference(tmp_path):
    text = edit("name: demo", "name: Demo", "input: joint.fused", "input: Joint.fused")
    (name, ref) = diagnostics(tmp_path, text)
    assert (name.code, name.line, name.col) == ("bad-name", 2, 7)
    assert name.message.startswith("name: invalid name 'Demo'") and name.message.endswith("(e.g. 'demo')")
    assert (ref.code, ref.line) == ("bad-reference", 33)
    assert ref.message.startswith("heads.itm.input: invalid reference 'Joint.fused'")


# --- cross-field (plan) checks ---------------------------------------------------------------------


def test_width_not_divisible_by_heads(tmp_path):
    text = edit("    heads: 4\n    ffn: 64\n    activation", "    heads: 5\n    ffn: 64\n    activation")
    code, line, col, msg = one(tmp_path, text)
    assert (code, line, col) == ("check", 13, 12)
    assert "width 32 is not divisible by heads 5" in msg and "(e.g. 4)" in msg


def test_reference_to_an_unknown_node(tmp_path):
    text = edit("input: bert.pooled, dim", "input: bret.pooled, dim")
    code, line, col, msg = one(tmp_path, text)
    assert (code, line, col) == ("unknown-reference", *at(text, "bret.pooled"))
    assert msg == ("heads.text_proj refers to 'bret', which is not a modality or component "
                   "(did you mean 'bert'?)")


def test_reference_to_an_unknown_field(tmp_path):
    text = edit("input: bert.pooled, dim", "input: bert.pooledd, dim")
    code, line, col, msg = one(tmp_path, text)
    assert (code, line, col) == ("unknown-field", *at(text, "bert.pooledd"))
    assert "'bert' has no output 'pooledd'" in msg and "(did you mean 'pooled'?)" in msg


def test_reference_in_a_list_is_located_at_its_item(tmp_path):
    text = edit("inputs: [bert.pooled, vit.pooled]", "inputs: [bert.pooled, vit.poold]")
    code, line, col, msg = one(tmp_path, text)
    assert (code, line, col) == ("unknown-field", *at(text, "vit.poold"))


def test_cycle_between_two_fusion_nodes(tmp_path):
    text = edit("  joint: {", "  a: {type: elementwise, inputs: [b.fused, bert.pooled]}\n"
                "  b: {type: elementwise, inputs: [a.fused, vit.pooled]}\n  joint: {")
    assert one(tmp_path, text) == ("cycle", 27, 3, "references form a cycle among: a, b")


def test_duplicate_name_across_sections(tmp_path):
    text = edit("  itm: {", "  vit: {type: classifier, input: joint.fused, num_classes: 2}\n  itm: {")
    code, line, col, msg = one(tmp_path, text)
    assert (code, line, col) == ("duplicate-name", 33, 3)
    assert "'vit' is used in both 'encoders' and 'heads'" in msg


def test_positions_shorter_than_max_length(tmp_path):
    text = edit("positions: 16", "positions: 8")
    code, line, col, msg = one(tmp_path, text)
    assert (code, line, col) == ("check", *at(text, "8}"))
    assert "embed.positions 8 is shorter than the input's length 16" in msg


def test_tie_to_unknown_encoder(tmp_path):
    text = edit("tie_to: bert", "tie_to: bart")
    code, line, col, msg = one(tmp_path, text)
    assert (code, line, col) == ("check", *at(text, "bart"))
    assert "tie_to 'bart'" in msg and msg.startswith("heads.mlm: ")


def test_contrastive_widths_differ(tmp_path):
    text = edit("input: vit.pooled, dim: 16", "input: vit.pooled, dim: 8")
    code, line, col, msg = one(tmp_path, text)
    assert (code, line, col) == ("check", *at(text, "image_proj}"))
    assert "embedding widths differ: 'text_proj' has 16, 'image_proj' has 8" in msg


def test_objective_input_must_be_a_head(tmp_path):
    text = edit("input: itm}", "input: joint}")
    code, line, col, msg = one(tmp_path, text)
    assert (code, line, col) == ("check", *at(text, "joint}"))
    assert "objective input 'joint' must be a head" in msg


def test_outputs_naming_an_objective(tmp_path):
    text = edit("name: demo\n", "name: demo\noutputs: [itm, itm_loss]\n")
    code, line, col, msg = one(tmp_path, text)
    assert (code, line, col) == ("training-only", 3, 16)
    assert "'itm_loss' is an objective" in msg


# --- all errors in one run -----------------------------------------------------------------------


def test_independent_errors_are_reported_together_sorted_by_line(tmp_path):
    text = edit(
        "objectives:\n", "objectives:\n  bad_loss: {type: cross_entropy, input: itm, weight: 0}\n",
        "  bert:\n    type: transformer", "  bert:\n    type: transformer\n    widht: 3",
        "mask: true}", "mask: yes}",
        "    activation: gelu", "    activation: gleu",
    )
    diags = diagnostics(tmp_path, text)
    assert [(d.code, d.line) for d in diags] == [
        ("type", 4), ("unknown-key", 9), ("value", 16), ("range", 36)]
    assert [d.line for d in diags] == sorted(d.line for d in diags)
    rendered = SpecError(diags).render().splitlines()
    assert len(rendered) == 4 and all(line.startswith(f"{tmp_path / 'spec.yaml'}:") for line in rendered)


# --- variants and --set ----------------------------------------------------------------------------


def test_variant_applies(tmp_path):
    loaded = load_spec(write(tmp_path, BASE), "tiny")
    assert loaded.stem == "demo-tiny"
    assert loaded.spec.encoders["bert"].layers == 0 and loaded.spec.encoders["vit"].pool.type == "mean"


def test_error_from_a_variant_points_at_the_variant_entry(tmp_path):
    text = edit("    encoders.bert.layers: 0", "    encoders.bert.heads: 5")
    assert load_spec(write(tmp_path, text)).spec.encoders["bert"].heads == 4  # the default is fine
    code, line, col, msg = one(tmp_path, text, "tiny")
    assert (code, line, col) == ("check", *at(text, "5\n"))
    assert "width 32 is not divisible by heads 5" in msg


def test_error_inside_a_variant_mapping_points_inside_it(tmp_path):
    """The base file has `pool: {type: cls}` for vit; the variant's mapping replaces it entirely."""
    text = edit("encoders.vit.pool: {type: mean}", "encoders.vit.pool: {type: mean, dense: 0}")
    assert one(tmp_path, text, "tiny") == ("range", *at(text, "0}"), "encoders.vit.pool.dense: must be >= 1, got 0")
    text = edit("encoders.vit.pool: {type: mean}", "encoders.vit.pool: {tpye: mean}")
    diags = diagnostics(tmp_path, text, "tiny")
    assert [(d.code, d.line, d.col) for d in diags] == [("missing-key", *at(text, "encoders.vit.pool")),
                                                         ("unknown-key", *at(text, "tpye"))]


def test_variant_unknown_key_is_located_at_the_entry(tmp_path):
    text = edit("    encoders.bert.layers: 0", "    encoders.bert.layrs: 0")
    code, line, col, msg = one(tmp_path, text, "tiny")
    assert (code, line, col) == ("unknown-key", *at(text, "encoders.bert.layrs"))
    assert msg == "unknown key 'layrs' in encoders.bert (did you mean 'layers'?)"


def test_unknown_variant(tmp_path):
    with pytest.raises(UsageError) as info:
        load_spec(write(tmp_path, BASE), "tinny")
    assert "unknown variant 'tinny' (did you mean 'tiny'?); variants: tiny" in str(info.value)


def test_variant_paths_through_missing_or_scalar_nodes(tmp_path):
    text = edit("    encoders.bert.layers: 0", "    encoders.bert.width.x: 1\n    encoders.bret.layers: 1\n"
                "    fusion.joint.inputs.5: vit.pooled")
    diags = diagnostics(tmp_path, text, "tiny")
    assert [(d.code, d.line, d.col) for d in diags] == [("bad-override", 38, 5), ("bad-override", 39, 5),
                                                        ("bad-override", 40, 5)]
    assert diags[0].message == "override 'encoders.bert.width.x': 'encoders.bert.width' is number 32, not a mapping"
    assert diags[1].message == "override 'encoders.bret.layers': 'encoders.bret' does not exist (did you mean 'bert'?)"
    assert diags[2].message == ("override 'fusion.joint.inputs.5': 'fusion.joint.inputs' is a list of 2; "
                                "use an index 0..1")


def test_variant_that_is_not_a_mapping(tmp_path):
    text = edit("  tiny:\n    encoders.bert.layers: 0\n    encoders.vit.pool: {type: mean}\n", "  tiny: 3\n")
    code, line, col, msg = one(tmp_path, text, "tiny")
    assert (code, line, col) == ("type", 37, 9)
    assert "a variant is a mapping of dotted paths to values, got number 3" in msg


def test_set_applies_after_the_variant(tmp_path):
    path = write(tmp_path, BASE)
    loaded = load_spec(path, "tiny", ["encoders.bert.layers=2", "heads.text_proj.input=vit.pooled",
                                      "heads.itm.num_classes= 7", "fusion.joint.inputs.0=vit.pooled",
                                      "fusion.joint.inputs.1=bert.pooled"])
    assert loaded.spec.encoders["bert"].layers == 2
    assert loaded.spec.fusion["joint"].inputs == ["vit.pooled", "bert.pooled"]  # digits index lists
    assert loaded.spec.heads["text_proj"].input == "vit.pooled"
    assert loaded.spec.heads["itm"].num_classes == 7
    assert loaded.spec.encoders["vit"].pool.type == "mean"  # from the variant


def test_set_errors_are_located_in_the_argument(tmp_path):
    diags = diagnostics(tmp_path, BASE, None, ["encoders.bert.layrs=2", "encoders.bert.ffn=.nan",
                                                "encoders.bert.x.y=1", "heads.itm.activation=gleu"])
    assert [(d.file, d.line, d.col, d.code) for d in diags] == [
        ("--set #1", 1, 15, "unknown-key"),
        ("--set #2", 1, 19, "type"),
        ("--set #3", 1, 15, "bad-override"),
        ("--set #4", 1, 22, "value"),
    ]
    assert diags[0].message == "unknown key 'layrs' in encoders.bert (did you mean 'layers'?)"
    assert diags[1].message == "encoders.bert.ffn: expected an integer, got number nan"
    assert diags[2].message == "override 'encoders.bert.x.y': 'encoders.bert.x' does not exist"
    assert "invalid value 'gleu' (did you mean 'gelu'?)" in diags[3].message
    assert diags[0].render() == ("--set #1:1:15: error[unknown-key]: unknown key 'layrs' in encoders.bert "
                                 "(did you mean 'layers'?)")


def test_set_digits_are_mapping_keys_in_mappings(tmp_path):
    diags = diagnostics(tmp_path, BASE, None, ["encoders.0={type: transformer}"])
    assert [(d.file, d.line, d.col, d.code) for d in diags] == [("--set #1", 1, 10, "bad-name")] + [
        ("--set #1", 1, 10, "missing-key")] * 3
    assert diags[0].message.startswith("invalid name '0' in encoders")
    assert {d.message for d in diags[1:]} == {f"missing required key {k!r} in encoders.0"
                                              for k in ("input", "embed", "width")}


def test_set_plan_error_and_set_over_variant_origin(tmp_path):
    """A --set that replaces a variant's value takes over its location, also for plan errors."""
    text = edit("    encoders.bert.layers: 0", "    encoders.bert.heads: 5")
    code, line, col, _ = one(tmp_path, text, "tiny", ["encoders.bert.heads=3"])
    assert (code, line, col) == ("check", 1, 21)
    # a --set of a whole mapping: errors inside it point at its value
    diags = diagnostics(tmp_path, BASE, None, ["encoders.vit.pool={type: mean, dense: 0}"])
    assert [(d.file, d.line, d.col, d.code) for d in diags] == [("--set #1", 1, 19, "range")]


def test_set_errors_merge_with_file_errors(tmp_path):
    text = edit("    activation: gelu", "    activation: gleu")
    diags = diagnostics(tmp_path, text, None, ["encoders.bert.layrs=2"])
    assert [(d.file[:5], d.code) for d in diags] == [("--set", "unknown-key"), (str(tmp_path)[:5], "value")]


@pytest.mark.parametrize(
    ("item", "words"),
    [("encoders.bert.layers", "expected PATH=VALUE"), ("=2", "expected PATH=VALUE"),
     ("encoders..layers=2", "expected PATH=VALUE"), ("encoders.bert.layers=[1", "bad value")],
)
def test_malformed_set(tmp_path, item, words):
    with pytest.raises(UsageError) as info:
        load_spec(write(tmp_path, BASE), None, [item])
    assert str(info.value).startswith("--set ") and words in str(info.value)


# --- the reference specs --------------------------------------------------------------------------


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_reference_specs_load(path):
    full, tiny = load_spec(path), load_spec(path, "tiny")
    assert full.variant is None and tiny.variant == "tiny"
    assert tiny.stem == f"{full.spec.name}-tiny"
    assert len(full.sha256) == 64 and full.sha256 != tiny.sha256
    assert load_spec(path).sha256 == full.sha256 and load_spec(path, "tiny").sha256 == tiny.sha256
    assert full.plan.outputs and [o[0] for o in full.plan.outputs] == [o[0] for o in tiny.plan.outputs]
