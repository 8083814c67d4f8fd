"""The public fakes: FakeVendor scripting and logging; FakeSegment's contract (§15)."""

from __future__ import annotations

import asyncio
import base64
import gzip

import aiohttp
import orjson
import pytest
from aiohttp import web

from crossdock.testing.fakes import FakeSegment, FakeVendor, RecordedRequest

KEY = "test-write-key"


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


async def test_fake_vendor_logs_and_scripts() -> None:
    async with FakeVendor() as fake, aiohttp.ClientSession() as http:
        assert fake.url.startswith("http://127.0.0.1:")
        fake.script([500, {"status": 429, "headers": {"Retry-After": "3"}}, 200])
        statuses = []
        for i in range(4):
            async with http.post(fake.url + "/x?a=1", json={"i": i}, headers={"X-T": "v"}) as r:
                statuses.append((r.status, r.headers.get("Retry-After")))
        assert statuses == [(500, None), (429, "3"), (200, None), (200, None)]
        assert len(fake.requests) == 4
        first = fake.requests[0]
        assert (first.method, first.path, first.query) == ("POST", "/x", {"a": "1"})
        assert first.headers["X-T"] == "v"
        assert first.json() == {"i": 0}
        fake.respond(418, "teapot")
        async with http.get(fake.url) as r:
            assert (r.status, await r.text()) == (418, "teapot")
        fake.respond(None)
        async with http.get(fake.url) as r:
            assert r.status == 200


async def test_fake_vendor_delay_drop_concurrency_and_wait_for() -> None:
    async with FakeVendor() as fake, aiohttp.ClientSession() as http:
        fake.respond(200, delay=0.1)

        async def call() -> int:
            async with http.post(fake.url, data=b"{}") as r:
                return r.status

        assert await asyncio.gather(call(), call(), call()) == [200, 200, 200]
        assert fake.max_in_flight == 3
        fake.respond(None)
        fake.script([{"drop": True}])
        with pytest.raises(aiohttp.ClientError):
            await call()
        await fake.wait_for(4)
        await fake.wait_for(lambda f: f.requests[-1].body == b"{}")
        with pytest.raises(TimeoutError):
            await fake.wait_for(99, timeout=0.05)


async def test_check_hook_refuses_before_scripts() -> None:
    class Strict(FakeVendor):
        async def check(self, request: RecordedRequest) -> web.Response | None:
            if request.headers.get("Authorization") != "Bearer ok":
                return web.json_response({"error": "no"}, status=401)
            return None

    async with Strict() as fake, aiohttp.ClientSession() as http:
        fake.script([503])
        async with http.post(fake.url) as r:
            assert r.status == 401
        async with http.post(fake.url, headers={"Authorization": "Bearer ok"}) as r:
            assert r.status == 503
        assert len(fake.requests) == 2


async def test_fake_segment_accepts_and_discards_like_segment() -> None:
    messages = [
        {"type": "track", "event": "A", "userId": "u", "messageId": "1"},
        {"event": "no type", "userId": "u"},
        {"type": "identify", "traits": {}},
        {"type": "track", "userId": "u"},
        {"type": "page", "anonymousId": ""},
    ]
    async with FakeSegment(write_keys=[KEY]) as fake, aiohttp.ClientSession() as http:
        async with http.post(
            fake.url + "/v1/batch", json={"batch": messages}, headers=basic(KEY)
        ) as r:
            assert r.status == 200
        assert [m["messageId"] for m in fake.events] == ["1"]
        assert [d.reason for d in fake.discarded] == [
            "type_missing",
            "no_user_anon_id",
            "event_not_defined",
            "id_not_string",
        ]
        # writeKey in the body works too; single-call paths take their type from the path.
        body = {"writeKey": KEY, "userId": "u", "traits": {"a": 1}}
        async with http.post(fake.url + "/v1/identify", json=body) as r:
            assert r.status == 200
        assert fake.events[-1]["type"] == "identify"


async def test_fake_segment_refusals() -> None:
    async with FakeSegment(write_keys=[KEY]) as fake, aiohttp.ClientSession() as http:
        url = fake.url + "/v1/batch"
        ok = {"type": "track", "event": "A", "userId": "u"}
        async with http.post(url, json={"batch": [ok]}) as r:
            assert r.status == 401
            assert (await r.json())["code"] == "unauthorized"
        async with http.post(url, json={"batch": [ok]}, headers=basic("nope")) as r:
            assert r.status == 401
        async with http.post(url, data=b"{not json", headers=basic(KEY)) as r:
            assert r.status == 400
        big_event = {**ok, "properties": {"x": "y" * 33_000}}
        async with http.post(url, json={"batch": [big_event]}, headers=basic(KEY)) as r:
            assert r.status == 400
        many = [{**ok, "properties": {"x": "y" * 20_000}} for _ in range(30)]
        async with http.post(url, json={"batch": many}, headers=basic(KEY)) as r:
            assert r.status == 400
        assert fake.events == []
        data = gzip.compress(orjson.dumps({"batch": [ok]}))
        headers = {**basic(KEY), "Content-Encoding": "gzip", "Content-Type": "application/json"}
        async with http.post(url, data=data, headers=headers) as r:
            assert r.status == 200
        assert len(fake.events) == 1


async def test_fake_segment_extras_and_failure_modes() -> None:
    async with FakeSegment(write_keys=[KEY]) as fake, aiohttp.ClientSession() as http:
        url = fake.url + "/v1/batch"
        batch = [
            {"type": "track", "event": "A", "userId": "u", "messageId": str(i)} for i in range(2502)
        ]
        async with http.post(url, json={"batch": batch}, headers=basic(KEY)) as r:
            assert r.status == 200
        assert len(fake.events) == 2500
        assert [d.reason for d in fake.discarded] == ["batch_too_large"] * 2
        fake.rate_limited()
        async with http.post(url, json={"batch": batch[:1]}, headers=basic(KEY)) as r:
            assert r.status == 429
            assert r.headers["Retry-After"] == "2"
        fake.unavailable()
        async with http.post(url, json={"batch": batch[:1]}, headers=basic(KEY)) as r:
            assert r.status == 503
        fake.healthy()
        async with http.post(url, json={"batch": batch[:1]}, headers=basic(KEY)) as r:
            assert r.status == 200
        assert len(fake.events) == 2501


async def test_crossdock_fake_vendor_fixture_serves_and_closes(crossdock_fake_vendor) -> None:
    import aiohttp

    url = crossdock_fake_vendor.url + "/x"
    async with aiohttp.ClientSession() as session, session.post(url, json={"a": 1}) as response:
        assert response.status == 200
    assert crossdock_fake_vendor.requests[0].json() == {"a": 1}


def test_harness_tables_add_rows_like_the_config_does() -> None:
    import attrs

    import crossdock
    from crossdock.testing.harness import DestinationHarness

    @attrs.frozen
    class Settings:
        url: str

    class Plugin:
        @crossdock.hookimpl
        def crossdock_destination_types(self):
            return [
                crossdock.DestinationType(
                    "acme",
                    Settings,
                    "test",
                    mapping={"name": "lookup('names', event)"},
                    tables={"names": {"A": "a"}, "other": {"x": 1}},
                )
            ]

    harness = DestinationHarness(Plugin(), {"url": "http://x"}, tables={"names": {"B": "b"}})
    assert harness.destination.tables == {
        "names": {"A": "a", "B": "b"},
        "other": {"x": 1},
        "settings": {"url": "http://x"},  # the destination's own settings, as in the config
    }


def test_harness_mapping_overrides_merge_like_the_config_does() -> None:
    import attrs

    import crossdock
    from crossdock.testing.harness import DestinationHarness

    @attrs.frozen
    class Settings:
        url: str

    class Plugin:
        @crossdock.hookimpl
        def crossdock_destination_types(self):
            mapping = {"user.id": "userId", "user.email": "traits.email", "name": "event"}
            return [crossdock.DestinationType("acme", Settings, "test", mapping=mapping)]

    harness = DestinationHarness(
        Plugin(), {"url": "http://x"}, mapping={"user": "userId", "name": ""}
    )
    assert dict(harness.destination.mapping) == {"user": "userId"}
