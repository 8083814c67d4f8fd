"""JetStream publish acknowledgements are parsed, not scanned (issue 15, defect 9).

Before: the publisher looked for the bytes ``"error"`` anywhere in an acknowledgement, so a
stream named ``error`` (which the config accepts) made every stored event count as failed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from crossdock.queue.nats import NatsQueue
from crossdock.queue.nats_publish import Publisher, PublishError, read_ack


@pytest.mark.parametrize(
    ("data", "duplicate"),
    [
        (b'{"stream":"error","seq":7}', False),
        (b'{"stream": "error", "seq": 7, "duplicate": true}', True),
        (b'{"stream":"crossdock","seq":1,"domain":"error"}', False),
        (b'{"stream":"x_duplicate","seq":3,"duplicate":false}', False),
        (b'{"stream":"true","seq":3}', False),
    ],
)
def test_an_acknowledgement_is_read_by_its_keys(data: bytes, duplicate: bool) -> None:
    assert read_ack(data) is duplicate


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b'{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}',
            "maximum messages exceeded (code 10077)",
        ),
        (b'{"error":"boom"}', "publish refused: boom"),
        (b"not json", "unreadable acknowledgement: not json"),
        (b"[1, 2]", "unreadable acknowledgement"),
        (b'{"seq": 1}', "unreadable acknowledgement"),
    ],
)
def test_a_refusal_or_garbage_is_an_error(data: bytes, message: str) -> None:
    outcome = read_ack(data)
    assert isinstance(outcome, PublishError)
    assert message in str(outcome)


async def test_a_stream_named_error_stores_and_delivers(nats_url: str) -> None:
    q = NatsQueue(nats_url, stream="error", retry_poll=0.0)
    await q.open(["a"])
    try:
        events: list[dict[str, Any]] = [
            {"type": "track", "event": "E", "messageId": f"err-{time.time_ns()}-{i}"}
            for i in range(20)
        ]
        result = await q.append(events)
        assert (result.stored, result.duplicates) == (20, 0)
        again = await q.append(events[:5])
        assert (again.stored, again.duplicates) == (0, 5)
        got: list[Any] = []
        deadline = time.monotonic() + 10
        while len(got) < 20 and time.monotonic() < deadline:
            got += await q.fetch("a", 20 - len(got), time.time())
        assert [g.event["messageId"] for g in got] == [e["messageId"] for e in events]
        await q.settle("a", [g.seq for g in got])
        assert (await q.stats("a")).pending == 0
    finally:
        await q.close()


async def test_publish_many_answers_each_message_in_order(nats_url: str) -> None:
    """One call, one outcome per message in its order: stored, duplicate, refused (no stream
    for the subject), and never answered (a plain subscriber that does not reply): a timeout;
    the unanswered token is forgotten. ``stop`` fails what still waits."""
    import nats  # here: the fixture skips first when the extra is missing

    stream = "p" + uuid.uuid4().hex[:10]
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().add_stream(name=stream, subjects=[f"{stream}.>"])
        silent = await nc.subscribe(f"{stream}-silent")  # takes messages, answers none
        publisher = Publisher(nc)
        await publisher.start()
        results = await publisher.publish_many(
            [
                (f"{stream}.events", b"{}", "a"),
                (f"{stream}.events", b"{}", "a"),
                (f"{stream}.events", b"{}", "b"),
                (f"{stream}-nowhere", b"{}", "c"),
                (f"{stream}-silent", b"{}", "d"),
            ],
            timeout=1.0,
        )
        assert results[:3] == [False, True, False]
        assert isinstance(results[3], PublishError)
        assert isinstance(results[4], TimeoutError)
        assert publisher._waiting == {}
        waiting = asyncio.ensure_future(
            publisher.publish_many([(f"{stream}-silent", b"{}", "e")], timeout=30.0)
        )
        await asyncio.sleep(0.2)
        await publisher.stop()
        (outcome,) = await asyncio.wait_for(waiting, 5)
        assert isinstance(outcome, PublishError)
        assert "connection closed" in str(outcome)
        await silent.unsubscribe()
    finally:
        await nc.close()
