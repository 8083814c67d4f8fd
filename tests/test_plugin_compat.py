"""A plugin written against the 0.1 plugin API keeps working in 0.2 (with deprecation warnings).

The plugin below is written the old way, on purpose: a process-global ``register_function``, a
``destination.plugin != NAME`` guard in every stage hook, its own transformer built on
``compile_mapping(destination.mapping, ...)``, a dict mapping and tables on the type, and a
deliverer that halves a refused batch itself. It must still load, pass ``crossdock check``-style
validation, transform and deliver, through the config and the registry as the daemon builds them.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from attrs import frozen

import crossdock
from crossdock.config.load import parse_config
from crossdock.plugins.registry import load_registry
from crossdock.testing.events import track
from crossdock.testing.fakes import FakeVendor, RecordedRequest
from crossdock.testing.harness import DestinationHarness

NAME = "legacy"


@frozen
class LegacySettings:
    """The settings of the old-style destination."""

    url: str
    token: crossdock.Secret


def _shout(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


class LegacyTransformer:
    """The old way: the plugin compiles ``destination.mapping`` itself."""

    def __init__(self, destination: crossdock.Destination) -> None:
        self.mapping = crossdock.compile_mapping(
            destination.mapping, where=destination.where, tables=destination.tables
        )

    def matches(self, event: crossdock.Event) -> bool:
        return self.mapping.matches(event)

    def __call__(self, event: crossdock.Event) -> Any:
        return self.mapping(event)


class LegacyDeliverer:
    """The old way: one request per batch, and its own halving when the vendor refuses it."""

    def __init__(self, settings: LegacySettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.http = http

    async def deliver(self, batch: Sequence[crossdock.BatchItem]) -> list[crossdock.Outcome]:
        body = b"[" + b",".join(item.data for item in batch) + b"]"
        headers = {
            "Authorization": f"Bearer {self.settings.token.reveal()}",
            "Content-Type": "application/json",
        }
        outcome, _status, _text = await crossdock.send_http(
            self.http, "POST", self.settings.url, body, headers
        )
        if isinstance(outcome, crossdock.Rejected) and len(batch) > 1:
            half = len(batch) // 2
            first, second = await asyncio.gather(
                self.deliver(batch[:half]), self.deliver(batch[half:])
            )
            return [*first, *second]
        return [outcome] * len(batch)

    async def close(self) -> None:
        return None


def make_legacy_plugin() -> Any:
    """The old plugin module, as a namespace (what its ``__init__`` would define)."""
    crossdock.register_function("legacy_shout", _shout, ["any"], replace=True)
    destination_type = crossdock.DestinationType(
        name=NAME,
        settings=LegacySettings,
        description="an old-style destination",
        mapping={"name": "legacy_shout(event)", "user": "userId", "kind": "lookup('kinds', type)"},
        tables={"kinds": {"track": "T"}},
        limits=crossdock.Limits(max_batch_count=10),
    )

    class Plugin:
        __name__ = "crossdock_legacy"

        @staticmethod
        @crossdock.hookimpl
        def crossdock_destination_types() -> list[crossdock.DestinationType]:
            return [destination_type]

        @staticmethod
        @crossdock.hookimpl
        def crossdock_make_transformer(
            destination: crossdock.Destination,
        ) -> LegacyTransformer | None:
            if destination.plugin != NAME:
                return None
            return LegacyTransformer(destination)

        @staticmethod
        @crossdock.hookimpl
        def crossdock_make_deliverer(
            destination: crossdock.Destination, http: aiohttp.ClientSession
        ) -> LegacyDeliverer | None:
            if destination.plugin != NAME:
                return None
            return LegacyDeliverer(destination.settings, http)

    return Plugin()


@pytest.fixture(scope="module")
def legacy() -> Any:
    with pytest.warns(DeprecationWarning, match=r"JmesFunction\.create"):
        return make_legacy_plugin()


CONFIG = """
[[sources]]
id = "web"
type = "segment"
write_keys = ["wk"]

[[destinations]]
id = "old"
plugin = "legacy"
where = "type == 'track'"
[destinations.settings]
url = "http://127.0.0.1:9/"
token = "t0ken"
[destinations.mapping]
"extra" = "properties.plan"
[destinations.tables.kinds]
identify = "I"
"""


def test_old_plugin_loads_and_validates_through_the_config(legacy: Any, tmp_path: Path) -> None:
    registry = load_registry(entrypoints=False, extra_plugins=[("legacy", legacy)])
    assert not registry.problems
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing else about the old plugin is deprecated
        config = parse_config(CONFIG, registry, {}, base_dir=tmp_path)
        [destination] = config.destinations
        transformer = registry.make_transformer(destination)
    assert isinstance(transformer, LegacyTransformer)
    event = track("Order Completed", {"plan": "pro"}, userId="u1")
    assert transformer(event) == {
        "name": "ORDER COMPLETED",
        "user": "u1",
        "kind": "T",
        "extra": "pro",
    }
    assert transformer({"type": "identify", "userId": "u1"}) is None
    assert not transformer.matches({"type": "identify", "userId": "u1"})


async def test_old_deliverer_works_under_the_core_sender(legacy: Any) -> None:
    """Its own halving still ends with the right outcome per event (the core's isolation only
    adds to it: a per-item ``Rejected`` is final)."""
    bad = track("Bad", {}, userId="bad")

    class Fake(FakeVendor):
        async def check(self, request: RecordedRequest) -> web.Response | None:
            if b'"bad"' in request.body:
                return web.json_response({"error": "invalid event"}, status=400)
            return None

    async with Fake() as fake:
        harness = DestinationHarness(legacy, {"url": fake.url + "/in", "token": "t0ken"})
        async with harness:
            events = [track("A", {}, userId="a"), bad, track("C", {}, userId="c")]
            outcomes = await harness.deliver(events)
    assert [type(o).__name__ for o in outcomes] == ["Delivered", "Rejected", "Delivered"]
    assert all(r.headers["Authorization"] == "Bearer t0ken" for r in fake.requests)
