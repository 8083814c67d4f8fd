"""The ingest handler serializes events once for the queue (``encode_events``), checking the
depth in the same pass, and keeps the parsed events for the live tail only when it listens."""

from __future__ import annotations

import base64
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


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[TestClient, SqliteQueue, list[Any]]]:
    source = Source(
        id="web", type="segment", path=None, settings=SegmentSourceSettings([Secret(KEY)])
    )
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
    served: tuple[TestClient, SqliteQueue, list[Any]],
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
