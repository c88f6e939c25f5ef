"""pgrad's imports form a DAG: no module imports itself back through others, at module level or inside a
function, and the sub-packages stack in layers (nothing low imports anything high).

The imports are read from the source with `ast` (every `import` / `from … import` anywhere in a file), so a
cycle hidden inside a function body is found just like one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pgrad

ROOT = Path(pgrad.__file__).parent

# Lower layers first; a unit may import only from its own layer's units below it (or itself).
LAYERS: list[set[str]] = [
    {"pgrad.errors", "pgrad.types"},
    {"pgrad.envs"},
    {"pgrad.policies", "pgrad.estimators"},
    {"pgrad.optim"},
    {"pgrad.run"},
    {"pgrad.algorithms"},
    {"pgrad.lab"},
    {"pgrad.api"},
    {"pgrad"},  # the public facade (pgrad/__init__.py)
    {"pgrad.cli"},
    # compare, tune, record, export, report: commands on the API that parse their flags with the cli's parser;
    # the cli and the facade reach them by name only, when one is run
    {"pgrad.workflow"},
    {"pgrad.demo"},  # `make demo`: trains, evaluates and records a GIF
    {"pgrad.__main__"},  # `python -m pgrad`: the cli's entry
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every pgrad module `name` imports (absolute and relative, at any depth of the file)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from a import b` imports module a.b when b is a module, else a name of a
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), i.e. the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def unit(module: str) -> str:
    """The layer unit of a module: its sub-package (pgrad.envs, …) or the top-level module itself."""
    parts = module.split(".")
    return ".".join(parts[:2])


def layer(u: str) -> int:
    for i, units in enumerate(LAYERS):
        if u in units:
            return i
    raise AssertionError(f"{u} is in no layer: add it to LAYERS in tests/test_imports.py")


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_import_walker_sees_function_level_and_relative_imports(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    source = "import os\nfrom . import b\n\ndef f():\n    from pkg.c import x\n"
    (package / "a.py").write_text(source)
    found = imports_of("pkg.a", package / "a.py", {"pkg.a", "pkg.b", "pkg.c"})
    assert found == {"pkg.b", "pkg.c"}


def test_no_module_import_cycles():
    assert cycles(graph()) == []


def test_sub_packages_import_only_lower_layers():
    wrong = sorted(
        f"{src} imports {dst}"
        for src, targets in graph().items()
        for dst in targets
        if unit(src) != unit(dst) and layer(unit(dst)) >= layer(unit(src))
    )
    assert wrong == []
