"""Meta-tests of the hook contracts: documented, exported, and implemented by the built-ins."""

from __future__ import annotations

import inspect
from pathlib import Path

import crossdock
from crossdock.plugins import hookspecs
from crossdock.plugins.discovery import BUILTIN_PLUGINS

HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("crossdock_"))
DOCS = (Path(__file__).resolve().parents[1] / "docs" / "plugin-hooks.md").read_text()


def test_the_six_hooks() -> None:
    assert HOOKS == [
        "crossdock_destination_types",
        "crossdock_jmespath_functions",
        "crossdock_make_deliverer",
        "crossdock_make_ingestor",
        "crossdock_make_transformer",
        "crossdock_source_types",
    ]


def test_every_hook_has_a_contract_docstring_with_an_example() -> None:
    for name in HOOKS:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert "Example::" in doc, name
        assert "Called once" in doc, name


def test_every_hook_is_documented_with_its_exact_signature() -> None:
    for name in HOOKS:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"## `{name}({params})`" in DOCS, name


def test_public_api_exports_the_hook_marker_and_records() -> None:
    assert crossdock.hookimpl is hookspecs.hookimpl
    for name in crossdock.__all__:
        assert getattr(crossdock, name) is not None, name


def test_builtins_implement_only_known_hooks() -> None:
    import importlib

    for module_name in BUILTIN_PLUGINS:
        module = importlib.import_module(module_name)
        implemented = [n for n in vars(module) if n.startswith("crossdock_")]
        assert implemented, module_name
        assert set(implemented) <= set(HOOKS), module_name


CORE = Path(crossdock.__file__).resolve().parent

# Names the core looks up with getattr/hasattr on objects that are NOT a plugin's: each is here
# with what it is read from. Anything else looked up by name is an optional member of a plugin
# object and must be written down (below).
NOT_PLUGIN_MEMBERS = {
    "__notes__": "exceptions (cattrs' validation notes)",
    "__name__": "types and modules, for messages",
    "conflicts": "the registry",
    "description": "a NATS server error",
    "value": "a NATS enum",
    "conn": "the SQLite queue's thread-local",
    "reason": "an outcome record",
    "_value": "an aiohttp payload",
    "golden_events": "crossdock.testing.events",
    "dist": "an importlib entry point",
    "name": "an item of DestinationType.functions, checked by the registry",
}


def _looked_up_names() -> dict[str, list[str]]:
    """Every literal attribute name passed to getattr/hasattr in the core, with where."""
    import ast

    found: dict[str, list[str]] = {}
    for path in sorted(CORE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
            ):
                where = f"{path.relative_to(CORE)}:{node.lineno}"
                found.setdefault(node.args[1].value, []).append(where)
    return found


def _protocol_members() -> set[str]:
    """Members declared by the Protocol classes of crossdock.types."""
    import typing

    from crossdock import types as core_types

    members: set[str] = set()
    for value in vars(core_types).values():
        if isinstance(value, type) and getattr(value, "_is_protocol", False):
            if value is typing.Protocol:
                continue
            members |= {n for n in vars(value) if not n.startswith("_")}
    return members


def test_every_optional_plugin_member_the_core_looks_up_is_written_down() -> None:
    optional = {
        name: where for name, where in _looked_up_names().items() if name not in NOT_PLUGIN_MEMBERS
    }
    assert {"response_headers", "web_routes", "matches", "request_cost"} <= set(optional)
    declared = _protocol_members()
    hook_docs = inspect.getsource(hookspecs)
    for name, where in optional.items():
        assert name in declared, f"{name} ({where}): declare it in a Protocol of crossdock.types"
        assert f"``{name}(" in hook_docs, f"{name} ({where}): describe it in the hook docs"


def test_optional_member_protocols_are_public_and_runtime_checkable() -> None:
    from crossdock.transform.mapping import compile_mapping

    for name in ("HasResponseHeaders", "HasWebRoutes", "HasMatches", "HasRequestCost"):
        assert name in crossdock.__all__
    assert isinstance(compile_mapping({"n": "event"}), crossdock.HasMatches)
    assert not isinstance(object(), crossdock.HasRequestCost)
