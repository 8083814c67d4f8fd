"""The SQLite queue's dedupe log and its in-memory index (issue 12): the index alone, the
migration of a version-1 file, two queue objects sharing one file (``--workers``), restarts."""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from crossdock.queue import _sqlite_dedupe as dedupe_module
from crossdock.queue._sqlite_dedupe import DedupeIndex, memory_bytes, slot_bits
from crossdock.queue.sqlite import SqliteQueue

NOW = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ev(mid: str) -> dict[str, Any]:
    return {"type": "track", "event": "E", "messageId": mid}


def rid() -> str:
    return f"ajs-next-{os.urandom(16).hex()}"


def test_index_finds_every_id_it_holds_across_generations_and_drops_old_ones() -> None:
    index = DedupeIndex(5000)  # 2**12 slots, 2,457 ids per generation: three generations
    ids = [rid() for _ in range(5000)]
    index.add_many(1, ids[:3000])
    index.add_rows(list(range(3001, 5001)), ids[3000:])
    assert len(index) == 5000
    assert index.last == 5000
    for rowid, mid in enumerate(ids, 1):
        assert rowid in index.lookup(mid)
    assert all(not index.lookup(rid()) for _ in range(5000))
    before = index.memory()
    index.expire(2001)  # rowids 1..2000 gone: the first generation keeps 2001..2457
    assert index.memory() == before
    assert not any(index.lookup(mid) for mid in ids[:2000])
    index.expire(2501)  # the first generation goes whole
    assert index.memory() < before
    assert not any(index.lookup(mid) for mid in ids[:2500])
    assert all(rowid in index.lookup(mid) for rowid, mid in enumerate(ids, 1) if rowid > 2500)


@pytest.mark.parametrize("narrow_max_bits", [22, 9])  # 32-bit slots; 64-bit ones (large windows)
def test_slots_hold_the_offset_and_a_tag_whatever_their_width(
    monkeypatch: pytest.MonkeyPatch, narrow_max_bits: int
) -> None:
    monkeypatch.setattr(dedupe_module, "_NARROW_MAX_BITS", narrow_max_bits)
    index = DedupeIndex(2000)  # 2**10 slots per generation, 614 ids each
    assert index._gens == []
    ids = [rid() for _ in range(1500)]
    # a gap wider than a generation's offsets (rows another process wrote) starts a new one
    rowids = list(range(1, 501)) + list(range(5001, 6001))
    index.add_rows(rowids, ids)
    width = 4 if narrow_max_bits == 22 else 8
    assert {g.table.itemsize for g in index._gens} == {width}
    assert all(g.end - g.start < 2**10 for g in index._gens)
    for rowid, mid in zip(rowids, ids, strict=True):
        assert rowid in index.lookup(mid)
    assert sum(len(index.lookup(rid())) for _ in range(5000)) <= 5  # tag matches: rare


def test_index_memory_for_the_default_window() -> None:
    assert slot_bits(5_000_000) == 21
    # slot tables of 4 bytes per slot, and one filter of 4 bytes per slot of a generation
    assert memory_bytes(5_000_000) == 5 * 2**21 * 4 + 2**23  # 48 MiB, 9.6 bytes per id at most
    assert memory_bytes(10) == 2 * 2**10 * 4 + 2**12


_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, enqueued_at REAL NOT NULL,
    data BLOB NOT NULL);
CREATE TABLE dedupe (id INTEGER PRIMARY KEY, message_id TEXT NOT NULL UNIQUE,
    seen_at REAL NOT NULL);
CREATE TABLE destinations (id TEXT PRIMARY KEY, position INTEGER NOT NULL,
    created_at REAL NOT NULL);
CREATE TABLE settled (destination TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (destination, seq)) WITHOUT ROWID;
CREATE TABLE retries (id INTEGER PRIMARY KEY, destination TEXT NOT NULL, seq INTEGER NOT NULL,
    data BLOB NOT NULL, enqueued_at REAL, attempts INTEGER NOT NULL, first_attempt_at REAL,
    next_at REAL NOT NULL, reason TEXT NOT NULL, hold_key TEXT, UNIQUE (destination, seq));
CREATE INDEX retries_due ON retries (destination, next_at);
CREATE TABLE dead (id INTEGER PRIMARY KEY AUTOINCREMENT, destination TEXT NOT NULL,
    seq INTEGER NOT NULL, data BLOB NOT NULL, enqueued_at REAL, reason TEXT NOT NULL,
    status INTEGER, body TEXT, attempts INTEGER NOT NULL, failed_at REAL NOT NULL);
CREATE INDEX dead_by_destination ON dead (destination, id);
"""


async def test_a_version_1_file_is_migrated_and_keeps_its_ids_and_events(tmp_path: Path) -> None:
    db = tmp_path / "v1.db"
    conn = sqlite3.connect(db)
    conn.executescript(_V1)
    # Ids inserted in random key order, as version 1 left them; "old" is out of the window.
    conn.executemany(
        "INSERT INTO dedupe (id, message_id, seen_at) VALUES (?, ?, ?)",
        [(i, f"m{i}", NOW - 10) for i in range(1, 501)] + [(501, "old", NOW - 200)],
    )
    conn.execute("INSERT INTO events (enqueued_at, data) VALUES (?, ?)", (NOW, b'{"a":1}'))
    conn.execute("INSERT INTO destinations VALUES ('a', 0, ?)", (NOW,))
    conn.commit()
    conn.close()

    q = SqliteQueue(db, dedupe_window=100.0, clock=Clock())
    await q.open(["a"])
    try:
        assert [g.event for g in await q.fetch("a", 10, NOW)] == [{"a": 1}]
        result = await q.append([ev("m1"), ev("m500"), ev("old"), ev("new")])
        assert (result.stored, result.duplicates) == (2, 2)
        again = await q.append([ev("old"), ev("new")])
        assert (again.stored, again.duplicates) == (0, 2)
    finally:
        await q.close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            "2",
        )
        # No index on message_id any more: only the rowid b-tree.
        assert (
            conn.execute(
                "SELECT name FROM sqlite_master WHERE tbl_name = 'dedupe' AND type = 'index'"
            ).fetchall()
            == []
        )
        assert conn.execute("SELECT max(id) FROM dedupe").fetchone() == (503,)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


async def test_two_queues_on_one_file_see_each_others_ids(tmp_path: Path) -> None:
    """``--workers 2``: each process indexes the other's new log rows before deciding."""
    db = tmp_path / "shared.db"
    clock = Clock()
    a = SqliteQueue(db, clock=clock, dedupe_max=300)
    b = SqliteQueue(db, clock=clock, dedupe_max=300)
    await a.open(["d"])
    await b.open(["d"])
    try:
        rng = random.Random(7)
        stored: set[str] = set()
        for round_ in range(60):
            ids = [rid() for _ in range(rng.randint(1, 12))]
            first, second = (a, b) if round_ % 2 else (b, a)
            assert (await first.append([ev(m) for m in ids])).stored == len(ids)
            # The other queue refuses every one of them, also mixed with new ids.
            fresh = rid()
            result = await second.append([ev(m) for m in ids] + [ev(fresh)])
            assert (result.stored, result.duplicates) == (1, len(ids))
            stored.update(ids)
            stored.add(fresh)
        # The cap (300) applies to both: old ids are forgotten by both processes alike.
        (count,) = sqlite3.connect(db).execute("SELECT count(*) FROM dedupe").fetchone()
        assert count == 300
    finally:
        await a.close()
        await b.close()


async def test_restart_rebuilds_the_index_from_the_log(tmp_path: Path) -> None:
    db = tmp_path / "restart.db"
    clock = Clock()
    ids = [rid() for _ in range(3000)]
    q = SqliteQueue(db, clock=clock, dedupe_max=2000, dedupe_window=1000.0)
    await q.open([])
    for start in range(0, 3000, 250):
        await q.append([ev(m) for m in ids[start : start + 250]])
        clock.now += 10
    await q.close()
    q = SqliteQueue(db, clock=clock, dedupe_max=2000, dedupe_window=1000.0)
    await q.open([])
    try:
        # The newest 2,000 are known, the 1,000 beyond the cap are not.
        result = await q.append([ev(m) for m in ids])
        assert (result.stored, result.duplicates) == (1000, 2000)
        clock.now += 2000  # all out of the window
        result = await q.append([ev(m) for m in ids[-10:]])
        assert result.stored == 10
    finally:
        await q.close()


def test_filters_never_hide_an_indexed_id_and_skip_most_new_ones() -> None:
    """A generation's filter answers "not here" for most new ids (no probe) and never for an id
    the generation holds, across generations and after expiry."""
    import random

    rng = random.Random(1212)
    index = DedupeIndex(20_000)
    ids = [f"ajs-next-{rng.getrandbits(128):032x}" for _ in range(45_000)]
    index.add_many(1, ids[:20_000])
    index.add_rows(list(range(20_001, 45_001)), ids[20_000:])
    assert len(index._gens) >= 4
    assert all(rowid in index.lookup(mid) for rowid, mid in enumerate(ids, 1))
    fresh = [f"ajs-next-{rng.getrandbits(128):032x}" for _ in range(20_000)]
    passed = candidates = 0
    for mid in fresh:
        p1, p2 = index._filter_positions(hash(mid) & (2**64 - 1))
        lanes = index._filter[p1] & index._filter[p2]
        passed += sum(1 for g in index._gens if g.lane & lanes)
        candidates += len(index.lookup(mid))
    # a candidate is a tag match the caller checks against the log (a rowid read); with 19-bit
    # tags about 0.04 are expected here, so a few would mean the tag repeats the filter's bits
    assert candidates <= 2
    # about 7 % per full generation (two bits of four per slot, 60 % of slots filled)
    assert passed / (len(fresh) * len(index._gens)) < 0.12
    index.expire(30_001)
    assert all(rowid in index.lookup(mid) for rowid, mid in enumerate(ids, 1) if rowid > 30_000)


def test_generations_beyond_the_filter_lanes_are_probed_and_freed_lanes_are_clean() -> None:
    """More generations alive than the filter has lanes (gaps from other processes start a
    generation each): those without a lane are always probed, before and after older ones
    give their lanes back, and a lane given back holds no bit of its old generation."""
    index = DedupeIndex(2000)  # 2**10 slots per generation
    chunks = [[rid() for _ in range(10)] for _ in range(12)]
    for n, chunk in enumerate(chunks):  # rowids 2000 apart: a generation per chunk
        index.add_many(1 + 2000 * n, chunk)
    assert len(index._gens) == 12
    assert [g.lane for g in index._gens].count(0) == 4
    for n, chunk in enumerate(chunks):
        assert all(1 + 2000 * n + k in index.lookup(mid) for k, mid in enumerate(chunk))
    freed = [g.lane for g in index._gens[:3]]
    index.expire(1 + 2000 * 3)  # the three oldest go, and their lanes with them
    assert all(not b & lane for b in index._filter for lane in freed)
    for n, chunk in enumerate(chunks[3:], 3):  # the lane-less ones still answer
        assert all(1 + 2000 * n + k in index.lookup(mid) for k, mid in enumerate(chunk))
    late = [rid() for _ in range(10)]
    index.add_many(1 + 2000 * 12, late)  # a new generation takes a freed lane
    assert index._gens[-1].lane in freed
    assert all(1 + 2000 * 12 + k in index.lookup(mid) for k, mid in enumerate(late))
    assert all(not index.lookup(rid()) for _ in range(2000))
