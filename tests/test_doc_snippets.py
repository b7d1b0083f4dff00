"""Every code snippet in the README and docs/ is executed or checked, file by file, in order:

- `yaml`: a block that starts a spec (`mmspec: 1`) loads and plans (and its `tiny` variant, if any); any other
  block is a fragment whose sections, and nodes, validate against the spec model and the registered components.
- `console` / `bash`: each `mmspec` command runs in the file's scratch directory and exits 0; a command of
  another program is not run here, and EXTERNAL names the test that covers it.
- `python`: runs in the scratch directory; a block of API signatures (`<!-- doctest: signatures -->`) is compared
  with the functions' real signatures instead.
- `toml`: parses, and the plugin entry point it shows is the one examples/plugin declares.
- a block without a language is program output or a diagram, not code.

An HTML comment right before a block steers it: `<!-- doctest: save FILE -->` writes the block into the scratch
directory first, `<!-- doctest: append FILE -->` appends it to a file an earlier step wrote,
`<!-- doctest: needs DIR/ -->` puts a random-weight Hugging Face checkpoint there (see
CHECKPOINTS), `<!-- doctest: replace "A" "B" -->` runs the commands with A replaced by the cheaper B, and
`<!-- doctest: sketch -->` marks a design sketch whose unregistered component types must say PLANNED.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from pydantic import TypeAdapter

from mmspec.api import load_spec, spec_model
from mmspec.cli import run
from mmspec.registry import components, list_components

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?:<!-- doctest: (?P<directive>.*?) -->\n)?```(?P<lang>[a-z]*)\n(?P<body>.*?)^```$", re.M | re.S)
EXTERNAL = {  # program -> the test that runs what the snippet shows
    "python3 -m venv": "tests/test_readme.py",  # the README's setup command: CI runs it (test_readme checks that)
    ".venv/bin/python -m pytest": "tests/test_readme.py",  # the README's test command, run verbatim by CI
    "tritonserver": "tests/test_triton.py",  # not installable here: the repository is checked with Triton's schema
    "torchrun": "tests/train/test_fit_distributed.py",  # multi-node launch; the same fit runs multi-process there
    "python benchmarks/decode_cost.py": "tests/test_bench_decode.py",
    "benchmarks/run": "tests/test_benchmarks_run.py",  # minutes at canonical sizes; its page logic is tested there
    "pip install ./examples/plugin": "tests/test_plugins.py",
}


def snippets(path: Path) -> list[tuple[int, str, str, str]]:
    """(line, language, body, directive) of every fenced block."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start("body")), m["lang"], m["body"], m["directive"] or "")
            for m in FENCE.finditer(text)]


def _hf_bert(where: Path) -> None:
    import transformers as tf

    config = tf.BertConfig(vocab_size=200, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=32)
    tf.BertForMaskedLM(config).save_pretrained(where)


def _hf_gpt2(where: Path) -> None:
    import transformers as tf

    config = tf.GPT2Config(vocab_size=8000, n_positions=64, n_embd=16, n_layer=1, n_head=2)
    tf.GPT2LMHeadModel(config).save_pretrained(where)


MODALITY_TYPES = {"tokens", "image", "regions", "sequence", "vector", "scalar", "audio", "video", "categorical",
                  "patches", "cls", "mean", "eos", "max"}  # modality and embed/pool kinds, not components

CHECKPOINTS = {"bert/": _hf_bert, "ckpt/": _hf_bert, "gpt2/": _hf_gpt2}


def _directives(text: str) -> dict:
    out: dict = {"replace": []}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        verb, _, rest = part.partition(" ")
        if verb == "replace":
            out["replace"].append(tuple(shlex.split(rest)))
        else:
            out[verb] = rest
    return out


def _commands(body: str) -> list[str]:
    lines = body.replace("\\\n", " ").splitlines()
    return [ln.split(" #")[0].strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _run_commands(body: str, steer: dict, where: str) -> int:
    ran = 0
    for command in _commands(body):
        for old, new in steer["replace"]:
            command = command.replace(old, new)
        if command.startswith("mmspec "):
            code = run(shlex.split(command)[1:])
            assert code == 0, f"{where}: `{command}` exited {code}"
            ran += 1
            continue
        program = next((p for p in EXTERNAL if command.startswith(p)), None)
        assert program, f"{where}: `{command}` is neither an mmspec command nor a program EXTERNAL accounts for"
        assert (ROOT / EXTERNAL[program]).exists(), f"{where}: {EXTERNAL[program]} does not exist"
    return ran


def _check_yaml(body: str, where: str, scratch: Path) -> None:
    tree = yaml.safe_load(body)
    if isinstance(tree, dict) and tree.get("mmspec") == 1:
        path = scratch / f"snippet-{abs(hash(where))}.yaml"
        path.write_text(body, encoding="utf-8")
        load_spec(path)
        if "tiny" in (tree.get("variants") or {}):
            load_spec(path, "tiny")
        return
    model = spec_model()
    for key, value in tree.items():
        if key in model.model_fields:
            TypeAdapter(model.model_fields[key].annotation).validate_python(value)
        else:  # a node on its own: validate it as the component its `type` names
            _check_node(value, None, f"{where}: {key}")


def _check_sketch(body: str, where: str) -> None:
    """A design sketch (spec-language.md, section 8): valid YAML whose component types are registered, or marked
    PLANNED on their line or the line above."""
    yaml.safe_load(body)
    known = {c.name for c in list_components()}
    lines = body.splitlines()
    for i, line in enumerate(lines):
        for kind in re.findall(r"\btype: (\w+)", line.split("#")[0]):
            if kind not in known and kind not in MODALITY_TYPES:
                assert "PLANNED" in line or (i and "PLANNED" in lines[i - 1]), \
                    f"{where}: type {kind!r} is not a registered component and not marked PLANNED"


def _check_node(node: dict, slot: str | None, where: str) -> None:
    found = [c for c in list_components() if c.name == node.get("type") and slot in (None, c.slot)]
    assert found, f"{where}: no component of type {node.get('type')!r}"
    found[0].config.model_validate(node)


def _signatures(body: str, where: str) -> None:
    """Each signature `f(a, *, b=1)` equals the real one; each call `f(x, k=v)` binds to it."""
    namespace = {**vars(importlib.import_module("mmspec.runtime")),
                 **vars(importlib.import_module("mmspec.runtime.images"))}
    for text in re.split(r"\n(?=\S)", body.strip()):
        text = text.split("#")[0].strip()
        name = text.split("(", 1)[0]
        real = inspect.signature(namespace[name])
        try:
            doc = ast.parse(f"def {text}: pass").body[0].args
            [ast.literal_eval(d) for d in [*doc.defaults, *filter(None, doc.kw_defaults)]]
        except (SyntaxError, ValueError):  # a call with example values, not a signature
            call = ast.parse(text).body[0].value
            real.bind(*[None] * len(call.args), **{k.arg: None for k in call.keywords})
            continue
        shown = [(a.arg, "positional") for a in doc.args] + [(a.arg, "keyword") for a in doc.kwonlyargs]
        actual = [(p.name, "keyword" if p.kind is p.KEYWORD_ONLY else "positional")
                  for p in real.parameters.values() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        assert shown == actual, f"{where}: the docs show {name}{shown}, the code has {actual}"
        defaults = dict(zip([a.arg for a in doc.args][-len(doc.defaults):] if doc.defaults else [],
                            map(ast.literal_eval, doc.defaults), strict=True))
        defaults.update({a.arg: ast.literal_eval(d) for a, d in zip(doc.kwonlyargs, doc.kw_defaults, strict=True)
                         if d is not None})
        for arg, value in defaults.items():
            assert real.parameters[arg].default == value, f"{where}: {name}({arg}=...) defaults to " \
                                                          f"{real.parameters[arg].default!r}, not {value!r}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_snippet_runs(doc, tmp_path, monkeypatch, capsys):
    for name in ("specs", "tests", "examples", "benchmarks"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    for line, lang, body, directive in snippets(doc):
        where = f"{doc.relative_to(ROOT)}:{line}"
        steer = _directives(directive)
        if "save" in steer:
            (tmp_path / steer["save"]).write_text(body, encoding="utf-8")
        if "append" in steer:
            with (tmp_path / steer["append"]).open("a", encoding="utf-8") as f:
                f.write(body)
        if "needs" in steer:
            CHECKPOINTS[steer["needs"]](tmp_path / steer["needs"])
        if lang == "yaml" and "sketch" in steer:
            _check_sketch(body, where)
        elif lang == "yaml":
            _check_yaml(body, where, tmp_path)
        elif lang in ("console", "bash"):
            _run_commands(body, steer, where)
        elif lang == "python" and "signatures" in steer:
            _signatures(body, where)
        elif lang == "python":
            exec(compile(body, where, "exec"), {"__name__": "__doc_snippet__"})  # noqa: S102
        elif lang == "toml":
            shown = tomllib.loads(body)["project"]["entry-points"]["mmspec.components"]
            declared = tomllib.loads((ROOT / "examples/plugin/pyproject.toml").read_text())["project"]["entry-points"]
            assert shown == declared["mmspec.components"], where
        else:
            assert lang == "", f"{where}: a ```{lang} block, which this test does not know how to check"
    capsys.readouterr()


def test_the_directives_name_known_steps():
    for doc in DOCS:
        for line, _, _, directive in snippets(doc):
            steer = _directives(directive)
            known = {"replace", "save", "append", "needs", "signatures", "sketch"}
            assert set(steer) <= known, f"{doc.name}:{line}: {directive}"
            assert steer.get("needs", "bert/") in CHECKPOINTS, f"{doc.name}:{line}: no checkpoint {steer['needs']}"


def test_every_section_of_a_fragment_is_checked():
    """The fragments' sections are spec fields or nodes of registered components (the check above is real)."""
    with pytest.raises(Exception, match="width"):
        _check_yaml("encoders:\n  x: {type: transformer, input: t, embed: {type: tokens}, width: -1}\n", "probe",
                    Path(os.devnull))
    assert components("encoders")
