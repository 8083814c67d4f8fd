"""The SQLite queue's one-statement group commit (``_sqlite_onestep``) and its way back to the
full path whenever another writer touched the file since this writer's last commit."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossdock.queue import _sqlite_onestep as onestep
from crossdock.queue.sqlite import SqliteQueue

NOW = 1_700_000_000.0


def ev(mid: str) -> dict[str, Any]:
    return {"type": "track", "event": "Viewed", "messageId": mid}


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[SqliteQueue]:
    opened = SqliteQueue(tmp_path / "q.db", clock=lambda: NOW)
    await opened.open(["a"])
    opened._last_prune = NOW  # no age sweep: it would take the full path
    yield opened
    await opened.close()


class Steps:
    """Counts the writer's statements and the one-step commits that gave way."""

    def __init__(self, queue: SqliteQueue, monkeypatch: pytest.MonkeyPatch) -> None:
        self.statements = 0
        self.changed = 0
        conn = queue._conn_w()
        outer = self

        class Counting:
            def execute(self, sql: str, params: Any = ()) -> Any:
                outer.statements += 1
                return conn.execute(sql, params)

            def __getattr__(self, name: str) -> Any:
                return getattr(conn, name)

        monkeypatch.setattr(queue, "_conn_w", Counting)
        append = onestep.append

        def counted(*args: Any) -> None:
            try:
                append(*args)
            except onestep.Changed:
                self.changed += 1
                raise

        monkeypatch.setattr(onestep, "append", counted)


def other_writer(queue: SqliteQueue) -> contextlib.closing[sqlite3.Connection]:
    """Another process's connection to the queue's file (closed when the block ends)."""
    return contextlib.closing(sqlite3.connect(queue.path, isolation_level=None))


async def test_another_writers_event_sends_the_next_commit_the_full_way(
    queue: SqliteQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = Steps(queue, monkeypatch)
    await queue.append([ev("a1")])
    await queue.append([ev("a2")])
    assert steps.changed == 0
    with other_writer(queue) as conn:
        conn.execute("INSERT INTO events (enqueued_at, data) VALUES (?, ?)", (NOW, b'{"o":1}'))
    steps.statements = 0
    await queue.append([ev("a3")])
    assert steps.changed == 1
    assert steps.statements == 1 + 5  # the aborted statement, then the full path
    got = await queue.fetch("a", 10, NOW)
    assert [g.event for g in got] == [ev("a1"), ev("a2"), {"o": 1}, ev("a3")]
    assert [g.seq for g in got] == sorted({g.seq for g in got})
    steps.statements = 0
    await queue.append([ev("a4")])  # known again
    assert (steps.changed, steps.statements) == (1, 1)


async def test_a_seq_another_writer_gave_is_never_given_again_after_its_row_is_gone(
    queue: SqliteQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = Steps(queue, monkeypatch)
    await queue.append([ev("a1")])
    with other_writer(queue) as conn:
        (seq,) = conn.execute(
            "INSERT INTO events (enqueued_at, data) VALUES (?, ?) RETURNING seq", (NOW, b"{}")
        ).fetchone()
        conn.execute("DELETE FROM events WHERE seq = ?", (seq,))
    await queue.append([ev("a2")])
    assert steps.changed == 1
    got = await queue.fetch("a", 10, NOW)
    assert [g.event for g in got] == [ev("a1"), ev("a2")]
    assert got[-1].seq > seq


async def test_an_id_another_writer_logged_is_a_duplicate_here(
    queue: SqliteQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = Steps(queue, monkeypatch)
    await queue.append([ev("a1")])
    with other_writer(queue) as conn:
        conn.execute("INSERT INTO dedupe (message_id, seen_at) VALUES ('b1', ?)", (NOW,))
    result = await queue.append([ev("b1"), ev("a2")])
    assert (result.stored, result.duplicates) == (1, 1)
    assert steps.changed == 1


async def test_a_refused_one_step_commit_writes_nothing(
    queue: SqliteQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    await queue.append([ev("a1")])
    known = queue._known
    assert known is not None
    with other_writer(queue) as conn:
        conn.execute("INSERT INTO events (enqueued_at, data) VALUES (?, ?)", (NOW, b"{}"))
        conn.execute("INSERT INTO dedupe (message_id, seen_at) VALUES ('o1', ?)", (NOW,))
        before = conn.execute("SELECT count(*) FROM events").fetchone()
        with pytest.raises(onestep.Changed):
            await asyncio.to_thread(
                onestep.append, queue._conn_w(), NOW, [b'{"x":1}'], ["x1"], known, 0
            )
        assert conn.execute("SELECT count(*) FROM events").fetchone() == before
        assert conn.execute("SELECT count(*) FROM dedupe WHERE message_id = 'x1'").fetchone() == (
            0,
        )


async def test_the_cap_deletes_the_oldest_ids_in_the_same_statement(tmp_path: Path) -> None:
    queue = SqliteQueue(tmp_path / "q.db", clock=lambda: NOW, dedupe_max=5)
    await queue.open(["a"])
    queue._last_prune = NOW
    try:
        for i in range(4):
            await queue.append([ev(f"m{i}-{k}") for k in range(3)])
        with other_writer(queue) as conn:
            ids = [m for (m,) in conn.execute("SELECT message_id FROM dedupe ORDER BY id")]
        assert ids == ["m2-1", "m2-2", "m3-0", "m3-1", "m3-2"]
        result = await queue.append([ev("m2-0"), ev("m3-2")])  # forgotten, remembered
        assert (result.stored, result.duplicates) == (1, 1)
    finally:
        await queue.close()


async def test_a_row_too_long_to_pack_goes_the_full_way(
    queue: SqliteQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = Steps(queue, monkeypatch)
    monkeypatch.setattr(onestep, "PACKED_LENGTH_LIMIT", 64)  # stands for 16 MiB
    await queue.append([ev("a1")])
    big = {**ev("a2"), "properties": {"text": "x" * 100}}
    await queue.append([big, ev("a3")])
    assert steps.changed == 1
    got = await queue.fetch("a", 10, NOW)
    assert [g.event for g in got] == [ev("a1"), big, ev("a3")]


# Our appends (ids from a small pool, so duplicates are common) interleaved with another
# writer's events, ids and deletions: the one-step path must decide exactly as the full one.
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.lists(st.integers(0, 30), min_size=1, max_size=6)),
        st.tuples(st.just("their_event"), st.just(0)),
        st.tuples(st.just("their_id"), st.integers(0, 30)),
        st.tuples(st.just("delete_events"), st.just(0)),
        st.tuples(st.just("drop_counter"), st.just(0)),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ops)
def test_interleaved_writers_store_each_id_once_and_never_reuse_a_seq(
    ops: list[tuple[str, Any]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_interleave(Path(tmp) / "q.db", ops))


async def _interleave(path: Path, ops: list[tuple[str, Any]]) -> None:
    queue = SqliteQueue(path, clock=lambda: NOW)
    await queue.open(["a"])
    queue._last_prune = NOW
    seen: set[str] = set()
    ours: list[dict[str, Any]] = []
    highest = 0
    counter_lost = False  # the events' counter row is gone (a damaged file)
    try:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as them:
            for op, arg in ops:
                if op == "append":
                    events = [ev(f"m{i}") for i in arg]
                    new = [
                        e
                        for k, e in enumerate(events)
                        if e["messageId"] not in seen
                        and e["messageId"] not in {x["messageId"] for x in events[:k]}
                    ]
                    result = await queue.append(events)
                    assert (result.stored, result.duplicates) == (len(new), len(events) - len(new))
                    seen.update(e["messageId"] for e in new)
                    ours.extend(new)
                    counter_lost = counter_lost and not new
                elif op == "their_event":
                    them.execute("INSERT INTO events (enqueued_at, data) VALUES (?, '{}')", (NOW,))
                    counter_lost = False
                elif op == "their_id":
                    them.execute(
                        "INSERT INTO dedupe (message_id, seen_at) VALUES (?, ?)", (f"m{arg}", NOW)
                    )
                    seen.add(f"m{arg}")
                elif op == "delete_events":
                    (top,) = them.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
                    if not counter_lost:  # else nothing remembers these seqs
                        highest = max(highest, top)
                    them.execute("DELETE FROM events")
                else:
                    # A file that lost its counter row: only the seqs still there are known.
                    them.execute("DELETE FROM sqlite_sequence WHERE name = 'events'")
                    highest, counter_lost = 0, True
            rows = them.execute("SELECT seq, data FROM events ORDER BY seq").fetchall()
        mine = [(seq, data) for seq, data in rows if data != b"{}" and data != "{}"]
        assert all(seq > highest for seq, _ in rows)  # no seq handed out twice
        assert len(mine) <= len(ours)
    finally:
        await queue.close()
