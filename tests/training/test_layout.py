"""The training package's shape (docs/training.md): every import arrow points down, no circles, no imports of
training modules inside functions (the way a circle used to be hidden).

    shared modules (training/*.py)  <-  data/  <-  nets/  <-  recipes/  <-  exporters/  <-  cli.py, ood.py

A module may import its own layer (recipes/prices.py imports recipes/forecast.py) and any layer below it.
Parses the source (ast): imports nothing, runs in milliseconds.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "training"
LAYERS = {"shared": 0, "data": 1, "nets": 2, "recipes": 3, "exporters": 4, "entry": 5}
ENTRY = {"training.cli", "training.ood", "training.__main__"}
# Each entry is one import that the layout rules refuse; the test fails when an entry is no longer needed, so the
# list only shrinks. (The fraud / ICU modules written while this layout landed follow it since df793e7's successor.)
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> int:
    if module in ENTRY:
        return LAYERS["entry"]
    parts = module.split(".")
    return LAYERS.get(parts[1], LAYERS["shared"]) if len(parts) > 2 or parts[-1] in LAYERS else LAYERS["shared"]


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported training module, inside a function?) for every import statement of the file."""
    tree = ast.parse(path.read_text())
    known = {module_name(p) for p in PACKAGE.rglob("*.py")}
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, in_function) for a in child.names if a.name.startswith("training"))
            elif isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("training"):
                for a in child.names:  # `from training.nets import sequence` imports a module, not a name
                    sub = f"{child.module}.{a.name}"
                    found.append((sub if sub in known else child.module, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def graph() -> dict[str, list[tuple[str, bool]]]:
    return {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_arrow_points_down_or_sideways():
    wrong = sorted((src, dst) for src, deps in graph().items() for dst, _ in deps
                   if layer(dst) > layer(src) and (src, dst) not in KNOWN_EXCEPTIONS)
    assert not wrong, f"imports from a higher layer (docs/training.md): {wrong}"


def test_no_training_imports_inside_functions():
    inside = sorted((src, dst) for src, deps in graph().items() for dst, fn in deps
                    if fn and (src, dst) not in KNOWN_EXCEPTIONS)
    assert not inside, f"imports of training modules inside functions: {inside}"


def test_no_import_circles():
    edges = {src: {dst for dst, _ in deps if dst != src} for src, deps in graph().items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail("import circle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt in edges and not state.get(nxt):
                walk(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if not state.get(node):
            walk(node)


def test_known_exceptions_are_still_needed():
    present = {(src, dst) for src, deps in graph().items() for dst, _ in deps}
    stale = sorted(e for e in KNOWN_EXCEPTIONS if e not in present
                   and (Path(ROOT, *e[0].split(".")).with_suffix(".py").exists()))
    assert not stale, f"remove these from KNOWN_EXCEPTIONS: {stale}"


def test_every_exported_task_has_a_recipe_and_an_exporter_module():
    tree = ast.parse((PACKAGE / "exporters" / "__init__.py").read_text())
    table = next(n.value for n in ast.walk(tree) if isinstance(n, ast.AnnAssign) and n.target.id == "EXPORTERS")
    for value in ast.literal_eval(table).values():
        module, _, attr = value.partition(":")
        path = ROOT / Path(*module.split(".")).with_suffix(".py")
        assert path.exists(), value
        assert any(isinstance(n, ast.FunctionDef) and n.name == attr for n in ast.parse(path.read_text()).body), value
