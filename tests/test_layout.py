"""The layout's rules: arrows run one way (commands -> task/datamodules -> models -> io), no circles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import TESTS

REPO = TESTS.parent
PACKAGES = ("lrsa_seg", "datamodules")
MAX_LINES = 450
BELOW_MODELS = (
    "lrsa_seg.models",
    "lrsa_seg.io",
    "lrsa_seg.errors",
    "lrsa_seg.constants",
    "lrsa_seg.labels",
    "lrsa_seg.hub",
)
"""What model code may import: itself and the layers below it (files, sources, errors, constants, label sets)."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def imports_of(name: str, path: Path, top_level_only: bool) -> set[str]:
    """Project modules imported by ``name`` (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    known = modules()
    return {m for m in found if m in known and m != name}


def test_nothing_outside_the_commands_imports_them() -> None:
    offenders = [
        f"{name} imports {target}"
        for name, path in modules().items()
        if not name.startswith("lrsa_seg.cli") and name != "lrsa_seg.__main__"  # the command's entry point
        for target in imports_of(name, path, top_level_only=False)
        if target.startswith("lrsa_seg.cli")
    ]
    assert not offenders


def test_models_import_neither_lightning_nor_the_layers_above() -> None:
    for name, path in modules().items():
        if not name.startswith("lrsa_seg.models"):
            continue
        text = path.read_text()
        assert "import lightning" not in text and "from lightning" not in text, name
        for target in imports_of(name, path, top_level_only=False):
            assert target.startswith(BELOW_MODELS), f"{name} imports {target}"


def test_the_layers_below_models_import_nothing_above_them() -> None:
    for name, path in modules().items():
        if name.startswith(BELOW_MODELS[1:]):
            for target in imports_of(name, path, top_level_only=False):
                assert target.startswith(BELOW_MODELS[1:]), f"{name} imports {target}"


def test_no_import_circles() -> None:
    # Imports inside functions count: a lazy import can hide a circle, not remove it.
    graph = {name: imports_of(name, path, top_level_only=False) for name, path in modules().items()}
    # A package's __init__ importing its own submodules is not a circle.
    graph = {name: {t for t in targets if not name or not t.startswith(name + ".")} for name, targets in graph.items()}
    visiting, done, cycles = set(), set(), []

    def visit(node: str, stack: list[str]) -> None:
        if node in done:
            return
        if node in visiting:
            cycles.append(stack[stack.index(node) :] + [node])
            return
        visiting.add(node)
        for target in sorted(graph.get(node, ())):
            visit(target, [*stack, node])
        visiting.discard(node)
        done.add(node)

    for name in sorted(graph):
        visit(name, [])
    assert not cycles, " | ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("name", sorted(modules()))
def test_module_size(name: str) -> None:
    assert len(modules()[name].read_text().splitlines()) <= MAX_LINES
