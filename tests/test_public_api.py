"""Plugins use only the public API, and the core's subpackages import each other without cycles.

Both checks read the source with :mod:`ast` (nothing is imported), so they hold for every module
whether or not its optional dependencies are installed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import crossdock

ROOT = Path(__file__).resolve().parents[1]
CORE = Path(crossdock.__file__).resolve().parent

BUILTIN_PLUGIN_FILES = [
    *sorted((CORE / "ingest" / "sources").glob("*.py")),
    *sorted((CORE / "deliver" / "destinations").glob("*.py")),
    CORE / "transform" / "default.py",
]
"""The built-in plugins: they are written like third-party plugins, against ``crossdock``."""


def _imported_modules(tree: ast.Module, module: str) -> Iterator[tuple[str, int]]:
    """Every module ``tree`` imports (absolute names; relative imports resolved), with line."""
    package = module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            yield base, node.lineno
            for alias in node.names:  # ``from crossdock import types`` imports a module too
                yield f"{base}.{alias.name}", node.lineno


def _is_private_core(name: str) -> bool:
    if not name.startswith("crossdock."):
        return False
    if name == "crossdock.testing" or name.startswith("crossdock.testing."):
        return False
    # ``from crossdock import Secret`` yields "crossdock.Secret": a public name, not a module
    return (CORE / name.split(".")[1]).exists() or (CORE / f"{name.split('.')[1]}.py").exists()


def _module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _plugin_module_name(path: Path) -> str:
    """``plugins/hull/src/crossdock_hull/jwt.py`` → ``crossdock_hull.jwt``."""
    vendor = path.relative_to(ROOT / "plugins").parts[0]
    parts = path.relative_to(ROOT / "plugins" / vendor / "src").with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private_imports(files: list[Path], module_of: dict[Path, str]) -> list[str]:
    bad = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name, line in _imported_modules(tree, module_of[path]):
            if _is_private_core(name):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return bad


def test_vendor_plugins_import_only_the_public_api() -> None:
    files = sorted((ROOT / "plugins").glob("*/src/**/*.py"))
    assert len({p.relative_to(ROOT).parts[1] for p in files}) >= 5
    module_of = {p: _plugin_module_name(p) for p in files}
    assert _private_imports(files, module_of) == []


def test_builtin_plugins_import_only_the_public_api() -> None:
    files = [p for p in BUILTIN_PLUGIN_FILES if p.name != "__init__.py"]
    assert len(files) >= 7
    module_of = {p: _module_name(p) for p in files}
    assert _private_imports(files, module_of) == []


def test_the_check_sees_private_imports() -> None:
    tree = ast.parse(
        "import crossdock\nfrom crossdock import Secret, types\nfrom crossdock.testing import x\n"
        "import crossdock.config.load\nfrom ..http import send\n"
    )
    names = [n for n, _ in _imported_modules(tree, "crossdock.deliver.destinations.acme")]
    assert [n for n in names if _is_private_core(n)] == [
        "crossdock.types",
        "crossdock.config.load",
        "crossdock.deliver.http",
        "crossdock.deliver.http.send",
    ]


# ---------------------------------------------------------------------------------------------
# No import cycles between the core's subpackages


def _top_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported: module level and inside module-level ``if``/
    ``try``/``with`` blocks, but not under ``if TYPE_CHECKING:`` nor inside functions."""
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            test = node.test
            if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
            ):
                stack.extend(node.orelse)
                continue
            stack.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            stack.extend(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                stack.extend(handler.body)
        elif isinstance(node, ast.With):
            stack.extend(node.body)


def _unit(module: str) -> str | None:
    """The subpackage (or top-level module) ``module`` belongs to; ``None`` for the facade."""
    parts = module.split(".")
    if parts[0] != "crossdock" or len(parts) == 1:
        return None
    name = parts[1]
    if (CORE / name).is_dir() or (CORE / f"{name}.py").exists():
        return name
    return None  # a name re-exported by the facade (``from crossdock import Secret``)


def _core_graph() -> dict[str, set[str]]:
    """Subpackage → subpackages it imports at module level. The facade ``crossdock`` itself is
    left out: it is the plugins' entry and re-exports the leaves (a separate test checks that
    nothing it imports imports it back)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(CORE.rglob("*.py")):
        module = _module_name(path)
        source = _unit(module)
        if source is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges = graph.setdefault(source, set())
        for node in _top_level_imports(tree):
            for name, _ in _imported_modules(ast.Module(body=[node], type_ignores=[]), module):
                target = _unit(name)
                if target is not None and target != source:
                    edges.add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path, or ``None``."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles_between_core_subpackages() -> None:
    graph = _core_graph()
    assert {"ingest", "queue", "transform", "deliver", "config", "cli", "web", "plugins"} <= set(
        graph
    )
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_facade_is_not_imported_back_by_what_it_imports() -> None:
    """``import crossdock`` loads some modules eagerly; none of them may need ``crossdock``
    itself at module level (that would be a real cycle, whatever the subpackage graph says)."""
    modules = {_module_name(p): p for p in CORE.rglob("*.py")}

    def imports(module: str) -> set[str]:
        tree = ast.parse(modules[module].read_text(encoding="utf-8"))
        found = set()
        for node in _top_level_imports(tree):
            for name, _ in _imported_modules(ast.Module(body=[node], type_ignores=[]), module):
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name:
                    found.add(name)
        return found

    seen: set[str] = set()
    todo = sorted(imports("crossdock") - {"crossdock"})
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        back = imports(module)
        assert "crossdock" not in back, f"{module} imports the crossdock facade at module level"
        todo.extend(sorted(back - seen))


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a"}}) is None
