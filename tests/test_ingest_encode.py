"""The ingest handler serializes events once for the queue (``encode_events``), checking the
depth in the same pass, and keeps the parsed events for the live tail only when it listens."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crossdock.errors import IngestError
from crossdock.ingest.handler import (
    AppendsEncoded,
    add_source_routes,
    check_depth,
    encode_events,
)
from crossdock.ingest.labels import IndexLabels
from crossdock.ingest.sources.segment import SegmentIngestor, SegmentSourceSettings
from crossdock.metrics import Metrics
from crossdock.queue.sqlite import SqliteQueue
from crossdock.secrets import Secret
from crossdock.types import Ingested, Source

KEY = "wk-encode-0123456789"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}


def _event(depth: int, index: int = 0) -> dict[str, Any]:
    # The event object is level 1; each "a" object one more.
    value: object = 1
    for _ in range(depth - 1):
        value = {"a": value}
    return {"type": "track", "event": "E", "userId": "u", "messageId": f"m{index}", "p": value}


def _ingested(events: list[dict[str, Any]]) -> Ingested:
    return Ingested(events, labels=IndexLabels(len(events), "batch"))


@pytest.mark.parametrize("max_depth", [8, 64, 250])
@pytest.mark.parametrize("count", [1, 3, 40])
def test_depth_limit_is_exact_and_rows_are_the_json(max_depth: int, count: int) -> None:
    """Small requests (bracket count) and large ones (one wrapped serialization) alike."""
    ok = [_event(max_depth, i) for i in range(count)]
    rows = encode_events(ok, _ingested(ok), max_depth)
    assert rows == [(f"m{i}", orjson.dumps(ev)) for i, ev in enumerate(ok)]
    deep = [*ok, _event(max_depth + 1, count)]
    with pytest.raises(IngestError) as info:
        encode_events(deep, _ingested(deep), max_depth)
    assert (info.value.status, info.value.code) == (400, "too_deep")
    assert info.value.message == f"batch[{count}]: nested more than {max_depth} levels deep"
    with pytest.raises(IngestError) as same:
        check_depth(deep, _ingested(deep), max_depth)
    assert same.value.message == info.value.message


def test_brackets_inside_strings_are_not_depth() -> None:
    """A bracket count over the limit only triggers the exact check, which passes."""
    event = {**_event(2), "text": "{[" * 100}
    assert encode_events([event], _ingested([event]), 8) == [("m0", orjson.dumps(event))]


def test_an_event_orjson_cannot_write_is_too_deep() -> None:
    event = _event(300)
    with pytest.raises(IngestError) as info:
        encode_events([event], Ingested([event]), 64)
    assert (info.value.code, info.value.message) == (
        "too_deep",
        "body: nested more than 64 levels deep",
    )


def test_message_id_only_when_a_string() -> None:
    events = [{"type": "track", "messageId": 5}, {"type": "track"}]
    assert [mid for mid, _ in encode_events(events, _ingested(events), 64)] == [None, None]


class _Recorder:
    def __init__(self, wanted: bool) -> None:
        self.wanted = wanted
        self.calls: list[tuple[str, list[dict[str, Any]]]] = []

    def wants_events(self, source_id: str) -> bool:
        return self.wanted

    def __call__(self, source_id: str, events: list[dict[str, Any]]) -> None:
        self.calls.append((source_id, events))


@pytest_asyncio.fixture(params=["sqlite", "nats"])
async def served(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[TestClient, Any, list[Any]]]:
    """The segment source on a real queue of each backend (both take serialized events)."""
    source = Source(
        id="web", type="segment", path=None, settings=SegmentSourceSettings([Secret(KEY)])
    )
    if request.param == "nats":
        from crossdock.queue.nats import NatsQueue

        stream = "enc" + uuid.uuid4().hex[:8]
        queue: Any = NatsQueue(request.getfixturevalue("nats_url"), stream=stream)
    else:
        queue = SqliteQueue(tmp_path / "q.db")
    await queue.open(["d"])
    listeners: list[Any] = []
    app = web.Application()
    add_source_routes(app, source, SegmentIngestor(source), queue, Metrics(), listeners)
    client = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    try:
        yield client, queue, listeners
    finally:
        await client.close()
        await queue.close()


async def test_listeners_get_the_stored_events_only_when_they_want_them(
    served: tuple[TestClient, Any, list[Any]],
) -> None:
    client, queue, listeners = served
    assert isinstance(queue, AppendsEncoded)  # the handler hands it bytes, not events
    quiet, listening, plain = _Recorder(False), _Recorder(True), []
    listeners.extend([quiet, listening, lambda s, evs: plain.append((s, evs))])
    body = {"batch": [{"type": "track", "userId": "u", "event": f"E{i}"} for i in range(20)]}
    async with client.post("/v1/batch", data=orjson.dumps(body), headers=AUTH) as resp:
        assert resp.status == 200, await resp.text()
    # Every listener is called once a request's events are wanted by one of them.
    assert [len(evs) for _, evs in listening.calls] == [20]
    assert quiet.calls == listening.calls == plain
    fetched = await queue.fetch("d", 100, now=1e12)
    assert [q.event for q in fetched] == listening.calls[0][1]
    listening.wanted = False
    listeners.pop()
    async with client.post("/v1/batch", data=orjson.dumps(body), headers=AUTH) as resp:
        assert resp.status == 200
    assert len(listening.calls) == 1
    assert len(await queue.fetch("d", 100, now=1e12)) == 20


class _BytesKeeper(_Recorder):
    """A listener that wants parsed events only when told, and keeps the bytes otherwise."""

    def __init__(self, wanted: bool) -> None:
        super().__init__(wanted)
        self.encoded: list[tuple[str, list[tuple[str | None, bytes]]]] = []

    def accept_encoded(self, source_id: str, rows: list[tuple[str | None, bytes]]) -> None:
        self.encoded.append((source_id, rows))


async def test_a_listener_that_keeps_bytes_hears_of_events_nobody_wanted_parsed(
    served: tuple[TestClient, Any, list[Any]],
) -> None:
    client, queue, listeners = served
    keeper = _BytesKeeper(False)
    listeners.append(keeper)
    body = {"batch": [{"type": "track", "userId": "u", "event": f"E{i}"} for i in range(5)]}
    async with client.post("/v1/batch", data=orjson.dumps(body), headers=AUTH) as resp:
        assert resp.status == 200
    assert keeper.calls == []
    [(source_id, rows)] = keeper.encoded
    stored = [q.event for q in await queue.fetch("d", 100, now=1e12)]
    assert source_id == "web"
    assert [orjson.loads(raw) for _, raw in rows] == stored
    assert [mid for mid, _ in rows] == [e["messageId"] for e in stored]
    # Wanted: the parsed events go to every listener, and no bytes are handed out besides.
    keeper.wanted = True
    async with client.post("/v1/batch", data=orjson.dumps(body), headers=AUTH) as resp:
        assert resp.status == 200
    assert len(keeper.encoded) == 1
    assert [len(evs) for _, evs in keeper.calls] == [5]


def test_the_admin_tail_wants_events_only_for_a_reader_or_a_listener_that_does() -> None:
    from crossdock.web.admin import EventTail

    tail = EventTail()
    assert not tail.wants_events("web")
    keeper = _BytesKeeper(False)
    tail.listeners.append(keeper)
    assert not tail.wants_events("web")
    tail.accept_encoded("web", [("m1", b"{}")])
    assert keeper.encoded == [("web", [("m1", b"{}")])]
    keeper.wanted = True
    assert tail.wants_events("web")
    keeper.wanted = False
    tail.listeners.append(lambda source_id, events: None)  # a plain listener always wants them
    assert tail.wants_events("web")
    tail.listeners.pop()
    tail.subscribers.add(object())  # type: ignore[arg-type]  # an /admin/tail reader
    assert tail.wants_events("web")
