"""Source ``segment-webhook``: Segment's Webhooks destination posting to us, over real sockets."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crossdock import IngestError, Secret, Source
from crossdock.config.converter import structure_collect
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


async def serve(
    secret: str | None, path: str | None = None, **settings: Any
) -> tuple[TestClient, Harness]:
    source = Source(
        id="segment-hook",
        type="segment-webhook",
        path=path,
        settings=SegmentWebhookSettings(Secret(secret) if secret else None, **settings),
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


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def sign(data: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha1).hexdigest()


async def post(
    client: TestClient,
    data: bytes,
    signature: str | None,
    path: str = "/hooks/segment",
    extra: dict[str, str] | None = None,
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "User-Agent": "Segment.io/1.0", **(extra or {})}
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


FIRST = (
    b'{"type":"track","userId":"u","event":"Caf\xc3\xa9 \\"Visited\\"",'
    b'"properties":{"a":[1,{"b":"]"}]}}'
)
FORGED = b'{"type":"identify","userId":"victim","traits":{"email":"attacker@example.com"}}'
TOKEN = "tok-second-secret"


async def test_whole_body_signature_by_default(signed: tuple[TestClient, Harness]) -> None:
    """Defect 1: by default the signature covers the whole body; a batch signed over its first
    element only (``[M, forged...]`` with ``M``'s captured signature) is refused."""
    client, harness = signed
    second = b'{"type":"page","anonymousId":"a-1","name":"Home"}'
    body = b"[" + FIRST + b"," + second + b"]"
    assert (await post(client, body, sign(body)))[0] == 200
    assert [e["type"] for e in harness.stored] == ["track", "page"]
    assert harness.stored[0]["event"] == 'Caf\u00e9 "Visited"'
    forged = b"[" + FIRST + b"," + FORGED + b"]"
    status, answer = await post(client, forged, sign(FIRST))
    assert (status, answer["code"]) == (401, "unauthorized")
    assert answer["message"] == "X-Signature: missing or invalid"
    assert (await post(client, forged, sign(second)))[0] == 401
    assert len(harness.stored) == 2


async def test_first_element_mode_needs_the_header_token() -> None:
    """Defect 1: in first-element mode a captured signature alone forges nothing: the header
    token is required (and checked before the body is read)."""
    client, harness = await serve(SECRET, signature_scope="first-element", token=Secret(TOKEN))
    try:
        forged = b"[" + FIRST + b"," + FORGED + b"]"
        for extra in [None, {"X-Crossdock-Token": "guess"}, {"X-Crossdock-Token": ""}]:
            status, answer = await post(client, forged, sign(FIRST), extra=extra)
            assert (status, answer["code"]) == (401, "unauthorized")
            assert answer["message"] == "X-Crossdock-Token: missing or invalid"
            assert TOKEN not in answer["message"]
        # Auth comes before parsing: an unparseable body without the token is a 401, not a 400.
        assert (await post(client, b"{oops", None))[0] == 401
        assert harness.stored == []
        good = {"X-Crossdock-Token": TOKEN}
        status, _ = await post(client, forged, sign(FIRST), extra=good)
        assert status == 200
        assert [e["userId"] for e in harness.stored] == ["u", "victim"]
        # The token does not replace the signature.
        assert (await post(client, forged, "00" * 20, extra=good))[0] == 401
        assert (await post(client, forged, None, extra=good))[0] == 401
    finally:
        await client.close()


async def test_custom_token_header_in_body_mode() -> None:
    client, harness = await serve(SECRET, token=Secret(TOKEN), token_header="X-Hook-Key")
    try:
        assert (await post(client, IDENTIFY, sign(IDENTIFY)))[0] == 401
        extra = {"X-Hook-Key": TOKEN}
        assert (await post(client, IDENTIFY, sign(IDENTIFY), extra=extra))[0] == 200
        # Body mode stays whole-body even with a token.
        body = b"[" + FIRST + b"," + FORGED + b"]"
        assert (await post(client, body, sign(FIRST), extra=extra))[0] == 401
        assert len(harness.stored) == 1
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"signature_scope": "first-element"}, "signature_scope"),
        ({"secret": "s", "signature_scope": "first-element"}, "requires both secret and token"),
        ({"token": "t", "signature_scope": "first-element"}, "requires both secret and token"),
        ({"secret": ""}, "settings.secret: invalid value"),
        ({"secret": "s", "token": ""}, "settings.token: invalid value"),
        ({"secret": "s", "max_age": 0}, "max_age: must be a positive number of seconds"),
        ({"token_header": " "}, "token_header: must not be empty"),
        ({"signature_scope": "first"}, "signature_scope"),
    ],
)
def test_settings_are_checked(settings: dict[str, Any], problem: str) -> None:
    value, problems = structure_collect(settings, SegmentWebhookSettings, "sources[0].settings")
    assert value is None
    assert any(problem in p for p in problems), problems
    assert not any("tok-" in p for p in problems)


def test_first_element_settings_accepted() -> None:
    settings = {"secret": "s", "token": "t", "signature_scope": "first-element", "max_age": 3600}
    value, problems = structure_collect(settings, SegmentWebhookSettings, "x")
    assert problems == []
    assert value is not None
    assert value.max_age == 3600.0


async def test_replays_outside_max_age_are_refused(signed: tuple[TestClient, Harness]) -> None:
    """Defect 1: a signed message whose receivedAt is outside max_age is refused (400)."""
    client, harness = signed
    now = time.time()
    for offset in (-13 * 3600, 13 * 3600):
        message = orjson.loads(IDENTIFY) | {"receivedAt": iso(now + offset)}
        data = orjson.dumps(message)
        status, answer = await post(client, data, sign(data))
        assert (status, answer["code"]) == (400, "replay_refused")
        assert answer["message"].startswith("receivedAt: outside the replay tolerance")
    message = orjson.loads(IDENTIFY) | {"receivedAt": iso(now - 3600)}
    data = orjson.dumps(message)
    assert (await post(client, data, sign(data)))[0] == 200
    batch = orjson.dumps([message, message | {"receivedAt": iso(now - 86400)}])
    status, answer = await post(client, batch, sign(batch))
    assert (status, answer["code"]) == (400, "replay_refused")
    assert answer["message"].startswith("[1].receivedAt:")
    for bad in ("yesterday", 5, "2025-13-01T00:00:00Z"):
        data = orjson.dumps(orjson.loads(IDENTIFY) | {"receivedAt": bad})
        status, answer = await post(client, data, sign(data))
        assert (status, answer["code"]) == (400, "invalid_timestamp"), bad
        assert answer["message"] == "receivedAt: must be an ISO-8601 time"
    for extreme in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        data = orjson.dumps(orjson.loads(IDENTIFY) | {"receivedAt": extreme})
        status, answer = await post(client, data, sign(data))
        assert (status, answer["code"]) == (400, "replay_refused"), extreme
    assert len(harness.stored) == 1


async def test_unsigned_source_does_not_judge_received_at() -> None:
    client, harness = await serve(None)
    try:
        data = orjson.dumps(orjson.loads(IDENTIFY) | {"receivedAt": "2020-01-01T00:00:00Z"})
        assert (await post(client, data, None))[0] == 200
        assert len(harness.stored) == 1
    finally:
        await client.close()


async def test_message_without_id_gets_one_from_its_bytes(
    signed: tuple[TestClient, Harness],
) -> None:
    """Defect 1: a signed message without messageId gets a stable one (a hash of its bytes),
    so the queue deduplicates its replays."""
    client, harness = signed
    data = b'{"type":"track","userId":"u","event":"No Id"}'
    for _ in range(2):
        assert (await post(client, data, sign(data)))[0] == 200
    first, second = harness.stored
    expected = "body-sha256-" + hashlib.sha256(data).hexdigest()
    assert first["messageId"] == second["messageId"] == expected
    batch = (
        b'[{"type":"track","userId":"u","event":"A"}, {"type":"track","userId":"u","event":"B"}]'
    )
    spaced = batch.replace(b", ", b",")
    assert (await post(client, batch, sign(batch)))[0] == 200
    assert (await post(client, spaced, sign(spaced)))[0] == 200
    ids = [e["messageId"] for e in harness.stored[2:]]
    assert ids[0] == ids[2] != ids[1] == ids[3]
    assert all(i.startswith("body-sha256-") for i in ids)


async def test_batch_errors_are_labelled(signed: tuple[TestClient, Harness]) -> None:
    client, harness = signed
    body = b'[{"type":"track","userId":"u","event":"E"},{"type":"track","userId":"u"}]'
    status, answer = await post(client, body, sign(body))
    assert status == 400
    assert answer["message"] == "[1].event: required for track"
    assert harness.stored == []


async def test_delete_notifications_are_skipped(signed: tuple[TestClient, Harness]) -> None:
    client, harness = signed
    delete = b'{"type":"delete","userId":"u-9","timestamp":"2025-03-02T10:15:03.901Z"}'
    assert (await post(client, delete, sign(delete))) == (200, {"success": True})
    assert harness.stored == []
    body = b"[" + delete + b"," + IDENTIFY + b',{"type":"track","userId":"u"}]'
    status, answer = await post(client, body, sign(body))
    assert status == 400
    assert answer["message"] == "[2].event: required for track"
    body = b"[" + delete + b"," + IDENTIFY + b"]"
    assert (await post(client, body, sign(body)))[0] == 200
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


async def test_upstream_timestamps_are_not_corrected_twice() -> None:
    client, harness = await serve(SECRET, max_age=10 * 365 * 86400.0)
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
    try:
        assert (await post(client, data, sign(data)))[0] == 200
    finally:
        await client.close()
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
