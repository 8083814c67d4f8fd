"""Source ``segment-webhook``: Segment's Webhooks destination posting to us, over real sockets."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crossdock import IngestError, Secret, Source
from crossdock.ingest.normalize import normalize
from crossdock.ingest.sources import segment_webhook
from crossdock.ingest.sources.segment_webhook import (
    SegmentWebhookSettings,
    first_element_span,
    signature_candidates,
)

SECRET = "shh-shared"


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


async def serve(secret: str | None, path: str | None = None) -> tuple[TestClient, Harness]:
    source = Source(
        id="segment-hook",
        type="segment-webhook",
        path=path,
        settings=SegmentWebhookSettings(Secret(secret) if secret else None),
    )
    ingestor = segment_webhook.crossdock_make_ingestor(source)
    assert ingestor is not None
    harness = Harness(ingestor, source.id)
    client = TestClient(TestServer(harness.app, host="127.0.0.1", port=0))
    await client.start_server()
    return client, harness


@pytest_asyncio.fixture
async def signed() -> AsyncIterator[tuple[TestClient, Harness]]:
    client, harness = await serve(SECRET)
    try:
        yield client, harness
    finally:
        await client.close()


def sign(data: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha1).hexdigest()


async def post(
    client: TestClient, data: bytes, signature: str | None, path: str = "/hooks/segment"
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "User-Agent": "Segment.io/1.0"}
    if signature is not None:
        headers["X-Signature"] = signature
    async with client.post(path, data=data, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


IDENTIFY = (
    b'{"type":"identify","userId":"u-1042","traits":{"email":"ana@example.com"},'
    b'"messageId":"0c1f-1","timestamp":"2025-03-02T10:15:03.901Z","context":{}}'
)


def test_declaration() -> None:
    (declared,) = segment_webhook.crossdock_source_types()
    assert declared.name == "segment-webhook"
    assert declared.default_path == "/hooks/segment"
    assert declared.settings is SegmentWebhookSettings


async def test_single_message_signed_over_raw_body(signed: tuple[TestClient, Harness]) -> None:
    client, harness = signed
    status, body = await post(client, IDENTIFY, sign(IDENTIFY))
    assert (status, body) == (200, {"success": True})
    (event,) = harness.stored
    assert event["userId"] == "u-1042"
    assert event["messageId"] == "0c1f-1"
    assert event["context"]["crossdock"]["source"] == "segment-hook"


async def test_uppercase_hex_signature_accepted(signed: tuple[TestClient, Harness]) -> None:
    client, _ = signed
    assert (await post(client, IDENTIFY, sign(IDENTIFY).upper()))[0] == 200


@pytest.mark.parametrize("signature", [None, "", "00" * 20, "not-hex"])
async def test_bad_signature_is_401(
    signed: tuple[TestClient, Harness], signature: str | None
) -> None:
    client, harness = signed
    status, body = await post(client, IDENTIFY, signature)
    assert status == 401
    assert body["code"] == "unauthorized"
    assert SECRET not in body["message"]
    assert harness.stored == []


async def test_signature_over_reserialized_body_rejected(
    signed: tuple[TestClient, Harness],
) -> None:
    client, _ = signed
    spaced = orjson.dumps(orjson.loads(IDENTIFY), option=orjson.OPT_INDENT_2)
    # Signed over the compact form, sent indented: the raw bytes differ, so it must fail.
    assert (await post(client, spaced, sign(IDENTIFY)))[0] == 401
    assert (await post(client, spaced, sign(spaced)))[0] == 200


async def test_batch_signed_over_first_element(signed: tuple[TestClient, Harness]) -> None:
    client, harness = signed
    first = (
        b'{"type":"track","userId":"u","event":"Caf\xc3\xa9 \\"Visited\\"",'
        b'"properties":{"a":[1,{"b":"]"}]}}'
    )
    second = b'{"type":"page","anonymousId":"a-1","name":"Home"}'
    body = b"[" + first + b"," + second + b"]"
    status, answer = await post(client, body, sign(first))
    assert (status, answer) == (200, {"success": True})
    assert [e["type"] for e in harness.stored] == ["track", "page"]
    assert harness.stored[0]["event"] == 'Café "Visited"'
    # The whole body signed is accepted too; a signature of the second element is not.
    assert (await post(client, body, sign(body)))[0] == 200
    assert (await post(client, body, sign(second)))[0] == 401


async def test_batch_errors_are_labelled(signed: tuple[TestClient, Harness]) -> None:
    client, harness = signed
    body = b'[{"type":"track","userId":"u","event":"E"},{"type":"track","userId":"u"}]'
    status, answer = await post(client, body, sign(b'{"type":"track","userId":"u","event":"E"}'))
    assert status == 400
    assert answer["message"] == "[1].event: required for track"
    assert harness.stored == []


async def test_delete_notifications_are_skipped(signed: tuple[TestClient, Harness]) -> None:
    client, harness = signed
    delete = b'{"type":"delete","userId":"u-9","timestamp":"2025-03-02T10:15:03.901Z"}'
    assert (await post(client, delete, sign(delete))) == (200, {"success": True})
    assert harness.stored == []
    body = b"[" + delete + b"," + IDENTIFY + b',{"type":"track","userId":"u"}]'
    status, answer = await post(client, body, sign(delete))
    assert status == 400
    assert answer["message"] == "[2].event: required for track"
    body = b"[" + delete + b"," + IDENTIFY + b"]"
    assert (await post(client, body, sign(delete)))[0] == 200
    assert [e["type"] for e in harness.stored] == ["identify"]


async def test_no_secret_configured_custom_path() -> None:
    client, harness = await serve(None, path="/hooks/seg2")
    try:
        assert (await post(client, IDENTIFY, None, path="/hooks/seg2"))[0] == 200
        status, body = await post(client, b"[]", None, path="/hooks/seg2")
        assert (status, body["code"]) == (400, "empty_batch")
        status, body = await post(client, b'"x"', None, path="/hooks/seg2")
        assert (status, body["code"]) == (400, "invalid_body")
        status, body = await post(client, b"{oops", None, path="/hooks/seg2")
        assert (status, body["code"]) == (400, "invalid_json")
        assert len(harness.stored) == 1
    finally:
        await client.close()


async def test_upstream_timestamps_are_not_corrected_twice(
    signed: tuple[TestClient, Harness],
) -> None:
    client, harness = signed
    message = {
        "type": "track",
        "userId": "u",
        "event": "E",
        "originalTimestamp": "2025-03-02T12:00:00.000Z",
        "sentAt": "2025-03-02T12:00:05.000Z",
        "timestamp": "2025-03-02T12:00:10.200Z",
        "receivedAt": "2025-03-02T12:00:15.200Z",
    }
    data = orjson.dumps(message)
    assert (await post(client, data, sign(data)))[0] == 200
    (event,) = harness.stored
    assert event["timestamp"] == "2025-03-02T12:00:10.200Z"
    assert event["originalTimestamp"] == "2025-03-02T12:00:00.000Z"


@pytest.mark.parametrize(
    ("data", "first"),
    [
        (b"[1,2]", b"1"),
        (b" [ -1.5e3 , 2]", b"-1.5e3"),
        (b'["a\\\\",1]', b'"a\\\\"'),
        (b'["a\\"]",1]', b'"a\\"]"'),
        (b'[{"k":"}"} ,{}]', b'{"k":"}"}'),
        (b"[[1,[2]],3]", b"[1,[2]]"),
        (b"[true]", b"true"),
        (b"[null ]", b"null"),
    ],
)
def test_first_element_span(data: bytes, first: bytes) -> None:
    span = first_element_span(data)
    assert span is not None
    assert data[span[0] : span[1]] == first


@pytest.mark.parametrize("data", [b"{}", b"[]", b"  [ ] ", b"", b'["unterminated'])
def test_first_element_span_none(data: bytes) -> None:
    assert first_element_span(data) is None


def test_candidates_fall_back_to_compact_serialization() -> None:
    data = b'[ {"a": "\xc3\xa9"} ]'
    candidates = signature_candidates(data, orjson.loads(data))
    assert candidates[0] == b'{"a": "\xc3\xa9"}'
    assert b'{"a":"\xc3\xa9"}' in candidates
    assert data in candidates
