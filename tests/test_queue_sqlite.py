"""The SQLite queue backend, on real files: durability, group commit, dedupe, positions, DLQ."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from crossdock.errors import QueueError
from crossdock.queue import DeadLetter, Retry
from crossdock.queue.sqlite import SqliteQueue

NOW = 1_700_000_000.0


class Clock:
    """A settable clock for enqueue times and the dedupe window."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ev(mid: str, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Clicked", "messageId": mid, "properties": extra}


def rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "queue.db"


@pytest.fixture
async def make(db: Path, clock: Clock) -> AsyncIterator[Callable[..., Any]]:
    opened: list[SqliteQueue] = []

    async def factory(destinations: tuple[str, ...] = ("a",), **kwargs: Any) -> SqliteQueue:
        kwargs.setdefault("clock", clock)
        q = SqliteQueue(db, **kwargs)
        await q.open(destinations)
        opened.append(q)
        return q

    yield factory
    for q in opened:
        await q.close()


async def test_append_fetch_settle_round_trip(make, db: Path) -> None:
    q = await make()
    result = await q.append([ev("m1", n=1), ev("m2", n=2.5, s="é\u2028")])
    assert (result.stored, result.duplicates) == (2, 0)
    got = await q.fetch("a", 10, NOW)
    assert [g.event for g in got] == [ev("m1", n=1), ev("m2", n=2.5, s="é\u2028")]
    assert [g.attempts for g in got] == [0, 0]
    assert all(g.enqueued_at == NOW for g in got)
    assert got[0].seq < got[1].seq
    stats = await q.stats("a")
    assert (stats.pending, stats.retrying, stats.dead, stats.oldest_at) == (2, 0, 0, NOW)
    await q.settle("a", [g.seq for g in got])
    stats = await q.stats("a")
    assert (stats.pending, stats.oldest_at) == (0, None)
    assert await q.fetch("a", 10, NOW) == []
    assert rows(db, "PRAGMA journal_mode") == [("wal",)]
    assert q.info() == {"backend": "sqlite", "path": str(db)}
    await q.ping()


async def test_concurrent_appends_share_commits(make) -> None:
    q = await make()
    results = await asyncio.gather(*(q.append([ev(f"m{i}")]) for i in range(200)))
    assert all(r.stored == 1 for r in results)
    assert q.appends == 200
    assert 1 <= q.commits < 200
    got = await q.fetch("a", 500, NOW)
    assert sorted(g.event["messageId"] for g in got) == sorted(f"m{i}" for i in range(200))


async def test_failed_group_commit_fails_every_request_and_stores_nothing(make, db: Path) -> None:
    q = await make()
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TRIGGER poison BEFORE INSERT ON dedupe WHEN NEW.message_id = 'poison'"
        " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
    )
    conn.commit()
    conn.close()
    commits = q.commits
    outcomes = await asyncio.gather(
        q.append([ev("good-1"), ev("good-2")]),
        q.append([ev("poison")]),
        q.append([ev("good-3")]),
        return_exceptions=True,
    )
    assert all(isinstance(o, QueueError) for o in outcomes), outcomes
    assert "injected failure" in str(outcomes[0])
    assert q.commits == commits
    assert rows(db, "SELECT count(*) FROM events") == [(0,)]
    assert rows(db, "SELECT count(*) FROM dedupe") == [(0,)]
    # The queue keeps working, and the good ids were not remembered as seen.
    assert (await q.append([ev("good-1")])).stored == 1
    assert [g.event["messageId"] for g in await q.fetch("a", 10, NOW)] == ["good-1"]


async def test_unserializable_event_fails_only_its_own_append(make) -> None:
    q = await make()
    with pytest.raises(QueueError, match="JSON"):
        await q.append([ev("m1", bad={1, 2})])
    assert (await q.append([ev("m2")])).stored == 1


async def test_dedupe_within_a_batch_a_group_and_across_calls(make) -> None:
    q = await make()
    first = await q.append([ev("m1"), ev("m2"), ev("m1", other=True)])
    assert (first.stored, first.duplicates) == (2, 1)
    second = await q.append([ev("m2"), ev("m3")])
    assert (second.stored, second.duplicates) == (1, 1)
    group = await asyncio.gather(q.append([ev("x")]), q.append([ev("x")]), q.append([ev("x")]))
    assert sorted((r.stored, r.duplicates) for r in group) == [(0, 1), (0, 1), (1, 0)]
    got = await q.fetch("a", 10, NOW)
    assert [g.event for g in got] == [ev("m1"), ev("m2"), ev("m3"), ev("x")]


async def test_dedupe_window_expires(make, clock: Clock, db: Path) -> None:
    q = await make(dedupe_window=100.0)
    assert (await q.append([ev("m1"), ev("old")])).stored == 2
    clock.now += 99
    assert (await q.append([ev("m1")])).duplicates == 1
    clock.now += 2  # m1 and old were first seen 101 s ago
    assert (await q.append([ev("m1")])).stored == 1
    # The append after the window also pruned the expired row of "old".
    assert rows(db, "SELECT message_id FROM dedupe") == [("m1",)]
    assert (await q.append([ev("m1")])).duplicates == 1


async def test_dedupe_table_is_capped_oldest_first(make, db: Path) -> None:
    q = await make(dedupe_max=10)
    for i in range(25):
        await q.append([ev(f"m{i}")])
    assert rows(db, "SELECT count(*) FROM dedupe") == [(10,)]
    assert (await q.append([ev("m24")])).duplicates == 1  # recent: still known
    assert (await q.append([ev("m0")])).stored == 1  # pruned: stored again


async def test_retries_come_first_oldest_first_then_new_events(make, clock: Clock) -> None:
    q = await make(("a",))
    await q.append([ev(f"m{i}") for i in range(4)])
    got = await q.fetch("a", 4, NOW)
    s = [g.seq for g in got]
    retries = [
        Retry(s[2], got[2].event, NOW + 20, 1, NOW, "timeout", None),
        Retry(s[0], got[0].event, NOW + 10, 2, NOW - 5, "http_503", None),
        Retry(s[1], got[1].event, NOW + 500, 1, NOW, "http_503", None),
    ]
    await q.settle("a", [s[3]], retries)
    await q.append([ev("m4"), ev("m5")])
    got2 = await q.fetch("a", 10, NOW + 30)
    assert [g.event["messageId"] for g in got2] == ["m0", "m2", "m4", "m5"]
    assert [(g.attempts, g.first_attempt_at) for g in got2[:2]] == [(2, NOW - 5), (1, NOW)]
    assert got2[0].enqueued_at == NOW
    assert [(g.attempts, g.first_attempt_at) for g in got2[2:]] == [(0, None), (0, None)]
    stats = await q.stats("a")
    assert (stats.pending, stats.retrying) == (2, 3)


async def test_limit_applies_to_retries_and_new_together(make) -> None:
    q = await make()
    await q.append([ev(f"m{i}") for i in range(5)])
    got = await q.fetch("a", 2, NOW)
    await q.settle("a", [], [Retry(g.seq, g.event, NOW, 1, NOW, "x") for g in got])
    got = await q.fetch("a", 3, NOW)
    assert [g.event["messageId"] for g in got] == ["m0", "m1", "m2"]
    assert [g.attempts for g in got] == [1, 1, 0]


async def test_in_flight_events_are_not_handed_out_twice(make) -> None:
    q = await make()
    await q.append([ev(f"m{i}") for i in range(5)])
    first = await q.fetch("a", 2, NOW)
    second = await q.fetch("a", 10, NOW)
    assert [g.event["messageId"] for g in first + second] == [f"m{i}" for i in range(5)]
    assert await q.fetch("a", 10, NOW) == []
    # A retry in flight is not handed out again either.
    await q.settle("a", [], [Retry(first[0].seq, first[0].event, NOW, 1, NOW, "x")])
    assert [g.seq for g in await q.fetch("a", 10, NOW)] == [first[0].seq]
    assert await q.fetch("a", 10, NOW) == []


async def test_concurrent_fetches_split_the_work(make) -> None:
    q = await make()
    await q.append([ev(f"m{i}") for i in range(100)])
    batches = await asyncio.gather(*(q.fetch("a", 10, NOW) for _ in range(12)))
    seqs = [g.seq for b in batches for g in b]
    assert len(seqs) == len(set(seqs)) == 100


async def test_restart_redelivers_unsettled_but_not_settled(db: Path, clock: Clock) -> None:
    q = SqliteQueue(db, clock=clock)
    await q.open(["a"])
    await q.append([ev(f"m{i}") for i in range(6)])
    got = await q.fetch("a", 6, NOW)
    s = [g.seq for g in got]
    # Out of order: m0, m1, m3 and m5 done; m2 and m4 still in flight at "crash".
    await q.settle("a", [s[3], s[0]])
    await q.settle("a", [s[5], s[1]])
    assert (await q.stats("a")).pending == 2
    await q.close()

    q = SqliteQueue(db, clock=clock)
    await q.open(["a"])
    again = await q.fetch("a", 10, NOW)
    assert [g.event["messageId"] for g in again] == ["m2", "m4"]
    assert (await q.stats("a")).pending == 2
    await q.settle("a", [g.seq for g in again])
    assert (await q.stats("a")).pending == 0
    assert rows(db, "SELECT count(*) FROM settled") == [(0,)]
    await q.close()

    q = SqliteQueue(db, clock=clock)
    await q.open(["a"])
    assert await q.fetch("a", 10, NOW) == []
    await q.close()


async def test_retry_and_dead_rows_survive_restart(db: Path, clock: Clock) -> None:
    q = SqliteQueue(db, clock=clock)
    await q.open(["a"])
    await q.append([ev("m0"), ev("m1")])
    got = await q.fetch("a", 2, NOW)
    await q.settle(
        "a",
        [],
        [Retry(got[0].seq, got[0].event, NOW + 60, 1, NOW, "http_503", "user-1")],
        [DeadLetter(got[1].seq, got[1].event, "invalid email", 1, 400, '{"error":"x"}')],
    )
    await q.close()
    q = SqliteQueue(db, clock=clock)
    await q.open(["a"])
    assert await q.fetch("a", 10, NOW) == []
    assert await q.held_keys("a") == {"user-1": 1}
    due = await q.fetch("a", 10, NOW + 60)
    assert [(g.event, g.attempts) for g in due] == [(ev("m0"), 1)]
    (dead,) = await q.dlq_list("a")
    assert (dead.event, dead.reason, dead.status, dead.body) == (
        ev("m1"),
        "invalid email",
        400,
        '{"error":"x"}',
    )
    await q.close()


async def test_settling_a_retry_updates_or_removes_its_row(make) -> None:
    q = await make()
    await q.append([ev("m0"), ev("m1"), ev("m2")])
    got = await q.fetch("a", 3, NOW)
    await q.settle("a", [], [Retry(g.seq, g.event, NOW, 1, NOW, "t", f"u{g.seq}") for g in got])
    assert (await q.stats("a")).retrying == 3
    r = await q.fetch("a", 3, NOW)
    assert [g.attempts for g in r] == [1, 1, 1]
    # m0 retried again, m1 delivered, m2 dead.
    await q.settle(
        "a",
        [r[1].seq],
        [Retry(r[0].seq, r[0].event, NOW + 5, 2, NOW, "t2", None)],
        [DeadLetter(r[2].seq, r[2].event, "gave up", 2)],
    )
    stats = await q.stats("a")
    assert (stats.pending, stats.retrying, stats.dead) == (0, 1, 1)
    assert await q.held_keys("a") == {}
    (again,) = await q.fetch("a", 3, NOW + 5)
    assert (again.event, again.attempts) == (ev("m0"), 2)
    (dead,) = await q.dlq_list()
    assert (dead.destination, dead.attempts, dead.status, dead.body) == ("a", 2, None, None)


async def test_held_keys_counts_retries_by_key(make) -> None:
    q = await make()
    await q.append([ev(f"m{i}") for i in range(4)])
    got = await q.fetch("a", 4, NOW)
    keys = ["u1", "u1", "u2", None]
    await q.settle(
        "a",
        [],
        [Retry(g.seq, g.event, NOW + 9, 1, NOW, "x", k) for g, k in zip(got, keys, strict=True)],
    )
    assert await q.held_keys("a") == {"u1": 2, "u2": 1}


async def test_new_destination_starts_at_the_end(make, db: Path, clock: Clock) -> None:
    q = await make(("a",))
    await q.append([ev("m0"), ev("m1")])
    await q.close()
    q2 = await make(("a", "b"))
    assert (await q2.stats("b")).pending == 0
    assert await q2.fetch("b", 10, NOW) == []
    assert [g.event["messageId"] for g in await q2.fetch("a", 10, NOW)] == ["m0", "m1"]
    await q2.append([ev("m2")])
    assert [g.event["messageId"] for g in await q2.fetch("b", 10, NOW)] == ["m2"]
    with pytest.raises(QueueError, match="not registered"):
        await q2.fetch("c", 10, NOW)


async def test_collect_deletes_what_every_destination_passed(make, db: Path) -> None:
    q = await make(("a", "b"))
    await q.append([ev(f"m{i}") for i in range(10)])
    a = await q.fetch("a", 10, NOW)
    await q.settle("a", [g.seq for g in a[:9]], [Retry(a[9].seq, a[9].event, NOW, 1, NOW, "x")])
    # Settles collect by themselves now and then; collect() forces it (the count returned is
    # what this call deleted, so the tests look at the table instead).
    await q.collect()
    assert rows(db, "SELECT count(*) FROM events") == [(10,)]  # b has not read anything
    b = await q.fetch("b", 10, NOW)
    await q.settle("b", [g.seq for g in b[:5]])
    await q.collect()
    assert rows(db, "SELECT min(seq), count(*) FROM events") == [(b[5].seq, 5)]
    # b still gets the rest, and a's retry kept its own copy.
    await q.settle("b", [g.seq for g in b[5:]])
    await q.collect()
    assert rows(db, "SELECT count(*) FROM events") == [(0,)]
    (retry,) = await q.fetch("a", 10, NOW)
    assert retry.event == ev("m9")
    # Sequence numbers are never reused after the table emptied.
    await q.append([ev("m10")])
    (new,) = await q.fetch("b", 10, NOW)
    assert new.seq == b[-1].seq + 1


async def test_removed_destination_does_not_hold_events_back(make, db: Path) -> None:
    q = await make(("a", "gone"))
    await q.close()
    q = await make(("a",))
    await q.append([ev("m0"), ev("m1")])
    got = await q.fetch("a", 10, NOW)
    await q.settle("a", [g.seq for g in got])
    await q.collect()
    assert rows(db, "SELECT count(*) FROM events") == [(0,)]
    assert rows(db, "SELECT id FROM destinations ORDER BY id") == [("a",), ("gone",)]


async def test_stats_count_pending_retrying_dead_and_oldest(make, clock: Clock) -> None:
    q = await make()
    assert await q.stats("a") == type(await q.stats("a"))(0, 0, 0, None)
    await q.append([ev("m0"), ev("m1")])
    clock.now += 10
    await q.append([ev("m2"), ev("m3")])
    got = await q.fetch("a", 4, NOW + 10)
    await q.settle("a", [got[2].seq], [], [DeadLetter(got[3].seq, got[3].event, "bad", 1)])
    stats = await q.stats("a")
    assert (stats.pending, stats.retrying, stats.dead, stats.oldest_at) == (2, 0, 1, NOW)
    await q.settle("a", [], [Retry(got[0].seq, got[0].event, NOW + 99, 1, NOW, "x")])
    stats = await q.stats("a")
    assert (stats.pending, stats.retrying, stats.oldest_at) == (1, 1, NOW)
    await q.settle("a", [got[1].seq])
    stats = await q.stats("a")
    assert (stats.pending, stats.retrying, stats.dead, stats.oldest_at) == (0, 1, 1, NOW)


async def dead_letters(q: SqliteQueue, dest: str, mids: list[str]) -> None:
    await q.append([ev(m) for m in mids])
    got = await q.fetch(dest, len(mids), NOW)
    await q.settle(
        dest, [], [], [DeadLetter(g.seq, g.event, f"bad {dest}", 3, 422, "no") for g in got]
    )


async def test_dlq_list_replay_purge(make) -> None:
    q = await make(("a", "b"))
    await dead_letters(q, "a", ["a0", "a1", "a2"])
    got_b = await q.fetch("b", 10, NOW)  # b sees a0..a2 too; settle them done
    await q.settle("b", [g.seq for g in got_b])
    await dead_letters(q, "b", ["b0"])
    await q.settle("a", [g.seq for g in await q.fetch("a", 10, NOW)])

    entries = await q.dlq_list()
    assert [(e.destination, e.event["messageId"]) for e in entries] == [
        ("a", "a0"),
        ("a", "a1"),
        ("a", "a2"),
        ("b", "b0"),
    ]
    assert entries[0].failed_at == NOW
    assert [e.event["messageId"] for e in await q.dlq_list("a", limit=2, offset=1)] == ["a1", "a2"]

    assert await q.dlq_replay("a", [entries[1].id]) == 1
    (replayed,) = await q.fetch("a", 10, NOW)
    assert (replayed.event, replayed.attempts, replayed.first_attempt_at) == (ev("a1"), 0, None)
    await q.settle("a", [replayed.seq])
    assert (await q.stats("a")).retrying == 0

    assert await q.dlq_purge("a") == 2
    assert await q.dlq_replay(None, None) == 1  # only b0 left
    assert [g.event["messageId"] for g in await q.fetch("b", 10, NOW)] == ["b0"]
    assert await q.dlq_list() == []
    assert await q.dlq_purge() == 0


async def test_dlq_from_a_second_instance_while_the_first_runs(make, db: Path) -> None:
    daemon = await make(("a",))
    await dead_letters(daemon, "a", ["m0", "m1", "m2"])
    cli = SqliteQueue(db)
    await cli.open([])
    try:
        entries = await cli.dlq_list("a")
        assert [e.event["messageId"] for e in entries] == ["m0", "m1", "m2"]
        assert await cli.dlq_replay("a", [entries[0].id, entries[2].id]) == 2
        assert await cli.dlq_purge(ids=[entries[1].id]) == 1
        assert (await cli.stats("a")).retrying == 2
    finally:
        await cli.close()
    # The daemon's worker picks the replayed events up by polling due retries.
    got = await daemon.fetch("a", 10, 2 * NOW)
    assert [(g.event["messageId"], g.attempts) for g in got] == [("m0", 0), ("m2", 0)]
    await daemon.settle("a", [g.seq for g in got])
    stats = await daemon.stats("a")
    assert (stats.pending, stats.retrying, stats.dead) == (0, 0, 0)


async def test_wait_wakes_on_append_and_times_out_otherwise(make) -> None:
    q = await make(("a", "b"))
    await q.wait("a", 0.01)  # nothing new: returns after the timeout
    waiter = asyncio.create_task(q.wait("b", 60))
    await asyncio.sleep(0)
    assert not waiter.done()
    await q.append([ev("m0")])
    await asyncio.wait_for(waiter, 10)  # woken long before its 60 s
    # Unread events make wait return at once.
    await asyncio.wait_for(q.wait("a", 60), 10)
    await q.fetch("a", 10, NOW)
    await q.wait("a", 0.01)


async def test_schema_version_newer_than_supported_is_refused(make, db: Path) -> None:
    q = await make()
    await q.close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(QueueError, match="schema version 99 is newer"):
        await make()


async def test_not_a_database_is_a_queue_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    q = SqliteQueue(path)
    with pytest.raises(QueueError):
        await q.open(["a"])
    await q.close()


async def test_closed_queue_refuses_work(make) -> None:
    q = await make()
    pending = [asyncio.create_task(q.append([ev(f"m{i}")])) for i in range(20)]
    await asyncio.sleep(0)
    await q.close()
    assert all(t.done() and t.result().stored == 1 for t in pending)  # close finished them
    with pytest.raises(QueueError):
        await q.append([ev("late")])
    with pytest.raises(QueueError):
        await q.ping()
    await q.close()  # idempotent


async def test_bad_settings_are_refused(db: Path) -> None:
    with pytest.raises(QueueError, match="synchronous"):
        SqliteQueue(db, synchronous="sometimes")
    q = SqliteQueue(db, synchronous="normal")
    await q.open(["a"])
    assert (await q.append([ev("m0")])).stored == 1
    await q.close()


_OPEN_AND_APPEND = """
import asyncio, sys
from crossdock.queue.sqlite import SqliteQueue

async def main(path, tag):
    queue = SqliteQueue(path)
    await queue.open(["a", "b"])
    await queue.append([{"type": "track", "event": "E", "userId": "u", "messageId": tag}])
    await queue.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.slow
async def test_processes_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    # crossdock run --workers N: every process opens the same (new) file at the same moment.
    import sys

    for round_ in range(8):
        path = tmp_path / f"q{round_}.db"
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _OPEN_AND_APPEND,
                str(path),
                f"m{round_}-{i}",
                stderr=asyncio.subprocess.PIPE,
            )
            for i in range(4)
        ]
        errors = [(await p.communicate())[1].decode() for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
        async with SqliteQueue(path) as queue:
            await queue.open(["a"])
            # every process registered "a" before its append: none of the four is skipped
            assert len(await queue.fetch("a", 10, 0.0)) == 4
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM events").fetchone() == (4,)


async def test_concurrent_settles_of_a_destination_share_commits(
    make, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = await make()
    await q.append([ev(f"m{i}") for i in range(100)])
    batches = [await q.fetch("a", 10, NOW) for _ in range(10)]
    writes: list[int] = []
    original = q._write_settle

    def counting(*args: Any) -> None:
        writes.append(len(args[3]))  # the done seqs written by this commit
        original(*args)

    monkeypatch.setattr(q, "_write_settle", counting)
    # Retries and dead letters ride along in the same group.
    await asyncio.gather(
        *(q.settle("a", [g.seq for g in batch[:-1]]) for batch in batches[:9]),
        q.settle(
            "a",
            [g.seq for g in batches[9][:-2]],
            retries=[Retry(batches[9][-2].seq, batches[9][-2].event, NOW + 60, 1, NOW, "r")],
            dead=[DeadLetter(batches[9][-1].seq, batches[9][-1].event, "bad", 1, 400, "b")],
        ),
    )
    assert sum(writes) == 9 * 9 + 8
    assert len(writes) <= 2  # the first settle's commit, then everything that queued meanwhile
    stats = await q.stats("a")
    assert (stats.retrying, stats.dead) == (1, 1)
    # The last event of each of the first nine batches is still in flight: position stays.
    await q.settle("a", [batch[-1].seq for batch in batches[:9]])
    assert rows(db, "SELECT position FROM destinations WHERE id = 'a'") == [(batches[9][-1].seq,)]
    assert rows(db, "SELECT count(*) FROM settled") == [(0,)]


async def test_a_failed_grouped_settle_fails_each_caller_and_a_retry_succeeds(
    make, db: Path
) -> None:
    q = await make()
    await q.append([ev(f"m{i}") for i in range(20)])
    first, second = await q.fetch("a", 10, NOW), await q.fetch("a", 10, NOW)
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TRIGGER poison BEFORE UPDATE ON destinations"
        " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
    )
    conn.commit()
    outcomes = await asyncio.gather(
        q.settle("a", [g.seq for g in first]),
        q.settle("a", [g.seq for g in second]),
        return_exceptions=True,
    )
    assert all(isinstance(o, QueueError) for o in outcomes), outcomes
    assert (await q.stats("a")).pending == 20
    conn.execute("DROP TRIGGER poison")
    conn.commit()
    conn.close()
    await asyncio.gather(
        q.settle("a", [g.seq for g in first]), q.settle("a", [g.seq for g in second])
    )
    assert (await q.stats("a")).pending == 0
    assert rows(db, "SELECT position FROM destinations WHERE id = 'a'") == [(second[-1].seq,)]


async def test_a_fetch_does_not_wait_for_a_settle_being_written(
    make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A settle's commit may queue behind ingest's group commits; the next fetch of the same
    destination goes ahead meanwhile (it used to wait on the cursor's one lock)."""
    import threading

    q = await make()
    await q.append([ev(f"m{i}") for i in range(20)])
    first = await q.fetch("a", 10, NOW)
    writing, release = threading.Event(), threading.Event()
    original = q._write_settle

    def slow(*args: Any) -> None:
        writing.set()
        assert release.wait(30)
        original(*args)

    monkeypatch.setattr(q, "_write_settle", slow)
    settling = asyncio.create_task(q.settle("a", [g.seq for g in first]))
    assert await asyncio.to_thread(writing.wait, 10)
    try:
        second = await asyncio.wait_for(q.fetch("a", 10, NOW), 10)
    finally:
        release.set()
    await settling
    assert [g.event["messageId"] for g in second] == [f"m{i}" for i in range(10, 20)]
    await q.settle("a", [g.seq for g in second])
    assert (await q.stats("a")).pending == 0
