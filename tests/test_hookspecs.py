"""Meta-tests of the hook contracts: documented, exported, and implemented by the built-ins."""

from __future__ import annotations

import inspect
from pathlib import Path

import crossdock
from crossdock.plugins import hookspecs
from crossdock.plugins.discovery import BUILTIN_PLUGINS

HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("crossdock_"))
DOCS = (Path(__file__).resolve().parents[1] / "docs" / "plugin-hooks.md").read_text()


def test_the_five_hooks() -> None:
    assert HOOKS == [
        "crossdock_destination_types",
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
