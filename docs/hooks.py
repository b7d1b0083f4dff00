"""MkDocs hooks (mkdocs.yml `hooks:`): the reference pages are generated from the code at build time, never
written by hand, and the reference specs are published next to the pages that link to them.

- `reference/components.md`: every registered component (slot, summary, fields with type, default and
  description, weight layouts, examples as complete specs), from the registry.
- `reference/cli.md`: every command with its help text and options, from the typer application.
- `specs/*.yaml`: the repository's reference specs; links written `../specs/X.yaml` (right on GitHub) are
  pointed at them.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]


def on_files(files, config):
    files.append(File.generated(config, "reference/components.md", content=components_page()))
    files.append(File.generated(config, "reference/cli.md", content=cli_page()))
    for spec in sorted((ROOT / "specs").glob("*.yaml")):
        files.append(File.generated(config, f"specs/{spec.name}", content=spec.read_text(encoding="utf-8")))
    return files


def on_page_markdown(markdown, page, config, files):
    return re.sub(r"\]\(\.\./specs/", "](specs/", markdown)


def _text(text: str) -> str:
    """Help or docstring text as Markdown shows it literally (`<stem>` is not an HTML tag)."""
    parts = str(text).split("`")  # odd parts are code spans, which Markdown shows as they are
    return "`".join(p if i % 2 else p.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                    for i, p in enumerate(parts))


def _cell(text: str) -> str:
    return " ".join(_text(text).split()).replace("|", "\\|")


def components_page() -> str:
    """The component reference, from what `mmspec components --json` reports for every component."""
    from mmspec.cli.components import component_rows
    from mmspec.registry import list_components
    from mmspec.spec.yaml_safe import dump_spec

    found = list_components()
    rows = component_rows(found)
    paragraphs = {(c.slot, c.name): inspect.cleandoc(c.config.__doc__ or "").split("\n\n")[0] for c in found}
    out = ["# Component reference", "",
           "Generated from the registry when the site is built (`mmspec components NAME` prints the same). Each "
           "component is a node type of its section; its example is a complete spec, tested like every other.", ""]
    for slot in ("encoders", "fusion", "heads", "objectives"):
        out += [f"## {slot.capitalize()}", ""]
        for r in (r for r in rows if r["slot"] == slot):
            out += [f"### `{r['name']}`", "", _cell(paragraphs[r["slot"], r["name"]]) or "(no summary)", ""]
            facts = [f"export: {'yes' if r['exportable'] else 'no (training only)' if r['training_only'] else 'no'}",
                     f"from: {r['origin']}", f"weight layouts: {', '.join(r['weight_layouts'])}"]
            out += ["; ".join(facts) + (f". {_cell(r['notes'])}" if r["notes"] else ""), ""]
            out += ["| field | type | default | description |", "| --- | --- | --- | --- |"]
            out += [f"| `{f}` | {_cell(i['type'])} | {'required' if i['required'] else _cell(i['default'])} | "
                    f"{_cell(i['doc'])} |" for f, i in r["fields"].items()]
            for name, tree in r["examples"].items():
                out += ["", f"Example `{name}`:", "", "```yaml", dump_spec(tree).rstrip(), "```"]
            out.append("")
    return "\n".join(out) + "\n"


def cli_page() -> str:
    """The command reference, from the typer application's commands and their options."""
    import typer

    from mmspec.cli import app

    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="mmspec")
    out = ["# Command reference", "", "Generated from the command-line application when the site is built "
           "(`mmspec COMMAND --help` prints the same).", "", _cell(group.help or ""), ""]
    for name, command, parent in _commands(group, ctx):
        sub = command.context_class(command, info_name=name.rsplit(" ", 1)[-1], parent=parent)
        out += [f"## `{name}`", "", "```", command.get_usage(sub).strip(), "```", ""]
        out += [_text(command.help or "").strip(), ""]
        params = [p for p in command.get_params(sub) if p.name != "help"]
        if params:
            out += ["| argument or option | description | default |", "| --- | --- | --- |"]
            for p in params:
                names = ", ".join(f"`{n}`" for n in [*p.opts, *p.secondary_opts]) if p.param_type_name == "option" \
                    else f"`{(p.metavar or p.name).upper()}`"
                value = getattr(p.default, "value", p.default)  # an enum's value, as typed on the command line
                default = "" if p.required or value in (None, False, ()) else f"`{value}`"
                out.append(f"| {names} | {_cell(getattr(p, 'help', None) or '')} | {default} |")
            out.append("")
    return "\n".join(out) + "\n"


def _commands(group, ctx, prefix: str = "mmspec"):
    """(full name, command, its parent context) of every command, subcommands of groups (`import hf`) included."""
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if hasattr(command, "list_commands"):  # a group (typer ships its own click: no isinstance checks)
            sub = command.context_class(command, info_name=name, parent=ctx)
            yield from _commands(command, sub, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", command, ctx
