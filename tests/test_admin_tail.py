"""``GET /admin/tail?destination=``: the events a destination's worker did not send, with why.

The real daemon for the stream (filtered by ``where`` and by the mapping's sections, dropped by
a section's null payload, 404, 400); the worker and the hub directly for what the hot path
does (no record without a subscriber, masked dead-letter reasons, lossy fan-out).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

import crossdock
from crossdock import DeliverySettings, Destination, Secret
from crossdock.deliver import worker as worker_module
from crossdock.deliver.destinations.webhook import DESTINATION_TYPE, WebhookSettings
from crossdock.deliver.settle import Settlement
from crossdock.deliver.worker import DestinationWorker
from crossdock.metrics import Metrics
from crossdock.queue import QueuedEvent
from crossdock.testing.helpers import basic_auth, post_json, read_ndjson, wait_until
from crossdock.web.admin import NotSentTail

WRITE_KEY = "wk-tail-0123456789"
AUTH = basic_auth(WRITE_KEY)
MARKER = "pii-marker-7f3a"  # in every event's properties and traits: must never be tailed

CONFIG = f"""
[[sources]]
id = "web"
type = "segment"
write_keys = ["{WRITE_KEY}"]

[[destinations]]
id = "out"
plugin = "file"
where = "event != 'Internal Ping'"
[destinations.settings]
path = "{{workdir}}/out.ndjson"
[destinations.delivery]
max_wait_ms = 50
[destinations.mapping.dispatch]
select = "lookup('kinds', event)"
[destinations.mapping.sections.order.fields]
orderId = "properties.order_id"
[destinations.mapping.sections.refund_without_product_ids.fields]
"." = "`null`"
[destinations.mapping.sections.audit]
drop = true
[destinations.tables.kinds]
"Order Completed" = "order"
"Order Refunded" = "refund_without_product_ids"
"Audit" = "audit"
"""


def track(name: str, message_id: str) -> dict[str, Any]:
    return {
        "type": "track", "event": name, "userId": "u-1", "messageId": message_id,
        "properties": {"order_id": "A-1", "email": MARKER},
        "context": {"traits": {"email": MARKER}},
    }  # fmt: skip


async def read_records(response: aiohttp.ClientResponse, count: int) -> list[bytes]:
    lines = []
    for _ in range(count):
        lines.append(await asyncio.wait_for(response.content.readline(), 20))
    return lines


@pytest.mark.parametrize("workers", [1, 2])
async def test_destination_tail_shows_filtered_and_dropped_events_with_reasons(
    crossdock_daemon, workers: int
) -> None:
    if workers == 1:
        daemon = crossdock_daemon(CONFIG)
    else:
        # sqlite: process 0 delivers but takes no connections; process 1 relays its tail
        daemon = crossdock_daemon(CONFIG, extra_args=("--workers", "2"))
        await asyncio.to_thread(daemon.wait_processes_serving, 2, 30)
    batch = [
        track("Order Completed", "m-sent"),
        track("Order Refunded", "m-refund"),
        track("Audit", "m-audit"),
        track("Internal Ping", "m-ping"),
        track("Other", "m-other"),
    ]
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(
            daemon.url + "/admin/tail?destination=out", headers=daemon.admin_headers()
        ) as tail:
            assert tail.status == 200
            assert tail.headers["Content-Type"] == "application/x-ndjson"
            status, _ = await post_json(
                session, daemon.url + "/v1/batch", {"batch": batch}, auth=AUTH
            )
            assert status == 200
            lines = await read_records(tail, 4)
        async with session.get(daemon.url + "/metrics") as response:
            metrics = await response.text()
    for line in lines:
        assert MARKER.encode() not in line
        assert b"A-1" not in line
    records = sorted((orjson.loads(line) for line in lines), key=lambda r: r["messageId"])
    assert records == [
        {"destination": "out", "messageId": "m-audit", "type": "track", "event": "Audit",
         "outcome": "filtered", "reason": "section audit: drop"},
        {"destination": "out", "messageId": "m-other", "type": "track", "event": "Other",
         "outcome": "filtered", "reason": "no section (type track)"},
        {"destination": "out", "messageId": "m-ping", "type": "track", "event": "Internal Ping",
         "outcome": "filtered", "reason": "where"},
        {"destination": "out", "messageId": "m-refund", "type": "track",
         "event": "Order Refunded", "outcome": "dropped",
         "reason": "section refund_without_product_ids: null payload"},
    ]  # fmt: skip
    # The dropped reason is the one the metrics count; the sent event reached the file.
    assert 'reason="section refund_without_product_ids: null payload"' in metrics
    [sent] = await wait_until(lambda: read_ndjson(daemon.workdir / "out.ndjson"))
    assert sent["messageId"] == "m-sent"
    assert sent["orderId"] == "A-1"


async def test_source_tail_is_unchanged_and_separate(crossdock_daemon) -> None:
    daemon = crossdock_daemon(CONFIG)
    timeout = aiohttp.ClientTimeout(total=60)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(daemon.url + "/admin/tail?source=web", headers=daemon.admin_headers()) as tail,
    ):
        assert tail.status == 200
        await post_json(session, daemon.url + "/v1/track", track("Audit", "m-1"), auth=AUTH)
        [line] = await read_records(tail, 1)
    event = orjson.loads(line)
    assert event["messageId"] == "m-1"
    assert event["properties"]["email"] == MARKER  # the source tail shows accepted events whole


async def test_destination_tail_of_an_unknown_destination_is_404(crossdock_daemon) -> None:
    daemon = crossdock_daemon(CONFIG)
    async with aiohttp.ClientSession() as session:
        async with session.get(
            daemon.url + "/admin/tail?destination=nope", headers=daemon.admin_headers()
        ) as response:
            assert response.status == 404
            assert await response.json() == {
                "success": False, "code": "not_found", "message": "no destination 'nope'"
            }  # fmt: skip
        async with session.get(
            daemon.url + "/admin/tail?destination=out&source=web", headers=daemon.admin_headers()
        ) as response:
            assert response.status == 400
            assert (await response.json())["code"] == "invalid_query"
        async with session.get(daemon.url + "/admin/tail?destination=out") as response:
            assert response.status == 401


# -- the worker's hook, without a daemon ---------------------------------------------------------

API_KEY = "sk-live-very-secret-0123456789"


class Refusing:
    """A transformer that refuses events named "Bad" (naming the API key in its reason),
    filters events named "Skip" and maps the others."""

    def __call__(self, event: dict[str, Any]) -> Any:
        if event.get("event") == "Bad":
            raise crossdock.Unsendable(f"cannot send with key {API_KEY}")
        if event.get("event") == "Skip":
            return None
        return {"name": event.get("event")}

    def matches(self, event: dict[str, Any]) -> bool:
        return event.get("event") != "Skip"

    def drop_reason(self, event: dict[str, Any]) -> str | None:
        return "filtered" if event.get("event") == "Skip" else None


class CountingTail(NotSentTail):
    """A hub that counts how often the worker asks it and what it publishes."""

    def __init__(self) -> None:
        super().__init__(max_buffer=10)
        self.asked = 0
        self.published: list[dict[str, Any]] = []

    def wants(self, destination_id: str) -> bool:
        self.asked += 1
        return super().wants(destination_id)

    def __call__(self, destination_id: str, records: list[dict[str, Any]]) -> None:
        self.published.extend(records)
        super().__call__(destination_id, records)


def make_worker(hub: NotSentTail | None) -> DestinationWorker:
    settings = WebhookSettings(url="http://127.0.0.1:9/in", secret=Secret(API_KEY))
    destination = Destination(
        id="hook", plugin="webhook", type=DESTINATION_TYPE, settings=settings,
        mapping={".": "@"}, sources=("web",), delivery=DeliverySettings(),
    )  # fmt: skip
    return DestinationWorker(
        destination,
        Refusing(),
        object(),
        object(),
        Metrics(),
        not_sent=hub,  # type: ignore[arg-type]
    )


def fetched() -> list[QueuedEvent]:
    web = {"crossdock": {"source": "web"}, "traits": {"email": MARKER}}
    events = [
        {"type": "track", "event": "Bad", "messageId": "m-1", "context": web,
         "properties": {"email": MARKER}},
        {"type": "track", "event": "Skip", "messageId": "m-2", "context": web,
         "properties": {"email": MARKER}},
        {"type": "page", "messageId": "m-3", "context": {"crossdock": {"source": "app"}},
         "properties": {"email": MARKER}},
        {"type": "track", "event": "Fine", "messageId": "m-4", "context": web},
    ]  # fmt: skip
    return [QueuedEvent(i, e) for i, e in enumerate(events, 1)]


def prepare(worker: DestinationWorker) -> Settlement:
    extra = Settlement()
    worker._prepare(fetched(), [], [], extra, 0)
    return extra


def test_no_record_is_built_without_a_subscriber(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: Any) -> dict[str, Any]:
        raise AssertionError("a record was built with nobody subscribed")

    monkeypatch.setattr(worker_module, "not_sent_record", never)
    monkeypatch.setattr(worker_module, "_filter_reason", never)
    hub = CountingTail()
    hub.subscribe("other-destination")
    extra = prepare(make_worker(hub))
    assert hub.asked == 1  # one look per fetch, not per event
    assert hub.published == []
    assert len(extra.dead) == 1  # the worker still did its job
    assert len(extra.done) == 2
    prepare(make_worker(None))  # without a hub at all (the constructor's default)


def test_records_name_the_outcome_and_mask_the_dead_letter_reason() -> None:
    hub = CountingTail()
    subscriber = hub.subscribe("hook")
    extra = prepare(make_worker(hub))
    records = [subscriber.get_nowait() for _ in range(subscriber.qsize())]
    assert records == hub.published
    assert records == [
        {"destination": "hook", "messageId": "m-1", "type": "track", "event": "Bad",
         "outcome": "dead_lettered", "reason": extra.dead[0].reason},
        {"destination": "hook", "messageId": "m-2", "type": "track", "event": "Skip",
         "outcome": "filtered", "reason": "where"},
        {"destination": "hook", "messageId": "m-3", "type": "page", "event": None,
         "outcome": "filtered", "reason": "sources"},
    ]  # fmt: skip
    raw = orjson.dumps(records)
    assert API_KEY not in raw.decode()
    assert "cannot send with key" in records[0]["reason"]
    assert MARKER not in raw.decode()  # never the event's properties, traits or context


def test_the_hub_is_lossy_per_subscriber_and_forgets_empty_destinations() -> None:
    hub = NotSentTail(max_buffer=2)
    slow = hub.subscribe("d")
    fast = hub.subscribe("d")
    assert hub.wants("d")
    assert not hub.wants("e")
    hub("d", [{"n": 1}, {"n": 2}])
    fast.get_nowait()
    fast.get_nowait()
    hub("d", [{"n": 3}])  # slow is full: it loses this one, fast still gets it
    assert slow.qsize() == 2
    assert fast.get_nowait() == {"n": 3}
    hub.unsubscribe("d", slow)
    assert hub.wants("d")
    hub.unsubscribe("d", fast)
    assert not hub.wants("d")
    assert hub.subscribers == {}


async def test_a_reader_that_leaves_is_unsubscribed(tmp_path) -> None:
    """In process, served as ``crossdock run`` serves (no handler cancellation): once the
    reader disconnects the worker sees no subscriber again, so it stops building records."""
    from aiohttp import web

    from crossdock.config.load import load_config
    from crossdock.plugins.registry import load_registry
    from crossdock.testing.daemon import ADMIN_TOKEN, free_port
    from crossdock.web import keys
    from crossdock.web.app import make_app

    path = tmp_path / "crossdock.toml"
    body = CONFIG.replace("{workdir}", str(tmp_path))
    path.write_text(f'[server]\nadmin_token = "{ADMIN_TOKEN}"\n[queue]\npath = "q.db"\n' + body)
    registry = load_registry()
    app = make_app(load_config(path, registry), registry)
    hub = app[keys.TAIL].not_sent
    runner = web.AppRunner(app, handler_cancellation=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as session:
            response = await session.get(
                f"http://127.0.0.1:{port}/admin/tail?destination=out",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            assert response.status == 200
            assert hub.wants("out")
            response.close()
            await wait_until(lambda: not hub.wants("out"), what="the reader unsubscribed")
    finally:
        await runner.cleanup()
