"""Source ``webhook``: token check, JMESPath mapping to Spec messages, over real sockets."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crossdock import IngestError, MappingError, Secret, Source
from crossdock.ingest.normalize import normalize
from crossdock.ingest.sources import webhook as webhook_source
from crossdock.ingest.sources.webhook import WebhookSourceSettings

TOKEN = "hardal-token"
HARDAL_MAPPING = {
    "type": "'track'",
    "event": "event_name",
    "userId": "user_id",
    "anonymousId": "session_id",
    "properties": "properties",
    "timestamp": "ts",
}


class Harness:
    """A minimal ingest → normalize → answer app around one ingestor (not the core handler)."""

    def __init__(self, ingestor: Any, source_id: str) -> None:
        self.ingestor = ingestor
        self.source_id = source_id
        self.stored: list[dict[str, Any]] = []
        self.app = web.Application()
        for route in ingestor.routes():
            self.app.router.add_route(route.method, route.path, self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            ingested = await self.ingestor.ingest(request)
            result = normalize(ingested, source_id=self.source_id, received_at=time.time())
        except IngestError as exc:
            body = {"success": False, "code": exc.code, "message": exc.message}
            return web.json_response(body, status=exc.status)
        self.stored.extend(result.events)
        return web.json_response(ingested.body, headers=dict(ingested.headers))


def make_source(
    mapping: Mapping[str, str] | None = HARDAL_MAPPING,
    token: str | None = TOKEN,
    path: str | None = "/hooks/hardal",
) -> Source:
    settings = WebhookSourceSettings(Secret(token) if token else None)
    return Source(id="hardal", type="webhook", path=path, settings=settings, mapping=mapping)


async def serve(source: Source) -> tuple[TestClient, Harness]:
    ingestor = webhook_source.crossdock_make_ingestor(source)
    assert ingestor is not None
    harness = Harness(ingestor, source.id)
    client = TestClient(TestServer(harness.app, host="127.0.0.1", port=0))
    await client.start_server()
    return client, harness


@pytest_asyncio.fixture
async def hardal() -> AsyncIterator[tuple[TestClient, Harness]]:
    client, harness = await serve(make_source())
    try:
        yield client, harness
    finally:
        await client.close()


async def post(
    client: TestClient, body: Any, *, path: str = "/hooks/hardal", **kwargs: Any
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = kwargs.pop("headers", {"Authorization": f"Bearer {TOKEN}"})
    async with client.post(path, data=data, headers=headers, **kwargs) as resp:
        return resp.status, await resp.json(content_type=None)


HIT = {
    "event_name": "Product Viewed",
    "user_id": "u-5",
    "session_id": "s-1",
    "properties": {"product_id": "p-1", "price": 10},
    "ts": "2025-03-02T10:00:00Z",
    "noise": True,
}


def test_declaration() -> None:
    (declared,) = webhook_source.crossdock_source_types()
    assert declared.name == "webhook"
    assert declared.settings is WebhookSourceSettings


def test_bad_mapping_fails_at_start_up() -> None:
    with pytest.raises(MappingError):
        webhook_source.crossdock_make_ingestor(make_source(mapping={"type": "'track"}))


async def test_maps_one_object(hardal: tuple[TestClient, Harness]) -> None:
    client, harness = hardal
    assert await post(client, HIT) == (200, {"success": True})
    (event,) = harness.stored
    assert event["type"] == "track"
    assert event["event"] == "Product Viewed"
    assert event["userId"] == "u-5"
    assert event["anonymousId"] == "s-1"
    assert event["properties"] == {"product_id": "p-1", "price": 10}
    assert event["originalTimestamp"] == "2025-03-02T10:00:00.000Z"
    assert "noise" not in event
    assert event["context"]["crossdock"] == {"source": "hardal", "sources": ["hardal"]}


async def test_maps_a_list_and_labels_errors(hardal: tuple[TestClient, Harness]) -> None:
    client, harness = hardal
    assert (await post(client, [HIT, {**HIT, "user_id": "u-6"}]))[0] == 200
    assert [e["userId"] for e in harness.stored] == ["u-5", "u-6"]
    status, body = await post(client, [HIT, {"user_id": "u-7"}])
    assert status == 400
    assert body["message"] == "[1].event: required for track"
    status, body = await post(client, [HIT, "x"])
    assert (status, body["code"], body["message"]) == (
        400,
        "invalid_event",
        "[1]: must be a JSON object",
    )
    status, body = await post(client, [])
    assert (status, body["code"]) == (400, "empty_batch")
    status, body = await post(client, 5)
    assert (status, body["code"]) == (400, "invalid_body")
    assert len(harness.stored) == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"headers": {}},
        {"headers": {"Authorization": "Bearer wrong"}},
        {"headers": {"Authorization": f"Basic {TOKEN}"}},
        {"headers": {}, "params": {"token": "wrong"}},
    ],
)
async def test_token_required(hardal: tuple[TestClient, Harness], kwargs: dict[str, Any]) -> None:
    client, harness = hardal
    status, body = await post(client, HIT, **kwargs)
    assert (status, body["code"]) == (401, "unauthorized")
    assert TOKEN not in body["message"]
    assert harness.stored == []


async def test_token_in_query(hardal: tuple[TestClient, Harness]) -> None:
    client, harness = hardal
    assert (await post(client, HIT, headers={}, params={"token": TOKEN}))[0] == 200
    assert len(harness.stored) == 1


async def test_mapping_without_type_gives_precise_400() -> None:
    mapping = {"event": "event_name", "userId": "user_id"}
    client, harness = await serve(make_source(mapping=mapping, token=None))
    try:
        status, body = await post(client, HIT, headers={})
        assert (status, body["code"], body["message"]) == (400, "type_required", "type: required")
        assert harness.stored == []
    finally:
        await client.close()


async def test_runtime_mapping_error_is_400() -> None:
    mapping = {"type": "'track'", "event": "event_name", "userId": "user_id", "n": "length(ts)"}
    client, harness = await serve(make_source(mapping=mapping, token=None))
    try:
        status, body = await post(client, {**HIT, "ts": 5}, headers={})
        assert (status, body["code"]) == (400, "mapping_failed")
        assert body["message"].startswith("n: ")
        assert harness.stored == []
    finally:
        await client.close()


async def test_without_mapping_bodies_are_spec_messages() -> None:
    client, harness = await serve(make_source(mapping=None, token=None, path=None))
    try:
        message = {"type": "identify", "userId": "u", "traits": {"plan": "pro"}}
        assert (await post(client, message, path="/hooks/hardal", headers={}))[0] == 200
        assert harness.stored[0]["traits"] == {"plan": "pro"}
    finally:
        await client.close()
