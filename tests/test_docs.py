"""The docs stand on their own: every diagnostic code the code base can emit is documented in docs/contracts.md
(and nothing else is), and no page points outside the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(ROOT / "mmspec").rglob("*.py"), *(ROOT / "backends").rglob("*.py")])
CONTRACTS = ROOT / "docs" / "contracts.md"
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
CODE = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
OUTSIDE = ("DESIGN.md", "survey-inventory.md", "reliability.md", "feasibility.md", "../shared")


def _name(call: ast.Call) -> str | None:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def _strings(node: ast.AST | None) -> list[str]:
    """String constants a code argument can evaluate to (`"a"`, `"a" if x else "b"`)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _strings(node.body) + _strings(node.orelse)
    return []


def emitted_codes() -> dict[str, str]:
    """Diagnostic code -> first place it is emitted, found in the AST of mmspec/ and backends/.

    A code is: the `code` argument (by position or keyword, or its default) of any function, method or class
    with a parameter or dataclass field named `code` (Diagnostic, CheckError, fail, _fail, error, ...); the
    second argument of `*.diag(path, code, msg)`; the middle item of a `(path, code, message)` problem tuple
    appended to a list; the error type of a `PydanticCustomError`; and the items of a module-level `*_CODES`
    collection."""
    trees = {p: ast.parse(p.read_text(encoding="utf-8"), str(p)) for p in SOURCES}
    slots: dict[str, set[int]] = {"diag": {1}, "PydanticCustomError": {0}}
    found: dict[str, str] = {}

    def add(node: ast.AST | None, path: Path) -> None:
        for s in _strings(node):
            found.setdefault(s, f"{path.relative_to(ROOT)}:{node.lineno}")

    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = node.args.posonlyargs + node.args.args
                names = [a.arg for a in args]
                if "code" in names:
                    bound = names[:1] in (["self"], ["cls"])
                    owner = node.name
                    if node.name == "__init__":
                        owner = next(c.name for c in ast.walk(tree) if isinstance(c, ast.ClassDef) and node in c.body)
                    slots.setdefault(owner, set()).add(names.index("code") - bound)
                    defaults = dict(zip(names[len(names) - len(node.args.defaults):], node.args.defaults, strict=True))
                    add(defaults.get("code"), path)
            elif isinstance(node, ast.ClassDef):
                annotated = [s.target for s in node.body if isinstance(s, ast.AnnAssign)]
                fields = [t.id for t in annotated if isinstance(t, ast.Name)]
                if "code" in fields and any("dataclass" in ast.unparse(d) for d in node.decorator_list):
                    slots.setdefault(node.name, set()).add(fields.index("code"))
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id.endswith("_CODES") for t in targets):
                    value = node.value
                    items = value.values if isinstance(value, ast.Dict) else getattr(value, "elts", [])
                    for item in items:
                        add(item, path)
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _name(node)
            for kw in node.keywords:
                if kw.arg == "code":
                    add(kw.value, path)
            for i in slots.get(name, ()):
                if i < len(node.args):
                    add(node.args[i], path)
            if name == "append" and node.args and isinstance(node.args[0], ast.Tuple) and len(node.args[0].elts) == 3:
                add(node.args[0].elts[1], path)
    return {code: where for code, where in found.items() if CODE.fullmatch(code)}


def documented_codes() -> set[str]:
    """The codes in the first column of the diagnostic-code table of docs/contracts.md."""
    return set(re.findall(r"^\| `([a-z0-9-]+)` \| [^|`]+ \| ", CONTRACTS.read_text(encoding="utf-8"), re.M))


def test_the_extractor_finds_the_known_codes():
    codes = emitted_codes()
    assert len(codes) >= 40, sorted(codes)
    for code in ("yaml-syntax", "unknown-key", "value", "check", "cycle", "budget", "unsafe-pickle", "tied-mismatch",
                 "unknown-survey-id", "no-outputs"):
        assert code in codes, code


def test_every_emitted_code_is_documented():
    undocumented = {c: w for c, w in emitted_codes().items() if c not in documented_codes()}
    assert not undocumented, f"add these codes to the table in docs/contracts.md: {undocumented}"


def test_every_documented_code_is_emitted():
    stale = documented_codes() - set(emitted_codes())
    assert not stale, f"docs/contracts.md lists codes that nothing emits: {sorted(stale)}"


def test_every_corpus_code_is_documented():
    expected = yaml.safe_load((ROOT / "tests" / "corpus" / "expected.yaml").read_text(encoding="utf-8"))
    assert {e["code"] for e in expected.values()} <= documented_codes()


def test_docs_do_not_point_outside_the_repository():
    """Pages, docstrings and comments (tests, examples and the corpus included) cite only what the repository has."""
    texts = [*PAGES, *SOURCES, *(ROOT / "tests").rglob("*.py"), *(ROOT / "tests").rglob("*.md"),
             *(ROOT / "tests" / "corpus").glob("*.yaml"), *(ROOT / "examples").glob("*.py")]
    for page in texts:
        if page == Path(__file__).resolve():
            continue
        text = page.read_text(encoding="utf-8")
        for name in OUTSIDE:
            assert name not in text, f"{page.relative_to(ROOT)} mentions {name}"


GENERATED = {"reference/components.md", "reference/cli.md"}  # written by docs/hooks.py when the site builds


def test_relative_links_resolve():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            generated = page.parent == ROOT / "docs" and target in GENERATED
            assert generated or (page.parent / target).exists(), f"{page.relative_to(ROOT)}: broken link {target}"
