"""The SQLite queue's delivery reads and settle writes take one SQLite step per statement.

CPython's ``sqlite3`` gives the GIL up around every step (each row read, each parameter set
of ``executemany``); beside a busy event loop each step then waited for the GIL again, so a
fetch of 1,000 events took up to 0.6 s (``bench/gil_steps.py``). These tests count the rows
and parameter sets that cross between Python and SQLite, and check that the aggregated reads
give back exactly what was stored: JSON of every shape, exact float times, NULLs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossdock.queue import DeadLetter, Retry
from crossdock.queue._sqlite_steps import floats, json_list, read_columns
from crossdock.queue.sqlite import SqliteQueue

NOW = 1_700_000_000.0


class CountingCursor:
    """A cursor that counts the rows Python takes from it."""

    def __init__(self, cursor: sqlite3.Cursor, counts: dict[str, int]) -> None:
        self._cursor = cursor
        self._counts = counts

    def fetchone(self) -> Any:
        self._counts["rows"] += 1
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        rows = self._cursor.fetchall()
        self._counts["rows"] += len(rows)
        return rows

    def __iter__(self) -> Iterator[Any]:
        for row in self._cursor:
            self._counts["rows"] += 1
            yield row

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class CountingConnection:
    """A connection proxy counting statements, rows read and ``executemany`` parameter sets."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.counts = {"rows": 0, "statements": 0, "parameter_sets": 0}

    def execute(self, sql: str, params: Any = ()) -> CountingCursor:
        self.counts["statements"] += 1
        return CountingCursor(self._conn.execute(sql, params), self.counts)

    def executemany(self, sql: str, seq: Any) -> Any:
        params = list(seq)
        self.counts["statements"] += 1
        self.counts["parameter_sets"] += len(params)
        return self._conn.executemany(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[SqliteQueue]:
    """An open queue at ``tmp_path / "q.db"`` with destination ``a``, closed after the test."""
    opened = SqliteQueue(tmp_path / "q.db", clock=lambda: NOW)
    await opened.open(["a"])
    yield opened
    await opened.close()


def ev(i: int) -> dict[str, Any]:
    return {"type": "track", "event": "Viewed", "messageId": f"m{i}", "properties": {"i": i}}


async def test_fetching_a_large_batch_reads_one_row_per_query(
    queue: SqliteQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    await queue.append([ev(i) for i in range(1000)])
    reader = CountingConnection(queue._conn_r())
    monkeypatch.setattr(queue, "_conn_r", lambda: reader)
    got = await queue.fetch("a", 1000, NOW)
    assert [g.event for g in got] == [ev(i) for i in range(1000)]
    assert all(g.enqueued_at == NOW for g in got)
    # One query for due retries, one per 512 new events; never a row per event.
    assert reader.counts["rows"] == 1 + 2


async def test_out_of_order_settles_write_their_keys_in_one_step(
    queue: SqliteQueue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await queue.append([ev(i) for i in range(1500)])
    first = await queue.fetch("a", 500, NOW)
    later = await queue.fetch("a", 1000, NOW)
    writer = CountingConnection(queue._conn_w())
    monkeypatch.setattr(queue, "_conn_w", lambda: writer)
    # The later batch settles first: its 1,000 seqs lie beyond the durable position.
    await queue.settle("a", [g.seq for g in later])
    assert writer.counts["parameter_sets"] == 0
    # A handful of statements (the settle, and maybe a collection), not one per event.
    assert writer.counts["statements"] <= 15
    (beyond,) = sqlite3.connect(tmp_path / "q.db").execute("SELECT count(*) FROM settled")
    assert beyond == (1000,)
    await queue.settle("a", [g.seq for g in first])
    assert await queue.fetch("a", 10, NOW) == []
    assert (await queue.stats("a")).pending == 0


async def test_a_delivered_batch_settles_in_one_statement(
    queue: SqliteQueue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue._last_gc = float("inf")  # no collection: it writes statements of its own
    await queue.append([ev(i) for i in range(30)])
    got = await queue.fetch("a", 10, NOW)
    await queue.settle("a", [], [Retry(g.seq, g.event, NOW, 1, NOW, "http_503") for g in got])
    retried = await queue.fetch("a", 10, NOW)
    first, second = await queue.fetch("a", 10, NOW), await queue.fetch("a", 10, NOW)
    writer = CountingConnection(queue._conn_w())
    monkeypatch.setattr(queue, "_conn_w", lambda: writer)
    file = sqlite3.connect(tmp_path / "q.db")

    def state() -> tuple[Any, ...]:
        return (
            file.execute("SELECT position FROM destinations WHERE id = 'a'").fetchone()[0],
            file.execute("SELECT count(*) FROM settled").fetchone()[0],
            file.execute("SELECT count(*) FROM retries").fetchone()[0],
        )

    durable = state()[0]
    await queue.settle("a", [g.seq for g in second])  # beyond the durable position
    assert writer.counts["statements"] == 1
    assert state() == (durable, 10, 10)
    await queue.settle("a", [g.seq for g in first])  # the position moves past both
    assert state() == (second[-1].seq, 0, 10)
    await queue.settle("a", [g.seq for g in retried])  # retries done: they leave their table
    assert writer.counts["statements"] == 3
    assert state() == (second[-1].seq, 0, 0)
    assert await queue.fetch("a", 10, NOW) == []


async def test_a_failed_batch_writes_its_retries_and_dead_letters_in_chunks(
    queue: SqliteQueue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await queue.append([ev(i) for i in range(700)])
    got = await queue.fetch("a", 300, NOW)
    # 300 retries first: the dead letters of a later settle take their enqueued_at.
    await queue.settle(
        "a",
        [],
        [Retry(g.seq, g.event, NOW + 1, 1, NOW, "http_503", f"k{g.seq % 3}") for g in got[:300]],
    )
    writer = CountingConnection(queue._conn_w())
    monkeypatch.setattr(queue, "_conn_w", lambda: writer)
    again = await queue.fetch("a", 700, NOW + 2)
    assert [g.event for g in again] == [ev(i) for i in range(300)] + [
        ev(i) for i in range(300, 700)
    ]
    retried, fresh = again[:300], again[300:]
    await queue.settle(
        "a",
        [],
        [Retry(g.seq, g.event, NOW + 9, 2, NOW, "http_429") for g in fresh[:333]],
        [DeadLetter(g.seq, g.event, "gave up", 2, 500, "oops") for g in retried]
        + [DeadLetter(g.seq, g.event, "bad", 1, 400, None) for g in fresh[333:]],
    )
    assert writer.counts["parameter_sets"] == 0
    # 333 retries, 367 dead letters: 128-row chunks, not a statement per row.
    assert writer.counts["statements"] <= 25
    assert await queue.held_keys("a") == {}
    dead = await queue.dlq_list("a", limit=1000)
    assert len(dead) == 367
    assert {d.reason for d in dead} == {"gave up", "bad"}
    times = sqlite3.connect(tmp_path / "q.db").execute("SELECT DISTINCT enqueued_at FROM dead")
    assert times.fetchall() == [(NOW,)]
    due = await queue.fetch("a", 1000, NOW + 9)
    assert [(g.event, g.attempts, g.first_attempt_at) for g in due] == [
        (ev(i), 2, NOW) for i in range(300, 633)
    ]


async def test_settled_keys_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    queue = SqliteQueue(path, clock=lambda: NOW)
    await queue.open(["a"])
    await queue.append([ev(i) for i in range(10)])
    got = await queue.fetch("a", 10, NOW)
    await queue.settle("a", [g.seq for g in got[3:]])
    await queue.close()
    queue = SqliteQueue(path, clock=lambda: NOW)
    await queue.open(["a"])
    try:
        again = await queue.fetch("a", 10, NOW)
        assert [g.event for g in again] == [ev(i) for i in range(3)]
    finally:
        await queue.close()


async def test_a_fetch_across_chunks_skips_what_was_settled_before_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "q.db"
    queue = SqliteQueue(path, clock=lambda: NOW)
    await queue.open(["a"])
    await queue.append([ev(i) for i in range(700)])
    got = await queue.fetch("a", 700, NOW)
    # All but every third event (0, 3, 6, ...) settled: the durable position stays at 0.
    await queue.settle("a", [g.seq for i, g in enumerate(got) if i % 3])
    await queue.close()
    queue = SqliteQueue(path, clock=lambda: NOW)
    await queue.open(["a"])
    try:
        again = await queue.fetch("a", 1000, NOW)  # 700 stored: a full chunk and a short one
        assert [g.event for g in again] == [ev(i) for i in range(0, 700, 3)]
        assert await queue.fetch("a", 10, NOW) == []
    finally:
        await queue.close()


async def test_due_retries_come_back_with_exact_times_and_nulls(tmp_path: Path) -> None:
    queue = SqliteQueue(tmp_path / "q.db", clock=lambda: NOW + 0.123456789)
    await queue.open(["a"])
    try:
        await queue.append([ev(0), ev(1)])
        got = await queue.fetch("a", 2, NOW)
        first_attempt = NOW + 1 / 3
        await queue.settle(
            "a",
            [],
            [
                Retry(got[0].seq, got[0].event, NOW + 5, 2, first_attempt, "http_503"),
                Retry(got[1].seq, got[1].event, NOW + 6, 1, NOW + 0.1, "http_503", "k"),
            ],
        )
        due = await queue.fetch("a", 10, NOW + 10)
        assert [(g.event, g.attempts, g.first_attempt_at) for g in due] == [
            (ev(0), 2, first_attempt),
            (ev(1), 1, NOW + 0.1),
        ]
        assert [g.enqueued_at for g in due] == [NOW + 0.123456789] * 2
    finally:
        await queue.close()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.dictionaries(st.text(), json_values, max_size=5),
            # Times: epoch seconds (printf's 17 digits round-trip these exactly; SQLite's
            # printf is not exact near the ends of the double range).
            st.none() | st.just(0.0) | st.floats(1e-3, 1e12),
        ),
        max_size=12,
    )
)
def test_aggregated_columns_give_back_every_row_exactly(rows: list[tuple[Any, Any]]) -> None:
    import orjson

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, data BLOB NOT NULL, at REAL)")
    conn.executemany(
        "INSERT INTO t (seq, data, at) VALUES (?, ?, ?)",
        [(i + 1, orjson.dumps(data), at) for i, (data, at) in enumerate(rows)],
    )
    select = (
        f"SELECT {json_list('seq')}, {json_list('data')}, {json_list(floats('at'))}"
        " FROM (SELECT seq, data, at FROM t ORDER BY seq DESC)"
    )
    seqs, data, times = read_columns(conn, select, (), 3)
    expected = list(reversed(rows))
    assert seqs == list(range(len(rows), 0, -1))
    assert data == [d for d, _ in expected]
    assert [None if t is None else float(t) for t in times] == [at for _, at in expected]


async def test_collection_runs_in_steps_that_let_appends_commit_between(
    queue: SqliteQueue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import threading

    from crossdock.queue import sqlite as queue_sqlite

    monkeypatch.setattr(queue_sqlite, "_GC_STEP", 1000)
    await queue.append([ev(i) for i in range(3500)])
    got = await queue.fetch("a", 3500, NOW)
    await queue.settle("a", [g.seq for g in got])
    if queue._collector is not None:  # the settle started one in the background
        await asyncio.wait({queue._collector})
    await queue.append([ev(i) for i in range(3500, 7000)])
    got = await queue.fetch("a", 3500, NOW)
    queue._last_gc = float("inf")  # no background collection: this test runs its own
    await queue.settle("a", [g.seq for g in got])

    jobs: list[str] = []
    parked = threading.Event()
    loop = asyncio.get_running_loop()
    appended: list[asyncio.Task[Any]] = []
    step, write_appends = queue._collect_step, queue._write_appends

    def collect_step() -> int:
        jobs.append("collect")
        if len(jobs) == 1:
            # An append arrives while the first step runs: it must not wait for the rest.
            loop.call_soon_threadsafe(
                lambda: appended.append(loop.create_task(queue.append([ev(99_999)])))
            )
            loop.call_soon_threadsafe(parked.set)
            parked.wait(5)
        return step()

    def append_job(batch: Any) -> None:
        jobs.append("append")
        write_appends(batch)

    monkeypatch.setattr(queue, "_collect_step", collect_step)
    monkeypatch.setattr(queue, "_write_appends", append_job)
    assert await queue.collect() == 3500
    await appended[0]
    assert jobs[:3] == ["collect", "append", "collect"], jobs
    assert jobs.count("collect") == 4  # 1,000 events a step, and the last finds fewer
    (left,) = sqlite3.connect(tmp_path / "q.db").execute("SELECT count(*) FROM events")
    assert left == (1,)  # the event appended meanwhile


def queue_schema() -> sqlite3.Connection:
    """An in-memory database with the queue's tables, in autocommit mode as the queue's."""
    from crossdock.queue._sqlite_schema import ensure_schema

    conn = sqlite3.connect(":memory:", isolation_level=None)
    ensure_schema(conn, ":memory:")
    return conn


async def test_a_group_commit_takes_one_statement_once_the_writer_knows_the_file(
    queue: SqliteQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first commit after opening takes the full path: BEGIN, the dedupe catch-up (which
    # also reads the log's edges), one INSERT of every event, one INSERT of the new ids,
    # COMMIT. From then on the writer knows the file as it left it, and a commit is one
    # statement (its TEMP view's trigger): each statement hands the GIL back and forth.
    writer = CountingConnection(queue._conn_w())
    monkeypatch.setattr(queue, "_conn_w", lambda: writer)
    queue._last_prune = NOW  # the age limit's sweep (once a minute) is not a group commit's
    for count in (1, 7, 1000, 1337):
        writer.counts["statements"] = 0
        start = count * 10_000
        result = await queue.append([ev(i) for i in range(start, start + count)])
        assert (result.stored, result.duplicates) == (count, 0)
        assert writer.counts["statements"] == (5 if count == 1 else 1), count
    got = await queue.fetch("a", 5000, NOW)
    expected = [ev(i) for c in (1, 7, 1000, 1337) for i in range(c * 10_000, c * 10_000 + c)]
    assert [g.event for g in got] == expected
    assert [g.seq for g in got] == list(range(got[0].seq, got[0].seq + len(expected)))
    assert queue._last_seq == got[-1].seq  # known from the counter, not read again
    writer.counts["statements"] = 0
    result = await queue.append([ev(i) for i in range(7 * 10_000, 7 * 10_000 + 7)])
    assert (result.stored, result.duplicates) == (0, 7)
    # The commit, and a look at the log row of each id the index (which keeps 32-bit tags)
    # says it holds: duplicates are rare (SDK retries), so they may cost one.
    assert writer.counts["statements"] == 1 + 7
    assert queue._last_seq == got[-1].seq
    # The age limit's sweep, once due, takes the full path again (it reads the log's edges).
    queue._last_prune = NOW - 3600
    writer.counts["statements"] = 0
    await queue.append([ev(1)])
    assert writer.counts["statements"] == 5 + 2  # + the sweep's DELETE and its min(id)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=40))
def test_packed_insert_keeps_every_row_byte_for_byte_in_order(rows: list[bytes]) -> None:
    from crossdock.queue.sqlite import _insert_events

    conn = queue_schema()
    # A row given and deleted: the counter, not the table's content, says where seqs go on.
    conn.execute("INSERT INTO events (enqueued_at, data) VALUES (0, x'00')")
    conn.execute("DELETE FROM events")
    last = _insert_events(conn, NOW, rows, 2)
    got = conn.execute("SELECT seq, data FROM events ORDER BY seq").fetchall()
    assert [bytes(d) for _, d in got] == rows
    assert [s for s, _ in got] == list(range(2, 2 + len(rows)))
    assert last == 1 + len(rows)
    (counter,) = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    assert counter == last


def test_a_row_too_long_to_pack_goes_in_by_the_chunked_insert(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from crossdock.queue import _sqlite_onestep as onestep
    from crossdock.queue import sqlite as queue_sqlite

    monkeypatch.setattr(onestep, "PACKED_LENGTH_LIMIT", 64)  # stands for 16 MiB
    conn = queue_schema()
    rows = [b"a" * 10, b"b" * 64, b"c"]
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    assert queue_sqlite._insert_events(conn, NOW, rows, 1) == 3
    assert not any("json_each" in s for s in statements)
    got = conn.execute("SELECT data FROM events ORDER BY seq").fetchall()
    assert [bytes(d) for (d,) in got] == rows


async def test_appends_go_on_above_the_highest_seq_when_the_counter_row_is_gone(
    queue: SqliteQueue,
) -> None:
    await queue.append([ev(i) for i in range(3)])
    await queue._write(
        lambda: queue._conn_w().execute("DELETE FROM sqlite_sequence WHERE name = 'events'")
    )
    result = await queue.append([ev(i) for i in range(3, 6)])
    assert result.stored == 3
    got = await queue.fetch("a", 10, NOW)
    assert [g.event for g in got] == [ev(i) for i in range(6)]
    assert [g.seq for g in got] == list(range(got[0].seq, got[0].seq + 6))
