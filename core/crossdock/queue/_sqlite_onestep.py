"""Writes of the queue's writer thread in one SQLite step: the append while nobody else writes,
and the settle of delivered events.

A group commit took five statements: ``BEGIN IMMEDIATE``, the catch-up read (other processes'
ids, both ``AUTOINCREMENT`` counters), the events' ``INSERT``, the dedupe log's ``INSERT`` and
``COMMIT``; a settle four or five. CPython's ``sqlite3`` gives the GIL up around each step, and
a writer thread that gave it up waits for a busy event loop to hand it back. One step per
commit shortened a saturated group commit from 22-26 to 11-16 ms (``bench/README.md``); it
did not change the p99 at half the rate, which follows the WAL fsync's tail.

Here each is one ``INSERT`` into a TEMP view whose ``INSTEAD OF`` trigger does the work. In
autocommit mode one statement is its own transaction: SQLite takes the write lock, runs the
trigger, commits and syncs inside one ``sqlite3_step``, so the writer thread gives the GIL up
once per commit.

What the append leaves out is the catch-up, so it is only for a writer that knows the file as
its own last commit left it (:class:`Known`). The trigger's first statement checks that: when
either counter moved past what this writer committed (another process stored events or ids,
e.g. ``--workers`` while process 0 restarts), it aborts before writing anything and
:func:`append` raises :class:`Changed`; the caller then takes the full path, which catches up.
A settle reads nothing it could find changed; one with retries or dead letters runs the same
statement inside the transaction that stores them.
"""

from __future__ import annotations

import sqlite3
from typing import Final

import orjson
from attrs import define

__all__ = [
    "INSERT_PACKED",
    "PACKED_LENGTH_LIMIT",
    "Changed",
    "Known",
    "append",
    "install",
    "pack",
    "settle",
]

PACKED_LENGTH_BITS: Final = 24
PACKED_LENGTH_LIMIT: Final = 1 << PACKED_LENGTH_BITS
"""Rows of this many bytes or more (16 MiB; far beyond any request limit) cannot be packed."""


def _packed_rows(blob: str, packed: str, first: str, now: str) -> str:
    """The ``SELECT`` cutting ``blob`` into rows at the offsets and lengths of ``packed``, each
    at seq ``first + i``, as ``(seq, enqueued_at, data)``."""
    return (
        f"SELECT {first} + key, {now}, substr({blob}, (value >> {PACKED_LENGTH_BITS}) + 1,"
        f" value & {PACKED_LENGTH_LIMIT - 1}) FROM json_each({packed})"
    )


INSERT_PACKED: Final = "INSERT INTO events (seq, enqueued_at, data) " + _packed_rows(
    "?2", "?3", "?4", "?1"
)
"""The events of :func:`pack` (``?2`` the bytes, ``?3`` the offsets and lengths) as seqs
from ``?4`` on, enqueued at ``?1``: one statement for the whole group."""


def pack(rows: list[bytes]) -> tuple[bytes, str] | None:
    """``rows`` as one blob and a JSON array of ``offset << 24 | length`` per row, or ``None``
    when a row is too long for that (:data:`PACKED_LENGTH_LIMIT`)."""
    packed = []
    start = 0
    for row in rows:
        length = len(row)
        if length >= PACKED_LENGTH_LIMIT:
            return None
        packed.append(start << PACKED_LENGTH_BITS | length)
        start += length
    return b"".join(rows), orjson.dumps(packed).decode()


@define(slots=True)
class Known:
    """The file as this writer's last commit left it: the events' ``AUTOINCREMENT`` counter
    (at least their highest seq), the dedupe log's counter, and its lowest rowid (``None``
    when the log is empty)."""

    events: int
    ids: int
    low: int | None


class Changed(Exception):
    """Another writer changed the file since :class:`Known` (nothing was written), or the
    rows cannot go in one step."""


_CHANGED: Final = "crossdock: queue changed by another writer"

_VIEW: Final = (
    "CREATE TEMP VIEW IF NOT EXISTS crossdock_append"
    " (now, data, packed, first_seq, ids, first_id, cap_low, known_events, known_ids)"
    " AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0"
)

# Unqualified names in a TEMP trigger's body resolve to the main file's tables (there are no
# TEMP tables of these names); SQLite forbids qualified ones in a trigger's INSERT and DELETE.
# Every insert into an AUTOINCREMENT table, explicit rowid or not, raises its counter to at
# least that rowid (and writes the counter row again if it was lost), so the counters alone
# tell whether anyone else stored anything since.
_TRIGGER: Final = f"""
CREATE TEMP TRIGGER IF NOT EXISTS crossdock_append_rows
INSTEAD OF INSERT ON crossdock_append
BEGIN
    SELECT RAISE(ABORT, '{_CHANGED}')
    WHERE coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0) > NEW.known_events
       OR coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'dedupe'), 0) > NEW.known_ids;
    INSERT INTO events (seq, enqueued_at, data)
    {_packed_rows("NEW.data", "NEW.packed", "NEW.first_seq", "NEW.now")};
    INSERT INTO dedupe (id, message_id, seen_at)
    SELECT NEW.first_id + key, value, NEW.now FROM json_each(NEW.ids);
    DELETE FROM dedupe WHERE id < NEW.cap_low;
END
"""

_APPEND: Final = "INSERT INTO crossdock_append VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"

_SETTLE_VIEW: Final = (
    "CREATE TEMP VIEW IF NOT EXISTS crossdock_settle (destination, gone, beyond, durable)"
    " AS SELECT NULL, NULL, NULL, NULL WHERE 0"
)

_SETTLE_TRIGGER: Final = """
CREATE TEMP TRIGGER IF NOT EXISTS crossdock_settle_rows
INSTEAD OF INSERT ON crossdock_settle
BEGIN
    DELETE FROM retries WHERE NEW.gone IS NOT NULL AND destination = NEW.destination
        AND seq IN (SELECT value FROM json_each(NEW.gone));
    INSERT OR IGNORE INTO settled (destination, seq)
        SELECT NEW.destination, value FROM json_each(NEW.beyond);
    UPDATE destinations SET position = NEW.durable
        WHERE NEW.durable IS NOT NULL AND id = NEW.destination AND position < NEW.durable;
    DELETE FROM settled WHERE NEW.durable IS NOT NULL
        AND destination = NEW.destination AND seq <= NEW.durable;
END
"""

_SETTLE: Final = "INSERT INTO crossdock_settle VALUES (?1, ?2, ?3, ?4)"


def install(conn: sqlite3.Connection) -> None:
    """Create the TEMP views and triggers on the writer's connection (they live and die with
    it; nothing is added to the file)."""
    for statement in (_VIEW, _TRIGGER, _SETTLE_VIEW, _SETTLE_TRIGGER):
        conn.execute(statement)


def settle(
    conn: sqlite3.Connection,
    destination: str,
    gone: list[int],
    beyond: list[int],
    durable: int | None,
) -> None:
    """Settle delivered events of ``destination`` in one autocommit statement: drop the
    retries of ``gone``, record ``beyond`` (settled above the durable position) and, when
    ``durable`` is given, move the position there and forget the records it passed."""
    conn.execute(
        _SETTLE,
        (
            destination,
            orjson.dumps(gone).decode() if gone else None,
            orjson.dumps(beyond).decode() if beyond else None,
            durable,
        ),
    )


def append(
    conn: sqlite3.Connection,
    now: float,
    rows: list[bytes],
    new_ids: list[str],
    known: Known,
    cap_low: int,
) -> None:
    """Commit ``rows`` as seqs ``known.events + 1``, … and ``new_ids`` as log rows
    ``known.ids + 1``, …, deleting log rows below ``cap_low``, in one autocommit statement.

    ``conn`` must be outside a transaction. Raises :class:`Changed` when the file is no longer
    as ``known`` says (or a row is too long to pack); nothing is written then.
    """
    packed = pack(rows) if rows else (None, None)
    if packed is None:
        raise Changed("a row is too long to pack")
    blob, offsets = packed
    ids = orjson.dumps(new_ids).decode() if new_ids else None
    try:
        conn.execute(
            _APPEND,
            (
                now,
                blob,
                offsets,
                known.events + 1,
                ids,
                known.ids + 1,
                cap_low,
                known.events,
                known.ids,
            ),
        )
    except sqlite3.IntegrityError as exc:
        if _CHANGED in str(exc):
            raise Changed(str(exc)) from None
        raise
