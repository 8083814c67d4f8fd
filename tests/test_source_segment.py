"""Source ``segment``: the /v1 tracking API over real sockets, with real Segment clients."""

from __future__ import annotations

import asyncio
import base64
import gzip
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
from crossdock.ingest.sources import segment as segment_source
from crossdock.ingest.sources.segment import (
    MAX_BATCH_EVENTS,
    SegmentIngestor,
    SegmentSourceSettings,
)
from crossdock.ingest.stored_checks import check_unencoded

KEY = "wk_test"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}


class Harness:
    """A minimal ingest → normalize → answer app around one ingestor (not the core handler;
    ``test_ingest_stored_checks.py`` covers the handler's checks on stored rows)."""

    def __init__(self, ingestor: Any, source_id: str) -> None:
        self.ingestor = ingestor
        self.source_id = source_id
        self.stored: list[dict[str, Any]] = []
        self.app = web.Application()
        for route in ingestor.routes():
            self.app.router.add_route(route.method, route.path, self.handle)
        extra = getattr(ingestor, "web_routes", None)
        if extra is not None:
            self.app.router.add_routes(extra())

    async def handle(self, request: web.Request) -> web.Response:
        extra = getattr(self.ingestor, "response_headers", None)
        headers = dict(extra(request)) if extra is not None else {}
        try:
            ingested = await self.ingestor.ingest(request)
            result = normalize(ingested, source_id=self.source_id, received_at=time.time())
            check_unencoded(ingested)  # the checks the ingestor leaves to the core
        except IngestError as exc:
            body = {"success": False, "code": exc.code, "message": exc.message}
            return web.json_response(body, status=exc.status, headers=headers)
        self.stored.extend(result.events)
        return web.json_response(ingested.body, headers={**ingested.headers, **headers})


def make_source(**settings: Any) -> Source:
    settings.setdefault("write_keys", [Secret(KEY), Secret("wk_other")])
    return Source(
        id="web",
        type="segment",
        path=None,
        settings=SegmentSourceSettings(**settings),
        public_url="https://events.example.com",
    )


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[TestClient, Harness]]:
    ingestor = segment_source.crossdock_make_ingestor(make_source())
    assert ingestor is not None
    harness = Harness(ingestor, "web")
    client = TestClient(TestServer(harness.app, host="127.0.0.1", port=0))
    await client.start_server()
    try:
        yield client, harness
    finally:
        await client.close()


async def post(client: TestClient, path: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = kwargs.pop("headers", AUTH)
    async with client.post(path, data=data, headers=headers, **kwargs) as resp:
        return resp.status, await resp.json(content_type=None)


# ---------------------------------------------------------------------------------------------
# Declarations and settings


def test_declares_segment_type() -> None:
    (declared,) = segment_source.crossdock_source_types()
    assert declared.name == "segment"
    assert declared.settings is SegmentSourceSettings
    with pytest.raises(ValueError, match="write_keys"):
        SegmentSourceSettings(write_keys=[])
    assert SegmentSourceSettings(write_keys=[Secret("k")]).allowed_origins == ["*"]


def test_routes_cover_long_and_short_paths() -> None:
    ingestor = SegmentIngestor(make_source())
    paths = {(r.method, r.path) for r in ingestor.routes()}
    for name in ["track", "identify", "page", "screen", "group", "alias", "batch", "import"]:
        assert ("POST", f"/v1/{name}") in paths
    for letter in "tipsgab":
        assert ("POST", f"/v1/{letter}") in paths


# ---------------------------------------------------------------------------------------------
# Single calls


@pytest.mark.parametrize(
    ("path", "kind", "extra"),
    [
        ("/v1/track", "track", {"event": "Signed Up"}),
        ("/v1/t", "track", {"event": "Signed Up"}),
        ("/v1/identify", "identify", {"traits": {"email": "a@example.com"}}),
        ("/v1/i", "identify", {}),
        ("/v1/page", "page", {"name": "Home"}),
        ("/v1/p", "page", {}),
        ("/v1/screen", "screen", {"name": "Main"}),
        ("/v1/s", "screen", {}),
        ("/v1/group", "group", {"groupId": "g-1"}),
        ("/v1/g", "group", {"groupId": "g-1"}),
        ("/v1/alias", "alias", {"previousId": "anon-1"}),
        ("/v1/a", "alias", {"previousId": "anon-1"}),
    ],
)
async def test_single_call_path_gives_type(
    served: tuple[TestClient, Harness], path: str, kind: str, extra: dict[str, Any]
) -> None:
    client, harness = served
    status, body = await post(client, path, {"userId": "u-1", **extra})
    assert (status, body) == (200, {"success": True})
    (event,) = harness.stored
    assert event["type"] == kind
    assert event["context"]["crossdock"] == {"source": "web", "sources": ["web"]}
    assert event["messageId"]


async def test_contract_example_track(served: tuple[TestClient, Harness]) -> None:
    client, harness = served
    body = {
        "userId": "u-1042",
        "event": "Order Completed",
        "properties": {"order_id": "A-5521", "total": 54.90, "currency": "EUR"},
        "context": {"ip": "203.0.113.9", "library": {"name": "analytics-python", "version": "2"}},
        "timestamp": "2025-03-02T10:15:04.120Z",
        "messageId": "5b6b2f1e-6a51-4c1c-9a3e-0d0f4f2f7f01",
    }
    assert (await post(client, "/v1/track", body))[0] == 200
    (event,) = harness.stored
    assert event["messageId"] == body["messageId"]
    assert event["originalTimestamp"] == "2025-03-02T10:15:04.120Z"
    assert event["context"]["library"] == body["context"]["library"]
    assert event["properties"] == body["properties"]


async def test_single_validation_error_names_field(served: tuple[TestClient, Harness]) -> None:
    client, harness = served
    status, body = await post(client, "/v1/track", {"userId": "u"})
    assert status == 400
    assert body == {
        "success": False,
        "code": "event_not_defined",
        "message": "event: required for track",
    }
    assert harness.stored == []


# ---------------------------------------------------------------------------------------------
# Auth


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic " + base64.b64encode(b"wrong:").decode()},
        {"Authorization": "Basic not-base64!"},
        {"Authorization": f"Bearer {KEY}"},
    ],
)
async def test_unauthorized(served: tuple[TestClient, Harness], headers: dict[str, str]) -> None:
    client, harness = served
    status, body = await post(client, "/v1/track", {"userId": "u", "event": "E"}, headers=headers)
    assert status == 401
    assert body["code"] == "unauthorized"
    assert body["message"]
    assert KEY not in orjson.dumps(body).decode()
    assert harness.stored == []


async def test_auth_forms(served: tuple[TestClient, Harness]) -> None:
    client, harness = served
    event = {"userId": "u", "event": "E"}
    no_colon = {"Authorization": "Basic " + base64.b64encode(b"wk_other").decode()}
    assert (await post(client, "/v1/track", event, headers=no_colon))[0] == 200
    assert (await post(client, "/v1/track", {**event, "writeKey": KEY}, headers={}))[0] == 200
    wrong = {**event, "writeKey": "nope"}
    assert (await post(client, "/v1/track", wrong, headers={}))[0] == 401
    batch = {"batch": [{"type": "track", **event}], "writeKey": KEY}
    assert (await post(client, "/v1/batch", batch, headers={}))[0] == 200
    assert len(harness.stored) == 3
    assert all("writeKey" not in e for e in harness.stored)


async def test_header_auth_is_checked_before_the_body_is_parsed(
    served: tuple[TestClient, Harness],
) -> None:
    """Defect 9: a wrong write key in the header is a 401 whatever the body holds (on main an
    unparseable body gave a 400 first: the body was parsed before auth)."""
    client, harness = served
    wrong = {"Authorization": "Basic " + base64.b64encode(b"wrong:").decode()}
    for path, body in [("/v1/track", b"{not json"), ("/v1/batch", b"[" * 5000)]:
        status, answer = await post(client, path, body, headers=wrong)
        assert (status, answer["code"]) == (401, "unauthorized"), path
        assert answer["message"] == "Authorization: invalid write key"
    # A wrong header key is not rescued by a right key in the body.
    event = {"userId": "u", "event": "E", "writeKey": KEY}
    assert (await post(client, "/v1/track", event, headers=wrong))[0] == 401
    # With a valid header, parse errors are reported as before; without a header the body is
    # parsed (capped) to find writeKey, so a bad body there is a 400.
    assert (await post(client, "/v1/track", b"{not json"))[0] == 400
    status, answer = await post(client, "/v1/track", b"{not json", headers={})
    assert (status, answer["code"]) == (400, "invalid_json")
    assert harness.stored == []


# ---------------------------------------------------------------------------------------------
# Batches


async def test_batch_envelope(served: tuple[TestClient, Harness]) -> None:
    client, harness = served
    body = {
        "batch": [
            {
                "type": "identify",
                "userId": "u-1042",
                "traits": {"plan": "pro"},
                "timestamp": "2025-03-02T10:15:03.901Z",
                "context": {"library": {"name": "item"}, "ip": "1.1.1.1"},
            },
            {
                "type": "page",
                "userId": "u-1042",
                "name": "Home",
                "timestamp": "2025-03-02T10:15:04.002Z",
                "integrations": {"Hull": False},
            },
        ],
        "context": {"library": {"name": "envelope"}, "locale": "en-US"},
        "integrations": {"All": True, "Hull": True},
        "sentAt": "2025-03-02T10:15:04.510Z",
    }
    status, answer = await post(client, "/v1/batch", body)
    assert (status, answer) == (200, {"success": True})
    first, second = harness.stored
    assert first["context"]["library"] == {"name": "item"}
    assert first["context"]["locale"] == "en-US"
    assert first["context"]["ip"] == "1.1.1.1"
    assert second["context"]["library"] == {"name": "envelope"}
    assert first["integrations"] == {"All": True, "Hull": True}
    assert second["integrations"] == {"All": True, "Hull": False}
    assert first["sentAt"] == second["sentAt"] == "2025-03-02T10:15:04.510Z"
    assert first["originalTimestamp"] == "2025-03-02T10:15:03.901Z"


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/import", "/v1/b"])
async def test_batch_error_is_labelled_and_atomic(
    served: tuple[TestClient, Harness], path: str
) -> None:
    client, harness = served
    items = [{"type": "track", "userId": "u", "event": "E"}] * 3 + [
        {"type": "track", "userId": "u"}
    ]
    status, body = await post(client, path, {"batch": items})
    assert status == 400
    assert body["message"] == "batch[3].event: required for track"
    assert body["code"] == "event_not_defined"
    status, body = await post(client, path, {"batch": [{"userId": "u", "event": "E"}]})
    assert (status, body["message"]) == (400, "batch[0].type: required")
    assert harness.stored == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_body"),
        (orjson.dumps({"batch": []}), "empty_batch"),
        (orjson.dumps({}), "empty_batch"),
        (orjson.dumps({"batch": {"type": "track"}}), "invalid_body"),
        (orjson.dumps({"batch": [{"type": "track"}], "context": "x"}), "context_not_object"),
    ],
)
async def test_batch_body_errors(
    served: tuple[TestClient, Harness], body: bytes, code: str
) -> None:
    client, _ = served
    status, answer = await post(client, "/v1/batch", body)
    assert status == 400
    assert answer["code"] == code
    assert answer["message"]


async def test_limits(served: tuple[TestClient, Harness]) -> None:
    client, harness = served
    big = "x" * (33 * 1024)
    status, body = await post(client, "/v1/track", {"userId": "u", "event": "E", "p": big})
    assert (status, body["code"]) == (400, "too_large")
    item = {"type": "track", "userId": "u", "event": "E"}
    status, body = await post(client, "/v1/batch", {"batch": [item, {**item, "p": big}]})
    assert (status, body["code"], body["message"]) == (
        400,
        "too_large",
        "batch[1]: larger than 32 KB",
    )
    many = {"batch": [item] * (MAX_BATCH_EVENTS + 1)}
    status, body = await post(client, "/v1/batch", many)
    assert (status, body["code"]) == (400, "too_many_events")
    huge = {"batch": [{**item, "p": "y" * 30_000} for _ in range(20)]}
    status, body = await post(client, "/v1/batch", huge)
    assert (status, body["code"]) == (400, "too_large")
    assert harness.stored == []
    status, _ = await post(client, "/v1/batch", {"batch": [item] * MAX_BATCH_EVENTS})
    assert status == 200
    assert len(harness.stored) == MAX_BATCH_EVENTS


# ---------------------------------------------------------------------------------------------
# Encodings


async def test_gzip_and_text_plain(served: tuple[TestClient, Harness]) -> None:
    client, harness = served
    body = gzip.compress(orjson.dumps({"batch": [{"type": "track", "userId": "u", "event": "Z"}]}))
    headers = {**AUTH, "Content-Encoding": "gzip", "Content-Type": "application/json"}
    assert (await post(client, "/v1/batch", body, headers=headers))[0] == 200
    plain = {"Content-Type": "text/plain", "Origin": "https://shop.example.com"}
    event = {"userId": "u", "event": "T", "writeKey": KEY}
    assert (await post(client, "/v1/t", event, headers=plain))[0] == 200
    assert [e["event"] for e in harness.stored] == ["Z", "T"]


async def test_gzip_bomb_and_broken_gzip(served: tuple[TestClient, Harness]) -> None:
    client, harness = served
    bomb = gzip.compress(b'{"batch": [' + b" " * (50 * 1024 * 1024) + b"]}")
    headers = {**AUTH, "Content-Encoding": "gzip"}
    status, body = await post(client, "/v1/batch", bomb, headers=headers)
    assert (status, body["code"]) == (400, "too_large")
    status, body = await post(client, "/v1/batch", b"\x1f\x8bnot really gzip", headers=headers)
    assert status == 400
    assert body["code"] == "invalid_encoding"
    assert harness.stored == []


def test_gunzip_helper_caps_output() -> None:
    from crossdock.ingest.body import gunzip

    data = gzip.compress(b"a" * 10_000)
    assert gunzip(data, 10_000) == b"a" * 10_000
    with pytest.raises(IngestError, match="larger than"):
        gunzip(data, 9_999)
    with pytest.raises(IngestError, match="truncated"):
        gunzip(data[:-12], 100_000)


# ---------------------------------------------------------------------------------------------
# Browser support


async def test_cors_preflight_and_headers(served: tuple[TestClient, Harness]) -> None:
    client, _ = served
    origin = "https://shop.example.com"
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    async with client.options("/v1/t", headers=headers) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == origin
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        assert resp.headers["Access-Control-Allow-Headers"] == "content-type"
        assert int(resp.headers["Access-Control-Max-Age"]) > 0
    event = orjson.dumps({"userId": "u", "event": "E", "writeKey": KEY})
    async with client.post("/v1/t", data=event, headers={"Origin": origin}) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == origin
        assert resp.headers["Vary"] == "Origin"
    async with client.post("/v1/t", data=b"{}", headers={"Origin": origin}) as resp:
        assert resp.status == 401
        assert resp.headers["Access-Control-Allow-Origin"] == origin


async def test_cors_restricted_origins() -> None:
    source = make_source(allowed_origins=["https://good.example"])
    ingestor = SegmentIngestor(source)
    client = TestClient(TestServer(Harness(ingestor, "web").app, host="127.0.0.1", port=0))
    await client.start_server()
    try:
        for origin, allowed in [("https://good.example", True), ("https://evil.example", False)]:
            async with client.options("/v1/t", headers={"Origin": origin}) as resp:
                assert resp.status == 204
                assert ("Access-Control-Allow-Origin" in resp.headers) is allowed
    finally:
        await client.close()


async def test_settings_document(served: tuple[TestClient, Harness]) -> None:
    client, _ = served
    async with client.get(f"/v1/projects/{KEY}/settings") as resp:
        assert resp.status == 200
        document = await resp.json()
    segment_io = document["integrations"]["Segment.io"]
    assert segment_io["apiKey"] == KEY
    assert segment_io["apiHost"] == "events.example.com/v1"
    assert segment_io["protocol"] == "https"
    assert list(document["integrations"]) == ["Segment.io"]
    assert document["remotePlugins"] == []
    assert document["metrics"]["sampleRate"] == 0
    for key in ["plan", "edgeFunction", "middlewareSettings", "enabledMiddleware"]:
        assert key in document


async def test_settings_answer_alike_for_unknown_keys(served: tuple[TestClient, Harness]) -> None:
    """Defect 9: no oracle for guessing write keys: an unknown key gets the same status,
    headers and document (its own key echoed) as a configured one."""
    client, _ = served
    origin = {"Origin": "https://shop.example.com"}
    answers = []
    guess = KEY[:-1] + ("x" if KEY[-1] != "x" else "y")  # same length: same Content-Length
    for key in [KEY, guess]:
        async with client.get(f"/v1/projects/{key}/settings", headers=origin) as resp:
            headers = {k: v for k, v in resp.headers.items() if k not in ("Date", "Server")}
            text = (await resp.read()).decode().replace(key, "KEY")
            answers.append((resp.status, headers, text))
    assert answers[0] == answers[1]
    assert answers[0][0] == 200


def test_settings_host_from_public_url() -> None:
    def base(url: str) -> tuple[str, str]:
        source = Source("w", "segment", None, SegmentSourceSettings([Secret("k")]), None, url)
        document = SegmentIngestor(source)._settings_base
        return document

    assert base("http://127.0.0.1:8088") == ("http", "127.0.0.1:8088/v1")
    assert base("https://example.com/crossdock/") == ("https", "example.com/crossdock/v1")


# ---------------------------------------------------------------------------------------------
# Real client: segment-analytics-python


@pytest.mark.parametrize("compress", [False, True])
async def test_analytics_python_client(served: tuple[TestClient, Harness], compress: bool) -> None:
    from segment.analytics import Client

    client, harness = served
    errors: list[Any] = []
    host = str(client.make_url("")).rstrip("/")

    def send() -> None:
        analytics = Client(
            KEY,
            host=host,
            sync_mode=True,
            gzip=compress,
            on_error=lambda exc, batch: errors.append(exc),
            max_retries=0,
        )
        analytics.identify("u-7", {"email": "u7@example.com", "plan": "pro"})
        analytics.track("u-7", "Order Completed", {"order_id": "A-1", "revenue": 9.5})
        analytics.page("u-7", "Docs", "Install", {"url": "https://example.com/docs"})
        analytics.group("u-7", "g-9", {"name": "Acme"})
        analytics.alias("anon-3", "u-7")

    await asyncio.to_thread(send)
    assert errors == []
    kinds = [e["type"] for e in harness.stored]
    assert kinds == ["identify", "track", "page", "group", "alias"]
    track = harness.stored[1]
    assert track["event"] == "Order Completed"
    assert track["properties"] == {"order_id": "A-1", "revenue": 9.5}
    assert track["context"]["library"]["name"] == "analytics-python"
    assert track["sentAt"].endswith("Z")
    assert "writeKey" not in track
