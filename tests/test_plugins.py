"""crossdock.plugins.discovery: entry points of hand-written test distributions."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import pytest

import crossdock
from crossdock.plugins.discovery import BUILTIN_PLUGINS, installed_plugins, make_plugin_manager
from crossdock.plugins.registry import Registry

FAKE_DISTS = Path(__file__).parent / "data" / "fake_dists"


@pytest.fixture
def fake_dists(monkeypatch):
    """Put the test distributions on sys.path; forget their modules afterwards."""
    monkeypatch.syspath_prepend(str(FAKE_DISTS))
    importlib.invalidate_caches()
    monkeypatch.delenv("CROSSDOCK_DISABLE_PLUGINS", raising=False)
    yield FAKE_DISTS
    for name in [m for m in sys.modules if m.startswith("crossdock_fake_")]:
        del sys.modules[name]


def _ours(problems: list[str]) -> list[str]:
    """Problems about the fake distributions (other installed plugins may have their own)."""
    return [p for p in problems if "fake" in p]


def test_builtins_only_without_entrypoints(monkeypatch):
    monkeypatch.delenv("CROSSDOCK_DISABLE_PLUGINS", raising=False)
    result = make_plugin_manager(entrypoints=False)
    pm, problems = result  # unpacks like a pair
    assert pm is result.pm
    assert list(result.plugins) == list(BUILTIN_PLUGINS)
    for name in BUILTIN_PLUGINS:
        info = result.plugins[name]
        assert info.builtin
        assert info.distribution == "crossdock"
        assert info.version == crossdock.__version__
        if info.ok:
            assert pm.get_plugin(name) is not None
        else:  # a built-in still being written: a named problem, not a crash
            assert any(p.startswith(f"plugin {name} (crossdock ") for p in problems)


def test_discovery_good_broken_duplicate_typo(fake_dists):
    result = make_plugin_manager()
    problems = _ours(result.problems)
    good = result.plugins["fakegood"]
    assert good.ok
    assert (good.distribution, good.version) == ("crossdock-fake-good", "1.0")
    assert good.entry_point == "fakegood = crossdock_fake_good"
    assert result.pm.get_plugin("fakegood") is sys.modules["crossdock_fake_good"]

    broken = result.plugins["fakebroken"]
    assert broken.status.startswith("failed: entry point crossdock_fake_broken failed to load: ")
    assert "ImportError: crossdock_fake_broken needs a module" in broken.status
    assert any(
        p.startswith("plugin fakebroken (crossdock-fake-broken 0.3): entry point") for p in problems
    )

    assert any(
        "fakegood: entry point name provided by several distributions: "
        "crossdock-fake-good 1.0, crossdock-fake-zdup 0.9" in p
        for p in problems
    ), problems

    typo = result.plugins["faketypo"]
    assert typo.status.startswith("failed: unknown hook crossdock_destination_type")
    assert result.pm.get_plugin("faketypo") is None
    assert any(
        p.startswith("plugin faketypo (crossdock-fake-typo 0.1): unknown hook") for p in problems
    )
    result.pm.check_pending()  # nothing unknown is left registered


def test_blocked_names_and_env(fake_dists, monkeypatch):
    result = make_plugin_manager(blocked=["fakebroken"])
    assert result.plugins["fakebroken"].status == "blocked"
    assert not any("fakebroken" in p for p in result.problems)
    monkeypatch.setenv("CROSSDOCK_DISABLE_PLUGINS", "faketypo, fakedup")
    result = make_plugin_manager()
    assert result.plugins["faketypo"].status == "blocked"
    assert result.plugins["fakedup"].status == "blocked"
    assert result.pm.get_plugin("fakedup") is None


def test_registry_reports_type_conflict_with_every_provider(fake_dists):
    registry = Registry(make_plugin_manager())
    conflict = [p for p in registry.problems if p.startswith('destination type "fakegood"')]
    assert conflict == [
        'destination type "fakegood" is declared by several plugins: '
        "fakedup (crossdock-fake-dup 2.0), fakegood (crossdock-fake-good 1.0)"
    ] or conflict == [
        'destination type "fakegood" is declared by several plugins: '
        "fakegood (crossdock-fake-good 1.0), fakedup (crossdock-fake-dup 2.0)"
    ]
    assert "fakegood" not in registry.destination_types
    assert registry.source_types["fakegood-in"].description == "fake source"
    assert registry.owner_of("source", "fakegood-in") == "fakegood"


def test_installed_plugins_rows(fake_dists):
    registry = Registry(make_plugin_manager(blocked=["fakedup"]))
    rows = {r["name"]: r for r in installed_plugins(registry)}
    good = rows["fakegood"]
    assert good["distribution"] == "crossdock-fake-good"
    assert good["version"] == "1.0"
    assert good["source_types"] == ["fakegood-in"]
    assert good["destination_types"] == ["fakegood"]
    assert good["hooks"] == [
        "crossdock_destination_types",
        "crossdock_make_deliverer",
        "crossdock_source_types",
    ]
    assert good["status"] == "ok"
    assert rows["fakebroken"]["status"].startswith("failed: ")
    assert rows["fakedup"]["status"] == "blocked"
    for name in BUILTIN_PLUGINS:
        assert rows[name]["distribution"] == "crossdock"
        assert rows[name]["version"] == crossdock.__version__


def test_extra_plugins_and_bad_signature(monkeypatch):
    monkeypatch.delenv("CROSSDOCK_DISABLE_PLUGINS", raising=False)

    @crossdock.hookimpl
    def crossdock_make_deliverer(destination, http, nonsense):
        return None

    bad = types.SimpleNamespace(crossdock_make_deliverer=crossdock_make_deliverer)
    result = make_plugin_manager(entrypoints=False, extra_plugins=[("badsig", bad)])
    assert result.plugins["badsig"].status.startswith("failed: cannot register: ")
    assert any(p.startswith("plugin badsig: cannot register") for p in result.problems)
    assert result.pm.get_plugin("badsig") is None
