"""crossdock.plugins.registry: declarations with owners, record checks, stage factories."""

from __future__ import annotations

import types
from typing import Any

import pytest
from attrs import frozen

import crossdock
from crossdock.errors import PluginError
from crossdock.plugins.registry import TRANSFORM_FALLBACK, load_registry


@frozen
class S:
    """Settings."""

    key: crossdock.Secret | None = None


def plugin(name: str, **hooks) -> tuple[str, types.ModuleType]:
    module = types.ModuleType(f"test_plugin_{name}")
    module.__dict__.update(hooks)
    return name, module


def dest_types(*names: str, **kw):
    @crossdock.hookimpl
    def crossdock_destination_types():
        return [crossdock.DestinationType(n, S, f"{n} destination", **kw) for n in names]

    return crossdock_destination_types


def source_types(*names: str):
    @crossdock.hookimpl
    def crossdock_source_types():
        return [crossdock.SourceType(n, S, f"{n} source") for n in names]

    return crossdock_source_types


def _destination(registry, name: str, settings=None) -> crossdock.Destination:
    dt = registry.destination_types[name]
    return crossdock.Destination(
        id="d1", plugin=name, type=dt, settings=settings or S(), mapping=dict(dt.mapping)
    )


@pytest.fixture(autouse=True)
def _no_env_block(monkeypatch):
    monkeypatch.delenv("CROSSDOCK_DISABLE_PLUGINS", raising=False)


def test_types_sorted_with_owners():
    registry = load_registry(
        entrypoints=False,
        extra_plugins=[
            plugin("zeta", crossdock_destination_types=dest_types("zz", "aa")),
            plugin("alpha", crossdock_source_types=source_types("src-b", "src-a")),
        ],
    )
    assert list(registry.destination_types) == sorted(registry.destination_types)
    assert list(registry.source_types) == sorted(registry.source_types)
    assert registry.owner_of("destination", "zz") == "zeta"
    assert registry.owner_of("source", "src-a") == "alpha"
    assert registry.types_of("zeta") == ([], ["aa", "zz"])
    with pytest.raises(KeyError):
        registry.owner_of("destination", "nope")


def test_invalid_records_are_problems():
    @crossdock.hookimpl
    def crossdock_destination_types():
        return [
            crossdock.DestinationType("Bad_Name", S, "x"),
            crossdock.DestinationType("nosettings", dict, "x"),
            crossdock.DestinationType("badmap", S, "x", mapping={"a": 1}),
            "not a record",
        ]

    @crossdock.hookimpl
    def crossdock_source_types():
        raise RuntimeError("boom")

    registry = load_registry(
        entrypoints=False,
        extra_plugins=[
            plugin(
                "messy",
                crossdock_destination_types=crossdock_destination_types,
                crossdock_source_types=crossdock_source_types,
            )
        ],
    )
    ours = sorted(p for p in registry.problems if p.startswith("plugin messy"))
    assert ours == [
        "plugin messy: crossdock_destination_types returned a str, not a DestinationType",
        "plugin messy: crossdock_source_types raised RuntimeError: boom",
        "plugin messy: destination type 'Bad_Name': name 'Bad_Name' is not a lower-case slug "
        "([a-z][a-z0-9-]*)",
        "plugin messy: destination type 'badmap': mapping is not a MappingFile nor a table of "
        "str to str",
        "plugin messy: destination type 'nosettings': settings is not an attrs class",
    ]
    assert not {"Bad_Name", "nosettings", "badmap"} & set(registry.destination_types)


def test_duplicate_types_list_every_provider():
    registry = load_registry(
        entrypoints=False,
        extra_plugins=[
            plugin("one", crossdock_destination_types=dest_types("same")),
            plugin("two", crossdock_destination_types=dest_types("same")),
        ],
    )
    assert "same" not in registry.destination_types
    assert registry.conflicts[("destination", "same")] in (["one", "two"], ["two", "one"])
    assert any(
        p.startswith('destination type "same" is declared by several') for p in registry.problems
    )


def test_plugin_cannot_shadow_a_builtin_type():
    registry = load_registry(entrypoints=False)
    if "file" not in registry.destination_types:
        pytest.skip("built-in file destination not written yet")
    registry = load_registry(
        entrypoints=False,
        extra_plugins=[plugin("evil", crossdock_destination_types=dest_types("file"))],
    )
    assert "file" not in registry.destination_types
    (problem,) = [p for p in registry.problems if p.startswith('destination type "file"')]
    assert "crossdock.deliver.destinations.file (crossdock " in problem
    assert "evil" in problem


def test_stage_hooks_called_only_on_the_declaring_plugin():
    calls: list[str] = []

    def deliverer_hook(tag):
        @crossdock.hookimpl
        def crossdock_make_deliverer(destination, http):
            calls.append(tag)
            return f"deliverer-{tag}"

        return crossdock_make_deliverer

    registry = load_registry(
        entrypoints=False,
        extra_plugins=[
            plugin(
                "first",
                crossdock_destination_types=dest_types("first-dest"),
                crossdock_make_deliverer=deliverer_hook("first"),
            ),
            plugin(
                "second",
                crossdock_destination_types=dest_types("second-dest"),
                crossdock_make_deliverer=deliverer_hook("second"),
            ),
        ],
    )
    assert (
        registry.make_deliverer(_destination(registry, "first-dest"), http=None)
        == "deliverer-first"
    )
    assert calls == ["first"]
    calls.clear()
    assert (
        registry.make_deliverer(_destination(registry, "second-dest"), http=None)
        == "deliverer-second"
    )
    assert calls == ["second"]


def test_transformer_plugin_first_then_fallback():
    @crossdock.hookimpl
    def crossdock_make_transformer(destination):
        if destination.id == "mine":
            return "custom-transformer"
        return None

    registry = load_registry(
        entrypoints=False,
        extra_plugins=[
            plugin(
                "custom",
                crossdock_destination_types=dest_types("custom-dest", mapping={"name": "event"}),
                crossdock_make_transformer=crossdock_make_transformer,
            ),
            plugin(
                "plain",
                crossdock_destination_types=dest_types("plain-dest", mapping={"n": "event"}),
            ),
        ],
    )
    mine = _destination(registry, "custom-dest")
    mine = crossdock.Destination(
        id="mine", plugin=mine.plugin, type=mine.type, settings=mine.settings, mapping=mine.mapping
    )
    assert registry.make_transformer(mine) == "custom-transformer"
    if registry.result.pm.get_plugin(TRANSFORM_FALLBACK) is None:
        pytest.skip("built-in JMESPath transformer not written yet")
    transform = registry.make_transformer(_destination(registry, "plain-dest"))
    assert transform({"type": "track", "event": "Clicked"}) == {"n": "Clicked"}


def test_factory_none_or_raising_is_a_plugin_error():
    @crossdock.hookimpl
    def crossdock_make_deliverer(destination, http):
        if destination.id == "d1":
            return None
        raise ValueError(f"cannot use key {destination.settings.key.reveal()}")

    registry = load_registry(
        entrypoints=False,
        extra_plugins=[
            plugin(
                "flaky",
                crossdock_destination_types=dest_types("flaky-dest"),
                crossdock_make_deliverer=crossdock_make_deliverer,
            )
        ],
    )
    with pytest.raises(PluginError) as info:
        registry.make_deliverer(_destination(registry, "flaky-dest"), http=None)
    assert info.value.plugin == "flaky"
    assert "crossdock_make_deliverer returned None for 'd1'" in str(info.value)

    secret = "super-secret-key-123"
    dest = _destination(registry, "flaky-dest", S(crossdock.Secret(secret)))
    dest = crossdock.Destination(
        id="d2", plugin=dest.plugin, type=dest.type, settings=dest.settings, mapping=dest.mapping
    )
    with pytest.raises(PluginError) as info:
        registry.make_deliverer(dest, http=None)
    assert "crossdock_make_deliverer failed for 'd2': ValueError" in str(info.value)
    assert secret not in str(info.value)


def test_guard_free_stage_hooks_never_see_another_plugins_components():
    """A plugin needs no ``if destination.plugin != NAME: return None``: its stage hooks are
    called only for the types it declared, never for another plugin's (built-ins included)."""
    seen: list[tuple[str, str]] = []

    def greedy(tag: str) -> types.SimpleNamespace:
        @crossdock.hookimpl
        def crossdock_make_ingestor(source):
            seen.append((tag, source.type))
            return f"ingestor-{tag}"

        @crossdock.hookimpl
        def crossdock_make_transformer(destination):
            seen.append((tag, destination.plugin))
            return f"transformer-{tag}"

        @crossdock.hookimpl
        def crossdock_make_deliverer(destination, http):
            seen.append((tag, destination.plugin))
            return f"deliverer-{tag}"

        return types.SimpleNamespace(
            crossdock_make_ingestor=crossdock_make_ingestor,
            crossdock_make_transformer=crossdock_make_transformer,
            crossdock_make_deliverer=crossdock_make_deliverer,
        )

    hooks = {tag: greedy(tag) for tag in ("one", "two")}
    registry = load_registry(
        entrypoints=False,
        extra_plugins=[
            plugin(
                tag,
                crossdock_source_types=source_types(f"{tag}-src"),
                crossdock_destination_types=dest_types(f"{tag}-dest"),
                **vars(hooks[tag]),
            )
            for tag in hooks
        ],
    )
    for tag in hooks:
        seen.clear()
        source = crossdock.Source(id="s", type=f"{tag}-src", path="/in", settings=S())
        destination = _destination(registry, f"{tag}-dest")
        assert registry.make_ingestor(source) == f"ingestor-{tag}"
        assert registry.make_transformer(destination) == f"transformer-{tag}"
        assert registry.make_deliverer(destination, http=None) == f"deliverer-{tag}"
        assert seen == [(tag, f"{tag}-src"), (tag, f"{tag}-dest"), (tag, f"{tag}-dest")]
    seen.clear()
    builtin = _destination(registry, "file")
    registry.make_transformer(builtin)
    registry.make_ingestor(
        crossdock.Source(id="w", type="webhook", path="/hooks/w", settings=_webhook_settings())
    )
    assert seen == []


def _webhook_settings():
    from crossdock.ingest.sources.webhook import WebhookSourceSettings

    return WebhookSourceSettings()


def _sharing(name: str, fn: Any, plugin_name: str) -> tuple[str, types.ModuleType]:
    @crossdock.hookimpl
    def crossdock_jmespath_functions():
        return [crossdock.JmesFunction.create(name, fn, ["any"])]

    return plugin(plugin_name, crossdock_jmespath_functions=crossdock_jmespath_functions)


def _is_vip(value: Any) -> bool:
    return isinstance(value, dict) and value.get("plan") == "vip"


def test_a_shared_function_reaches_every_destinations_mapping(tmp_path) -> None:
    from crossdock.config.load import parse_config

    registry = load_registry(entrypoints=False, extra_plugins=[_sharing("is_vip", _is_vip, "vip")])
    assert not registry.problems
    text = (
        '[[destinations]]\nid = "out"\nplugin = "file"\nwhere = "is_vip(traits)"\n'
        '[destinations.settings]\npath = "out.ndjson"\n'
        '[destinations.mapping]\nvip = "is_vip(traits)"\n'
    )
    [dest] = parse_config(text, registry, {}, base_dir=tmp_path).destinations
    transform = registry.make_transformer(dest)
    assert transform({"type": "identify", "traits": {"plan": "vip"}})["vip"] is True
    assert transform({"type": "identify", "traits": {"plan": "free"}}) is None


def test_shared_functions_that_clash_or_shadow_are_problems() -> None:
    registry = load_registry(
        entrypoints=False,
        extra_plugins=[
            _sharing("is_vip", _is_vip, "a"),
            _sharing("is_vip", lambda v: False, "b"),
            _sharing("length", len, "c"),
        ],
    )
    assert registry.shared_functions == ()
    text = "\n".join(registry.problems)
    assert "is_vip() is shared with different callables by: a" in text
    assert "it is left out" in text
    assert "length" in text
