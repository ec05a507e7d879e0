"""No import cycles among the project's packages, computed from the sources with ``ast``.

Edges are every import statement (absolute and relative; inside ``try``/``if``/``with`` and
inside functions too, not under ``if TYPE_CHECKING:``): an import moved into a function
only hides a cycle (the two modules still need each other, the first call pays for it),
as ``artifact_contract.manifest`` <-> ``policy`` did (issue 38). ``import a.b`` is an edge to
``a.b``; ``from a import name`` is an edge to ``a.name`` when that is a module of the
project, else to ``a``. So ``from pkg.sub import x`` inside ``pkg`` is an edge to
``pkg.sub``, not to ``pkg``'s ``__init__``, and an ``__init__`` re-exporting its
submodules makes no cycle by itself. (That the service imports no torch, training or
models code is tests/service/test_service_imports.py.)
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "training", "service", "artifact_contract", "benchmarks", "scripts", "experiments")

#: module -> {imported module: "file:line" of the first such import}
Graph = dict[str, dict[str, str]]


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Every ``.py`` file under the packages that exist, by dotted module name."""
    modules: dict[str, Path] = {}
    for pkg in packages:
        if (root / pkg).is_dir():
            for path in sorted((root / pkg).rglob("*.py")):
                modules[_module_name(root, path)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement of the module, functions' bodies included; what only a type
    checker reads (``if TYPE_CHECKING:``) is left out, its ``else`` kept."""
    stack: list[ast.AST] = list(reversed(tree.body))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(reversed(node.orelse))
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _known(modules: dict[str, Path], dotted: str) -> str | None:
    """``dotted`` or its longest prefix that is a project module (None: not the project's)."""
    while dotted and dotted not in modules:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def import_graph(root: Path, packages: Iterable[str] = PACKAGES) -> Graph:
    modules = project_modules(root, packages)
    graph: Graph = {m: {} for m in modules}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _imports(tree):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [_known(modules, alias.name) for alias in node.names]
            else:
                if node.level:
                    base = module if is_package else module.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        base = base.rpartition(".")[0]
                    source = f"{base}.{node.module}" if node.module else base
                else:
                    source = node.module or ""
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    targets.append(sub if sub in modules else _known(modules, source))
            where = f"{path.relative_to(root)}:{node.lineno}"
            for target in targets:
                if target is not None and target != module:
                    graph[module].setdefault(target, where)
    return graph


def find_cycles(graph: Graph) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component with a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]  # iterative Tarjan
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return [_cycle_in(graph, set(c), c[0]) for c in components]


def _cycle_in(graph: Graph, members: set[str], start: str) -> list[str]:
    """A shortest path start -> ... -> start inside one component (breadth first)."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in parents:
                    parents[child] = node
                    nxt.append(child)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover


def describe(graph: Graph, cycle: list[str]) -> str:
    steps = "; ".join(f"{graph[a][b]} imports {b}" for a, b in zip(cycle, cycle[1:], strict=False))
    return " -> ".join(cycle) + f" ({steps})"


# --------------------------------------------------------------------------- the project


def test_project_has_no_import_cycle() -> None:
    graph = import_graph(PROJECT_ROOT)
    # the parser sees the project: a broken walk must not pass silently
    assert {"models", "training.trainer", "training.data.datasets", "service.app"} <= set(graph)
    assert "training.data" in graph["training.trainer"]
    assert "models.config" in graph["training.data.info"]
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(describe(graph, c) for c in cycles)


def test_models_never_import_training() -> None:
    graph = import_graph(PROJECT_ROOT)
    bad = [
        f"{graph[m][t]} imports {t}"
        for m in graph
        if m.split(".")[0] == "models"
        for t in graph[m]
        if t.split(".")[0] in ("training", "service")
    ]
    assert not bad, bad


# --------------------------------------------------------------------------- the checker itself


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_checker_names_a_cycle_through_relative_and_absolute_imports(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import A\n",
            "pkg/a.py": "from . import b\nA = 1\n",
            "pkg/b.py": "try:\n    from pkg.sub.c import C\nexcept ImportError:\n    C = None\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/c.py": "import pkg.a\nC = 2\n",
        },
    )
    graph = import_graph(root, ["pkg"])
    assert graph["pkg.a"] == {"pkg.b": "pkg/a.py:1"}
    assert graph["pkg.b"] == {"pkg.sub.c": "pkg/b.py:2"}
    cycles = find_cycles(graph)
    assert cycles == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
    text = describe(graph, cycles[0])
    assert text.startswith("pkg.a -> pkg.b -> pkg.sub.c -> pkg.a")
    assert "pkg/sub/c.py:1 imports pkg.a" in text


@pytest.mark.parametrize(
    "b_source",
    [
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import A\n",
        "from pkg import c\n",  # pkg.c is a module: an edge to it, not to pkg's __init__
    ],
    ids=["type-checking", "sibling-through-package"],
)
def test_checker_ignores_what_never_runs_and_imports_of_siblings(tmp_path: Path, b_source: str) -> None:
    root = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import A\nfrom pkg.b import *\n",
            "pkg/a.py": "from pkg.b import *\nA = 1\n",
            "pkg/b.py": b_source,
            "pkg/c.py": "X = 3\n",
        },
    )
    graph = import_graph(root, ["pkg"])
    assert find_cycles(graph) == []
    assert "pkg" not in graph["pkg.b"]


def test_checker_counts_an_import_of_the_parent_packages_names(tmp_path: Path) -> None:
    """``from pkg import name`` (not a module) inside ``pkg`` runs ``pkg/__init__``: an edge."""
    root = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import A\nB = 2\n",
            "pkg/a.py": "from pkg import B\nA = 1\n",
        },
    )
    graph = import_graph(root, ["pkg"])
    assert find_cycles(graph) == [["pkg", "pkg.a", "pkg"]]


@pytest.mark.parametrize(
    "b_source",
    [
        "def f():\n    from pkg.a import A\n    return A\n",
        "class K:\n    def m(self):\n        import pkg.a\n        return pkg.a.A\n",
        "F = lambda: __import__('x')\ndef g():\n    if True:\n        from . import a\n",
    ],
    ids=["function", "method", "nested-relative"],
)
def test_checker_counts_imports_inside_functions(tmp_path: Path, b_source: str) -> None:
    """The hidden cycle of issue 38: ``a`` imports ``b`` at the top, ``b`` imports ``a`` back
    in a function (to dodge the import-time error): still a cycle."""
    root = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import *\nA = 1\n",
            "pkg/b.py": b_source,
        },
    )
    graph = import_graph(root, ["pkg"])
    assert "pkg.a" in graph["pkg.b"]
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]
