"""Dependencies point one way: cli -> api/testing -> train/graph/passes/weights/importers/backends -> components
(+ registry) -> blocks -> spec. Every import of an mmspec module, lazy ones inside functions included, must go to
the same layer or a lower one; and no module imports an underscore-private name from another module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {
    "mmspec.errors": 0, "mmspec.spec": 0,
    "mmspec.blocks": 1,
    "mmspec.registry": 2, "mmspec.components": 2,
    "mmspec.graph": 3, "mmspec.passes": 3, "mmspec.train": 3, "mmspec.weights": 3, "mmspec.importers": 3,
    "mmspec.backends": 3, "mmspec.runtime": 3,
    "mmspec.api": 4, "mmspec.testing": 4, "mmspec": 4,
    "mmspec.cli": 5,
}


def _module(path: Path) -> str:
    """The import name of a source file (backends/ installs as mmspec.backends)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    parts = ("mmspec", *parts) if parts[0] == "backends" else parts
    return ".".join(p for p in parts if p != "__init__")


def _layer(module: str) -> int:
    best = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len)
    return LAYERS[best]


def _imports(tree: ast.AST, module: str, is_package: bool):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module, [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = module if is_package else module.rsplit(".", 1)[0]
            base = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
            yield node.lineno, f"{base}.{node.module}" if node.module else base, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name, []


SOURCES = sorted([*(ROOT / "mmspec").rglob("*.py"), *(ROOT / "backends").glob("*.py")])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path):
    module = _module(path)
    problems = []
    for line, target, names in _imports(ast.parse(path.read_text()), module, path.name == "__init__.py"):
        if target != "mmspec" and not target.startswith("mmspec."):
            continue
        if _layer(target) > _layer(module):
            problems.append(f"{path.name}:{line}: {module} (layer {_layer(module)}) imports {target} "
                            f"(layer {_layer(target)})")
        package = target.rsplit(".", 1)[0]
        outside = not (module == package or module.startswith(package + "."))
        private = [n for n in names if n.startswith("_") and n != "__version__"]
        if outside and (private or target.rsplit(".", 1)[-1].startswith("_")):
            problems.append(f"{path.name}:{line}: {module} imports private {private or target} from outside "
                            f"its package")
    assert not problems, "\n".join(problems)
