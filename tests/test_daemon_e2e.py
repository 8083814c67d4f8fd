"""The real daemon end to end: ``crossdock run`` on a free port, real SQLite, real sockets."""

from __future__ import annotations

import gzip
import signal

import aiohttp
import orjson
import pytest

from crossdock.testing.helpers import basic_auth, post_json, read_ndjson, wait_until

WRITE_KEY = "wk-e2e-0123456789"
AUTH = basic_auth(WRITE_KEY)

CONFIG = f"""
[[sources]]
id = "web"
type = "segment"
write_keys = ["{WRITE_KEY}"]

[[destinations]]
id = "out"
plugin = "file"
[destinations.settings]
path = "{{workdir}}/out.ndjson"
[destinations.delivery]
max_wait_ms = 50
"""


@pytest.fixture
def daemon(crossdock_daemon):
    return crossdock_daemon(CONFIG)


async def test_track_is_stored_normalised_and_delivered(daemon) -> None:
    out = daemon.workdir / "out.ndjson"
    async with aiohttp.ClientSession() as session:
        status, body = await post_json(
            session, daemon.url + "/v1/track",
            {"userId": "u-1", "event": "Signed Up", "properties": {"plan": "pro"},
             "timestamp": "2026-11-22T12:00:00.000Z", "sentAt": "2026-11-22T12:00:05.000Z",
             "context": {"library": {"name": "analytics-python", "version": "2.3.4"}}},
            auth=AUTH,
        )  # fmt: skip
    assert (status, body) == (200, {"success": True})
    events = await wait_until(lambda: read_ndjson(out), what="event in the file")
    [event] = events
    assert event["type"] == "track"
    assert event["event"] == "Signed Up"
    assert event["messageId"]
    assert event["receivedAt"].endswith("Z")
    assert event["originalTimestamp"] == "2026-11-22T12:00:00.000Z"
    assert event["context"]["library"] == {"name": "analytics-python", "version": "2.3.4"}
    assert event["context"]["crossdock"]["source"] == "web"


async def test_segment_python_client_and_gzip(daemon) -> None:
    import segment.analytics as analytics

    client = analytics.Client(WRITE_KEY, host=daemon.url, sync_mode=True, gzip=True, max_retries=1)
    client.identify("u-2", {"email": "ana@example.com"})
    client.track("u-2", "Order Completed", {"order_id": "A-1", "revenue": 25.0})
    client.page("u-2", "Docs", "Home", {"url": "https://example.com/docs"})
    client.flush()
    out = daemon.workdir / "out.ndjson"
    events = await wait_until(lambda: len(read_ndjson(out)) >= 3 and read_ndjson(out))
    assert sorted(e["type"] for e in events) == ["identify", "page", "track"]
    assert all(e["context"]["library"]["name"] == "analytics-python" for e in events)


BAD_REQUESTS = [
    ("/v1/track", b"{not json", AUTH, 400),
    ("/v1/track", {"userId": "u"}, AUTH, 400),  # track without event
    ("/v1/track", {"event": "X"}, AUTH, 400),  # no ids
    ("/v1/identify", {"userId": "u", "traits": "nope"}, AUTH, 400),
    ("/v1/batch", {"batch": []}, AUTH, 400),
    (
        "/v1/batch",
        {
            "batch": [
                {"type": "track", "userId": "u", "event": "ok"},
                {"type": "track", "userId": "u"},
            ]
        },
        AUTH,
        400,
    ),
    ("/v1/batch", {"batch": [{"type": "nonsense", "userId": "u"}]}, AUTH, 400),
    ("/v1/track", {"userId": "u", "event": "X", "properties": {"big": "x" * 40_000}}, AUTH, 400),
    ("/v1/batch", {"batch": [{"type": "track", "userId": "u", "event": "e"}] * 2501}, AUTH, 400),
    ("/v1/track", {"userId": "u", "event": "X"}, basic_auth("wrong-key"), 401),
    ("/v1/track", {"userId": "u", "event": "X"}, None, 401),
]


async def test_bad_inputs_get_precise_4xx_and_store_nothing(daemon) -> None:
    out = daemon.workdir / "out.ndjson"
    async with aiohttp.ClientSession() as session:
        for path, body, auth, expected in BAD_REQUESTS:
            status, answer = await post_json(session, daemon.url + path, body, auth=auth)
            assert status == expected, (path, answer)
            assert answer["success"] is False
            assert answer["code"]
            assert answer["message"]
        # The partly valid batch above names the bad event precisely.
        status, answer = await post_json(
            session, daemon.url + "/v1/batch",
            {"batch": [{"type": "track", "userId": "u", "event": "ok"},
                       {"type": "track", "userId": "u"}]},
            auth=AUTH,
        )  # fmt: skip
        assert answer["message"].startswith("batch[1].event")
        # A good event afterwards is the only one that ever reaches the destination.
        status, _ = await post_json(
            session, daemon.url + "/v1/track", {"userId": "u", "event": "Good"}, auth=AUTH
        )
        assert status == 200
        async with session.get(daemon.url + "/metrics") as response:
            metrics = await response.text()
    events = await wait_until(lambda: read_ndjson(out))
    assert [e["event"] for e in events] == ["Good"]
    assert 'crossdock_events_received_total{source="web"} 1' in metrics
    assert "crossdock_requests_rejected_total" in metrics


async def test_duplicates_by_message_id_are_stored_once(daemon) -> None:
    out = daemon.workdir / "out.ndjson"
    event = {"userId": "u", "event": "Once", "messageId": "dup-1"}
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            status, _ = await post_json(session, daemon.url + "/v1/track", event, auth=AUTH)
            assert status == 200
        await post_json(
            session, daemon.url + "/v1/track", {**event, "messageId": "dup-2"}, auth=AUTH
        )
        events = await wait_until(lambda: len(read_ndjson(out)) >= 2 and read_ndjson(out))
        async with session.get(daemon.url + "/metrics") as response:
            metrics = await response.text()
    assert [e["messageId"] for e in events] == ["dup-1", "dup-2"]
    assert 'crossdock_events_deduplicated_total{source="web"} 2' in metrics


async def test_gzip_body_and_text_plain_short_path(daemon) -> None:
    out = daemon.workdir / "out.ndjson"
    body = gzip.compress(
        orjson.dumps({"batch": [{"type": "track", "userId": "u", "event": "Zipped"}]})
    )
    async with aiohttp.ClientSession() as session:
        status, _ = await post_json(
            session, daemon.url + "/v1/batch", body, auth=AUTH, headers={"Content-Encoding": "gzip"}
        )
        assert status == 200
        # analytics.js: text/plain JSON with writeKey inside, one-letter path.
        async with session.post(
            daemon.url + "/v1/t",
            data=orjson.dumps({"writeKey": WRITE_KEY, "userId": "u", "event": "Browser"}),
            headers={"Content-Type": "text/plain", "Origin": "https://shop.example.com"},
        ) as response:
            assert response.status == 200
            assert response.headers.get("Access-Control-Allow-Origin") in (
                "*",
                "https://shop.example.com",
            )
    events = await wait_until(lambda: len(read_ndjson(out)) >= 2 and read_ndjson(out))
    assert sorted(e["event"] for e in events) == ["Browser", "Zipped"]


async def test_health_ready_metrics_and_admin(daemon) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(daemon.url + "/health") as response:
            assert response.status == 200
        async with session.get(daemon.url + "/ready") as response:
            assert response.status == 200
        async with session.get(daemon.url + "/admin/destinations") as response:
            assert response.status == 401
        async with session.get(
            daemon.url + "/admin/destinations", headers={"Authorization": "Bearer wrong"}
        ) as response:
            assert response.status == 401
        async with session.get(
            daemon.url + "/admin/destinations", headers=daemon.admin_headers()
        ) as response:
            assert response.status == 200
            doc = await response.json()
        [row] = doc["destinations"]
        assert row["id"] == "out"
        assert row["paused"] is False
        for key in ("pending", "retrying", "dead_letters", "lag_seconds"):
            assert key in row
        async with session.post(
            daemon.url + "/admin/destinations/out/dry-run",
            data=orjson.dumps({"type": "track", "event": "X", "userId": "u"}),
            headers=daemon.admin_headers(),
        ) as response:
            assert response.status == 200
            dry = await response.json()
        assert dry["dropped"] is False
        assert dry["payload"]["event"] == "X"
        async with session.get(daemon.url + "/metrics") as response:
            text = await response.text()
        families = (
            "crossdock_events_received_total",
            "crossdock_queue_lag_seconds",
            "crossdock_events_delivered_total",
            "crossdock_end_to_end_latency_seconds",
        )
        for family in families:
            assert f"# TYPE {family}" in text
    assert daemon.admin_token not in daemon.log()


async def test_sigterm_shuts_down_gracefully_with_exit_0(daemon) -> None:
    out = daemon.workdir / "out.ndjson"
    async with aiohttp.ClientSession() as session:
        batch = [{"type": "track", "userId": f"u{i}", "event": "E"} for i in range(200)]
        status, _ = await post_json(session, daemon.url + "/v1/batch", {"batch": batch}, auth=AUTH)
        assert status == 200
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(30) == 0
    delivered = len(read_ndjson(out))
    # Whatever was not flushed is still queued: a restart delivers the rest, nothing is lost.
    daemon.restart()
    events = await wait_until(lambda: len(read_ndjson(out)) >= 200 and read_ndjson(out))
    assert delivered <= len(events)
    assert {e["context"]["crossdock"]["source"] for e in events} == {"web"}
    assert len({e["messageId"] for e in events}) == 200


async def test_a_source_route_with_path_parameters_through_the_running_server(daemon) -> None:
    """Source routes are dispatched through the reloadable routing layer: a route whose handler
    reads its path parameters (analytics.js settings) still gets them, after the admin
    middleware has run."""
    async with aiohttp.ClientSession() as session:
        url = f"{daemon.url}/v1/projects/{WRITE_KEY}/settings"
        async with session.get(url) as response:
            assert response.status == 200
            doc = await response.json()
    assert WRITE_KEY in orjson.dumps(doc).decode()
