"""The NATS JetStream queue backend against a real ``nats-server -js``: the same semantics as
the SQLite backend (``test_queue_sqlite.py``), plus what only several instances can show.

The server comes from ``$CROSSDOCK_TEST_NATS_URL`` or ``nats-server`` on PATH (started on a free
port with a temporary store); every test uses its own stream names.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from crossdock.config.load import parse_config
from crossdock.errors import ConfigError, QueueError
from crossdock.plugins.registry import load_registry
from crossdock.queue import DeadLetter, QueueStats, Retry, make_queue
from crossdock.queue.nats import NatsQueue, redact_url
from crossdock.queue.nats_pull import decode_key, decode_token, encode_key, encode_token
from crossdock.queue.nats_server import nats_unavailable


def ev(mid: str, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Clicked", "messageId": mid, "properties": extra}


def mids(got: list[Any]) -> list[str]:
    return [g.event["messageId"] for g in got]


@pytest.fixture
def stream() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
async def make(nats_url: str, stream: str) -> AsyncIterator[Callable[..., Any]]:
    opened: list[NatsQueue] = []

    async def factory(destinations: tuple[str, ...] = ("a",), **kwargs: Any) -> NatsQueue:
        kwargs.setdefault("stream", stream)
        kwargs.setdefault("retry_poll", 0.0)
        q = NatsQueue(nats_url, **kwargs)
        await q.open(destinations)
        opened.append(q)
        return q

    yield factory
    for q in opened:
        await q.close()


async def fetch_all(
    q: NatsQueue, dest: str, n: int, now: float | None = None, *, ask: int | None = None
) -> list[Any]:
    """Fetch until ``n`` events came (the server may hand a backlog out in several pulls);
    each fetch asks for what is missing, or for ``ask`` events."""
    got: list[Any] = []
    deadline = time.monotonic() + 10
    while len(got) < n and time.monotonic() < deadline:
        limit = n - len(got) if ask is None else ask
        got += await q.fetch(dest, limit, time.time() if now is None else now)
        if len(got) < n:
            await q.wait(dest, 0.2)
    return got


async def test_append_fetch_settle_round_trip(make, stream: str) -> None:
    q = await make()
    before = time.time()
    result = await q.append([ev("m1", n=1), ev("m2", n=2.5, s="é\u2028")])
    assert (result.stored, result.duplicates) == (2, 0)
    got = await fetch_all(q, "a", 2)
    assert [g.event for g in got] == [ev("m1", n=1), ev("m2", n=2.5, s="é\u2028")]
    assert [g.attempts for g in got] == [0, 0]
    assert all(before - 5 <= g.enqueued_at <= time.time() + 5 for g in got)
    assert got[0].seq < got[1].seq
    stats = await q.stats("a")
    assert (stats.pending, stats.retrying, stats.dead) == (2, 0, 0)
    assert stats.oldest_at == pytest.approx(got[0].enqueued_at, abs=1)
    await q.settle("a", [g.seq for g in got])
    assert await q.stats("a") == QueueStats(0, 0, 0, None)
    assert await q.fetch("a", 10, time.time()) == []
    assert q.info() == {"backend": "nats", "url": q.url, "stream": stream}
    await q.ping()


async def test_concurrent_appends_are_all_stored(make) -> None:
    q = await make()
    results = await asyncio.gather(*(q.append([ev(f"m{i}")]) for i in range(200)))
    assert all(r.stored == 1 for r in results)
    got = await fetch_all(q, "a", 200)
    assert sorted(mids(got)) == sorted(f"m{i}" for i in range(200))


async def test_unserializable_event_fails_only_its_own_append(make) -> None:
    q = await make()
    with pytest.raises(QueueError, match="JSON"):
        await q.append([ev("m1", bad={1, 2})])
    assert (await q.append([ev("m2")])).stored == 1


async def test_dedupe_within_a_batch_concurrently_and_across_calls(make) -> None:
    q = await make()
    first = await q.append([ev("m1"), ev("m2"), ev("m1", other=True)])
    assert (first.stored, first.duplicates) == (2, 1)
    second = await q.append([ev("m2"), ev("m3")])
    assert (second.stored, second.duplicates) == (1, 1)
    group = await asyncio.gather(q.append([ev("x")]), q.append([ev("x")]), q.append([ev("x")]))
    assert sorted((r.stored, r.duplicates) for r in group) == [(0, 1), (0, 1), (1, 0)]
    got = await fetch_all(q, "a", 4)
    assert [g.event for g in got] == [ev("m1"), ev("m2"), ev("m3"), ev("x")]


async def test_dedupe_across_instances(make) -> None:
    one = await make()
    two = await make()
    results = await asyncio.gather(
        one.append([ev(f"m{i}") for i in range(50)]),
        two.append([ev(f"m{i}") for i in range(25, 75)]),
    )
    assert sum(r.stored for r in results) == 75
    assert sum(r.duplicates for r in results) == 25
    got = await fetch_all(one, "a", 75)
    assert sorted(mids(got)) == sorted(f"m{i}" for i in range(75))


async def test_dedupe_window_expires(make) -> None:
    q = await make(dedupe_window=1.0)
    assert (await q.append([ev("m1")])).stored == 1
    assert (await q.append([ev("m1")])).duplicates == 1
    await asyncio.sleep(1.6)  # the server forgets ids after its duplicate window
    assert (await q.append([ev("m1")])).stored == 1


async def test_retries_come_first_oldest_due_first_then_new_events(make) -> None:
    q = await make()
    now = time.time()
    await q.append([ev(f"m{i}") for i in range(4)])
    got = await fetch_all(q, "a", 4)
    s = [g.seq for g in got]
    retries = [
        Retry(s[2], got[2].event, now + 20, 1, now, "timeout", None),
        Retry(s[0], got[0].event, now + 10, 2, now - 5, "http_503", None),
        Retry(s[1], got[1].event, now + 500, 1, now, "http_503", None),
    ]
    await q.settle("a", [s[3]], retries)
    await q.append([ev("m4"), ev("m5")])
    got2 = await fetch_all(q, "a", 4, now + 30)
    assert mids(got2) == ["m0", "m2", "m4", "m5"]
    assert [(g.attempts, g.first_attempt_at) for g in got2[:2]] == [(2, now - 5), (1, now)]
    assert got2[0].enqueued_at == got[0].enqueued_at
    assert [(g.attempts, g.first_attempt_at) for g in got2[2:]] == [(0, None), (0, None)]
    stats = await q.stats("a")
    assert (stats.pending, stats.retrying) == (2, 3)
    # The one due in 500 s waits on the server, not in this process.
    assert await q.fetch("a", 10, now + 30) == []


async def test_limit_applies_to_retries_and_new_together(make) -> None:
    q = await make()
    await q.append([ev(f"m{i}") for i in range(5)])
    got = await q.fetch("a", 2, time.time())
    now = time.time()
    await q.settle("a", [], [Retry(g.seq, g.event, now, 1, now, "x") for g in got])
    got = await q.fetch("a", 3, time.time())
    assert mids(got) == ["m0", "m1", "m2"]
    assert [g.attempts for g in got] == [1, 1, 0]


async def test_in_flight_events_are_not_handed_out_twice(make) -> None:
    q = await make()
    await q.append([ev(f"m{i}") for i in range(5)])
    first = await q.fetch("a", 2, time.time())
    second = await fetch_all(q, "a", 3)
    assert mids(first + second) == [f"m{i}" for i in range(5)]
    assert await q.fetch("a", 10, time.time()) == []
    now = time.time()
    await q.settle("a", [], [Retry(first[0].seq, first[0].event, now, 1, now, "x")])
    assert [g.seq for g in await q.fetch("a", 10, time.time())] == [first[0].seq]
    assert await q.fetch("a", 10, time.time()) == []


async def test_concurrent_fetches_split_the_work(make) -> None:
    q = await make()
    await q.append([ev(f"m{i}") for i in range(100)])
    seqs: list[int] = []
    deadline = time.monotonic() + 10
    while len(seqs) < 100 and time.monotonic() < deadline:
        batches = await asyncio.gather(*(q.fetch("a", 10, time.time()) for _ in range(12)))
        seqs += [g.seq for b in batches for g in b]
    assert len(seqs) == len(set(seqs)) == 100


async def test_two_instances_share_a_destination_without_overlap(make) -> None:
    one = await make()
    two = await make()
    await one.append([ev(f"m{i}") for i in range(300)])
    seen: list[str] = []
    deadline = time.monotonic() + 10
    while len(seen) < 300 and time.monotonic() < deadline:
        for q in (one, two):
            got = await q.fetch("a", 40, time.time())
            seen += mids(got)
            await q.settle("a", [g.seq for g in got])
    assert sorted(seen) == sorted(f"m{i}" for i in range(300))


async def test_close_gives_back_unsettled_events_at_once(make) -> None:
    q = await make()
    await q.append([ev(f"m{i}") for i in range(6)])
    got = await fetch_all(q, "a", 6)
    s = [g.seq for g in got]
    await q.settle("a", [s[3], s[0]])
    await q.settle("a", [s[5], s[1]])
    assert (await q.stats("a")).pending == 2
    await q.close()
    q2 = await make()
    again = await fetch_all(q2, "a", 2)
    assert mids(again) == ["m2", "m4"]
    await q2.settle("a", [g.seq for g in again])
    assert (await q2.stats("a")).pending == 0


async def _buffered(q: NatsQueue, dest: str, n: int) -> int:
    """How many messages ``q`` holds read ahead for ``dest`` once ``n`` are (or 2 s passed)."""
    puller = q._dests[dest].events
    deadline = time.monotonic() + 2
    while len(puller.buffer) < n and time.monotonic() < deadline:  # noqa: ASYNC110 - polled
        await asyncio.sleep(0.01)
    return len(puller.buffer)


async def test_a_full_fetch_reads_the_next_ahead_in_stream_order(make) -> None:
    q = await make()
    await q.append([ev(f"m{i}") for i in range(50)])
    first = await fetch_all(q, "a", 10)
    # A backlog: the next 20 travel without being asked for...
    assert await _buffered(q, "a", 20) == 20
    # ... and the next fetches take them first, in stream order, none twice.
    rest: list[Any] = []
    while len(rest) < 40:
        got = await q.fetch("a", 10, time.time())
        assert got
        rest += got
    assert mids(first + rest) == [f"m{i}" for i in range(50)]
    await q.settle("a", [g.seq for g in first + rest])
    assert (await q.stats("a")).pending == 0


async def test_a_short_fetch_reads_nothing_ahead(make) -> None:
    q = await make()
    await q.append([ev(f"m{i}") for i in range(5)])
    # Every take asks for more than the stream holds, so none comes back full (a take asking
    # for what is missing could get the rest of the five, come back full and read ahead).
    got = await fetch_all(q, "a", 5, ask=10)
    assert len(got) == 5
    await q.append([ev(f"n{i}") for i in range(5)])
    await asyncio.sleep(0.2)
    puller = q._dests["a"].events
    assert len(puller.buffer) == 0
    assert puller._request is None
    assert mids(await fetch_all(q, "a", 5)) == [f"n{i}" for i in range(5)]


async def test_close_gives_back_what_was_read_ahead_at_once(make) -> None:
    q = await make(ack_wait=30.0)
    await q.append([ev(f"m{i}") for i in range(30)])
    got = await fetch_all(q, "a", 10)
    await q.settle("a", [g.seq for g in got])
    assert await _buffered(q, "a", 20) == 20
    await q.close()
    # Long before ack_wait: the read-ahead was given back (-NAK), not left to time out.
    started = time.monotonic()
    q2 = await make(ack_wait=30.0)
    again = await fetch_all(q2, "a", 20)
    assert time.monotonic() - started < 10
    assert sorted(mids(again)) == sorted(f"m{i}" for i in range(10, 30))


async def test_a_crashed_instance_events_come_to_another_after_ack_wait(make) -> None:
    crashed = await make(ack_wait=1.0)
    survivor = await make(ack_wait=1.0)
    await crashed.append([ev(f"m{i}") for i in range(6)])
    got = await fetch_all(crashed, "a", 6)
    await crashed.settle("a", [got[0].seq, got[3].seq])
    # A crash: the connection goes away without giving anything back.
    await crashed._nc.close()
    again = await fetch_all(survivor, "a", 4)
    assert sorted(mids(again)) == ["m1", "m2", "m4", "m5"]


async def test_held_messages_are_kept_alive_past_ack_wait(make) -> None:
    one = await make(ack_wait=1.0)
    two = await make(ack_wait=1.0)
    await one.append([ev("m0")])
    (got,) = await fetch_all(one, "a", 1)
    await asyncio.sleep(2.5)  # two ack waits: +WPI from ``one`` keeps the server waiting
    assert await two.fetch("a", 10, time.time()) == []
    await one.settle("a", [got.seq])
    assert (await two.stats("a")).pending == 0


async def test_retry_and_dead_records_survive_restart(make) -> None:
    q = await make()
    await q.append([ev("m0"), ev("m1")])
    got = await fetch_all(q, "a", 2)
    now = time.time()
    await q.settle(
        "a",
        [],
        [Retry(got[0].seq, got[0].event, now + 1, 1, now, "http_503", "user-1")],
        [DeadLetter(got[1].seq, got[1].event, "invalid email", 1, 400, '{"error":"x"}')],
    )
    await q.close()
    q = await make()
    assert await q.held_keys("a") == {"user-1": 1}
    due = await fetch_all(q, "a", 1)
    assert [(g.event, g.attempts, g.seq) for g in due] == [(ev("m0"), 1, got[0].seq)]
    (dead,) = await q.dlq_list("a")
    assert (dead.event, dead.reason, dead.status, dead.body, dead.attempts) == (
        ev("m1"),
        "invalid email",
        400,
        '{"error":"x"}',
        1,
    )


async def test_settling_a_retry_updates_or_removes_its_record(make) -> None:
    q = await make()
    await q.append([ev("m0"), ev("m1"), ev("m2")])
    got = await fetch_all(q, "a", 3)
    now = time.time()
    await q.settle("a", [], [Retry(g.seq, g.event, now, 1, now, "t", f"u{g.seq}") for g in got])
    assert (await q.stats("a")).retrying == 3
    r = await fetch_all(q, "a", 3)
    assert [g.attempts for g in r] == [1, 1, 1]
    await q.settle(
        "a",
        [r[1].seq],
        [Retry(r[0].seq, r[0].event, now, 2, now, "t2", None)],
        [DeadLetter(r[2].seq, r[2].event, "gave up", 2)],
    )
    stats = await q.stats("a")
    assert (stats.pending, stats.retrying, stats.dead) == (0, 1, 1)
    assert await q.held_keys("a") == {}
    (again,) = await fetch_all(q, "a", 1)
    assert (again.event, again.attempts) == (ev("m0"), 2)
    (dead,) = await q.dlq_list()
    assert (dead.destination, dead.attempts, dead.status, dead.body) == ("a", 2, None, None)


async def test_a_repeated_settle_does_not_duplicate_records(make) -> None:
    q = await make()
    await q.append([ev("m0")])
    (got,) = await fetch_all(q, "a", 1)
    now = time.time()
    retry = Retry(got.seq, got.event, now + 60, 1, now, "x", "k")
    held = q._dests["a"].inflight[got.seq]
    await q.settle("a", [], [retry])
    # As if the first settle had published its record and lost the acknowledgement.
    q._dests["a"].inflight[got.seq] = held
    await q.settle("a", [], [retry])
    assert (await q.stats("a")).retrying == 1


async def test_held_keys_counts_retries_by_key(make) -> None:
    q = await make()
    await q.append([ev(f"m{i}") for i in range(4)])
    got = await fetch_all(q, "a", 4)
    keys = ["u1", "u1", "ü/ser.2 *>", None]
    now = time.time()
    await q.settle(
        "a",
        [],
        [Retry(g.seq, g.event, now + 9, 1, now, "x", k) for g, k in zip(got, keys, strict=True)],
    )
    assert await q.held_keys("a") == {"u1": 2, "ü/ser.2 *>": 1}


async def test_new_destination_starts_at_the_end(make) -> None:
    q = await make(("a",))
    await q.append([ev("m0"), ev("m1")])
    await q.close()
    q2 = await make(("a", "b.x_y"))
    assert (await q2.stats("b.x_y")).pending == 0
    assert await q2.fetch("b.x_y", 10, time.time()) == []
    assert mids(await fetch_all(q2, "a", 2)) == ["m0", "m1"]
    await q2.append([ev("m2")])
    assert mids(await fetch_all(q2, "b.x_y", 1)) == ["m2"]
    with pytest.raises(QueueError, match="not registered"):
        await q2.fetch("c", 10, time.time())


async def test_stats_count_pending_retrying_dead(make) -> None:
    q = await make()
    assert await q.stats("a") == QueueStats(0, 0, 0, None)
    await q.append([ev("m0"), ev("m1"), ev("m2"), ev("m3")])
    got = await fetch_all(q, "a", 4)
    now = time.time()
    await q.settle("a", [got[2].seq], [], [DeadLetter(got[3].seq, got[3].event, "bad", 1)])
    stats = await q.stats("a")
    assert (stats.pending, stats.retrying, stats.dead) == (2, 0, 1)
    await q.settle("a", [], [Retry(got[0].seq, got[0].event, now + 99, 1, now, "x")])
    stats = await q.stats("a")
    assert (stats.pending, stats.retrying) == (1, 1)
    await q.settle("a", [got[1].seq])
    stats = await q.stats("a")
    assert (stats.pending, stats.retrying, stats.dead) == (0, 1, 1)
    assert stats.oldest_at == pytest.approx(got[0].enqueued_at, abs=1)
    assert await q.stats("never-registered") == QueueStats(0, 0, 0, None)


async def dead_letters(q: NatsQueue, dest: str, ids: list[str]) -> None:
    await q.append([ev(m) for m in ids])
    got = await fetch_all(q, dest, len(ids))
    await q.settle(
        dest, [], [], [DeadLetter(g.seq, g.event, f"bad {dest}", 3, 422, "no") for g in got]
    )


async def test_dlq_list_replay_purge(make) -> None:
    q = await make(("a", "b"))
    await dead_letters(q, "a", ["a0", "a1", "a2"])
    got_b = await fetch_all(q, "b", 3)
    await q.settle("b", [g.seq for g in got_b])
    await dead_letters(q, "b", ["b0"])
    await q.settle("a", [g.seq for g in await fetch_all(q, "a", 1)])

    entries = await q.dlq_list()
    assert [(e.destination, e.event["messageId"]) for e in entries] == [
        ("a", "a0"),
        ("a", "a1"),
        ("a", "a2"),
        ("b", "b0"),
    ]
    assert (entries[0].reason, entries[0].status, entries[0].body) == ("bad a", 422, "no")
    assert entries[0].failed_at == pytest.approx(time.time(), abs=30)
    assert mids_of(await q.dlq_list("a", limit=2, offset=1)) == ["a1", "a2"]

    assert await q.dlq_replay("a", [entries[1].id]) == 1
    (replayed,) = await fetch_all(q, "a", 1)
    assert (replayed.event, replayed.attempts, replayed.first_attempt_at) == (ev("a1"), 0, None)
    await q.settle("a", [replayed.seq])
    assert (await q.stats("a")).retrying == 0

    assert await q.dlq_purge("a") == 2
    assert await q.dlq_replay(None, None) == 1  # only b0 left
    assert mids(await fetch_all(q, "b", 1)) == ["b0"]
    assert await q.dlq_list() == []
    assert await q.dlq_purge() == 0


def mids_of(entries: list[Any]) -> list[str]:
    return [e.event["messageId"] for e in entries]


async def test_dlq_from_a_second_instance_while_the_first_runs(make) -> None:
    daemon = await make(("a",))
    await dead_letters(daemon, "a", ["m0", "m1", "m2"])
    cli = await make(())
    entries = await cli.dlq_list("a")
    assert mids_of(entries) == ["m0", "m1", "m2"]
    assert await cli.dlq_replay("a", [entries[0].id, entries[2].id]) == 2
    assert await cli.dlq_purge(ids=[entries[1].id]) == 1
    assert (await cli.stats("a")).retrying == 2
    got = await fetch_all(daemon, "a", 2)
    assert [(g.event["messageId"], g.attempts) for g in got] == [("m0", 0), ("m2", 0)]
    await daemon.settle("a", [g.seq for g in got])
    stats = await daemon.stats("a")
    assert (stats.pending, stats.retrying, stats.dead) == (0, 0, 0)


async def test_wait_wakes_on_append_and_times_out_otherwise(make) -> None:
    q = await make(("a", "b"))
    other = await make(())
    await q.wait("a", 0.05)  # nothing new: returns after the timeout
    waiter = asyncio.create_task(q.wait("b", 60))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await other.append([ev("m0")])  # another instance's append wakes it too
    await asyncio.wait_for(waiter, 10)
    await asyncio.wait_for(q.wait("b", 60), 10)  # buffered: returns at once
    assert mids(await q.fetch("b", 10, time.time())) == ["m0"]


async def test_closed_queue_refuses_work(make) -> None:
    q = await make()
    pending = [asyncio.create_task(q.append([ev(f"m{i}")])) for i in range(20)]
    await asyncio.sleep(0)
    await q.close()
    assert all(t.done() and t.result().stored == 1 for t in pending)  # close finished them
    with pytest.raises(QueueError, match="not open"):
        await q.append([ev("late")])
    with pytest.raises(QueueError):
        await q.ping()
    await q.close()


async def test_unreachable_server_is_a_queue_error_without_credentials() -> None:
    from crossdock.testing.daemon import free_port

    url = f"nats://alice:s3cret-pw@127.0.0.1:{free_port()}"
    q = NatsQueue(url, connect_timeout=0.5)
    with pytest.raises(QueueError) as info:
        await q.open(["a"])
    assert "cannot connect" in str(info.value)
    assert "s3cret" not in str(info.value)
    assert "s3cret" not in str(q.info())
    await q.close()


async def test_existing_stream_with_other_storage_is_refused(make, stream: str) -> None:
    await make(storage="file")
    with pytest.raises(QueueError, match=f"stream '{stream}' exists with storage file"):
        await make(storage="memory")


async def test_changed_ack_wait_and_window_update_the_existing_consumers(make, stream) -> None:
    await make(ack_wait=5.0)
    q = await make(ack_wait=7.0, dedupe_window=3600.0)
    info = await q._jsm.consumer_info(stream, "a")
    assert info.config.ack_wait == 7.0
    assert (await q._jsm.stream_info(stream)).config.duplicate_window == 3600.0


def test_names_are_safe_subject_tokens() -> None:
    for name in ("a", "b.c", "x_y", "a_.b__c.", "_d"):
        token = encode_token(name)
        assert "." not in token
        assert decode_token(token) == name
    assert len({encode_token(n) for n in ("a.b", "a_b", "a_db", "a__b")}) == 4
    for key in ("u1", "ü/ser.2 *>", "a" * 300, None):
        token = encode_key(key)
        assert not set(token) & set(". *>")
        assert decode_key(token) == key
    assert redact_url("nats://u:p@h:4222,tls://tok@h2") == "nats://h:4222,tls://h2"


def test_reply_subjects_of_both_forms_give_sequence_and_time() -> None:
    from crossdock.queue.nats import _ack_facts

    assert _ack_facts("$JS.ACK.s.c.1.42.7.1700000000500000000.3") == (42, 1700000000.5)
    v2 = "$JS.ACK.dom.hash.s.c.2.42.7.1700000000500000000.3.tok"
    assert _ack_facts(v2) == (42, 1700000000.5)
    # Whole milliseconds: a request's events, stored within one, share one latency observation.
    assert _ack_facts("$JS.ACK.s.c.1.43.8.1700000000500999999.2") == (43, 1700000000.5)
    assert _ack_facts("$JS.ACK.s.c.1.44.9.1700000000501000000.1") == (44, 1700000000.501)


def test_config_nats_keys_and_precise_errors() -> None:
    registry = load_registry()
    config = parse_config(
        '[queue]\nbackend = "nats"\nurl = "nats://a:4222,nats://b:4222"\nstream = "cd"\n'
        'replicas = 3\nstorage = "memory"\nack_wait = "1m"\nmax_ack_pending = 500\n',
        registry,
    )
    q = make_queue(config.queue)
    assert isinstance(q, NatsQueue)
    assert (q.stream, q.replicas, q.storage, q.ack_wait, q.max_ack_pending) == (
        "cd",
        3,
        "memory",
        60.0,
        500,
    )
    with pytest.raises(ConfigError) as info:
        parse_config('[queue]\nbackend = "nats"\nstorage = "disk"\n', registry)
    assert info.value.problems == ["queue.storage: must be one of file, memory"]
    with pytest.raises(ConfigError) as info:
        parse_config('[queue]\nbackend = "nats"\nmax_ack_pending = 0\n', registry)
    assert info.value.problems == ["queue.max_ack_pending: must be a positive number"]
    with pytest.raises(ConfigError) as info:
        parse_config(
            '[queue]\nbackend = "nats"\nurl = "http://x"\nstream = "a.b"\nreplicas = 7\n'
            'path = "q.db"\nack_wait = "0s"\n',
            registry,
        )
    assert sorted(info.value.problems) == [
        "queue.ack_wait: must be at least 1s",
        'queue.path: not used by backend = "nats"',
        "queue.replicas: must be between 1 and 5 (3 for a JetStream cluster)",
        "queue.stream: 1 to 32 letters, digits, '_' or '-' (no dots)",
        "queue.url: must be nats://host:port (or tls://, ws://, wss://), several separated"
        " by commas",
    ]
    with pytest.raises(ConfigError) as info:
        parse_config('[queue]\nurl = "nats://x:4222"\n', registry)
    assert info.value.problems == ['queue.url: not used by backend = "sqlite"']


async def test_append_fails_when_the_stream_is_gone(make, stream: str) -> None:
    q = await make()
    await q._jsm.delete_stream(stream)
    with pytest.raises(QueueError, match="no JetStream stream answers"):
        await q.append([ev("m0"), ev("m1")])
    with pytest.raises(QueueError):
        await q.ping()


async def test_survives_a_server_restart(tmp_path, stream: str) -> None:
    from crossdock.queue.nats_server import NatsServer

    if nats_unavailable() or os.environ.get("CROSSDOCK_TEST_NATS_URL"):
        pytest.skip("needs a nats-server of its own to restart")
    server = NatsServer(str(tmp_path / "store")).start()
    try:
        q = NatsQueue(server.url, stream=stream, retry_poll=0.0, publish_timeout=1.0)
        await q.open(["a"])
        assert (await q.append([ev("m0")])).stored == 1
        server.stop()
        server = NatsServer(str(tmp_path / "store"), port=server.port).start()
        # Appends fail while the client reconnects, then work again; nothing stored is lost.
        stored = None
        deadline = time.monotonic() + 20
        while stored is None and time.monotonic() < deadline:
            with contextlib.suppress(QueueError):
                stored = await q.append([ev("m1")])
            await asyncio.sleep(0.1)
        assert stored is not None
        assert mids(await fetch_all(q, "a", 2)) == ["m0", "m1"]
        await q.ping()
        await q.close()
    finally:
        server.stop()


async def test_replicas_the_server_cannot_give_are_a_precise_error(make, stream: str) -> None:
    if os.environ.get("CROSSDOCK_TEST_NATS_URL"):
        pytest.skip("the external server may be a cluster")
    with pytest.raises(QueueError, match=f"cannot create stream '{stream}' \\(replicas 3"):
        await make(replicas=3)
