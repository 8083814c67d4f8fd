"""Many rows in one SQLite step: reads and writes of the queue's worker threads.

CPython's ``sqlite3`` releases the GIL around every ``sqlite3_step``: once per row a cursor
returns, once per parameter set of ``executemany``. A thread that gives the GIL up must wait
to get it back until the holder lets go, and the event loop of a daemon under load lets go
only at its next I/O call or after the switch interval (5 ms). Row by row, the reader thread
fetching a delivery batch of 1,000 events paid that wait a thousand times: 1.2 ms alone, 0.6 s
beside a busy thread (``bench/gil_steps.py``), and delivery fell far behind ingest.

So the hot reads and writes here take one step each: a read aggregates its rows into JSON
arrays inside SQLite (one row, one step), and a write takes its keys as one JSON array
(``json_each``). The Python side then decodes each array with one ``orjson.loads`` call.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, Final

import orjson

from crossdock.queue import StoredEvent

__all__ = [
    "MESSAGE_ID_JSON",
    "as_json_array",
    "floats",
    "insert_rows",
    "json_list",
    "power_of_two_chunks",
    "read_columns",
    "read_stored",
]

ROWS_PER_STATEMENT: Final = 128
"""Most rows of one multi-row ``INSERT`` of :func:`insert_rows` (a power of two, like every
smaller chunk, so a few prepared statements serve every count from the statement cache)."""


def floats(column: str) -> str:
    """A REAL column of epoch times as JSON text, ``null`` for NULL (``group_concat`` would
    skip it). 17 significant digits give back the same double for every time from a
    millisecond to 10**12 seconds (SQLite's own JSON rendering keeps 15 digits); near the ends
    of the double range SQLite's printf is off by an ulp or two."""
    return f"CASE WHEN {column} IS NULL THEN 'null' ELSE printf('%!.17g', {column}) END"


def json_list(expression: str) -> str:
    """An aggregate turning ``expression`` (JSON text per row) into one JSON array, as a BLOB
    (bytes, no UTF-8 decoding on the Python side); NULL when there are no rows."""
    return f"CAST('[' || group_concat({expression}, ',') || ']' AS BLOB)"


_EMPTY: Final = b"[]"


def read_columns(
    conn: sqlite3.Connection, select: str, params: tuple[Any, ...], width: int
) -> list[list[Any]]:
    """Run ``select`` (one row of ``width`` JSON-array aggregates over the same rows) in one
    step; returns the decoded columns, all of the same length (empty when no row matched).

    The aggregates of one ``SELECT`` see its rows in the same order, so the columns line up.
    """
    row = conn.execute(select, params).fetchone()
    columns = [orjson.loads(value if value is not None else _EMPTY) for value in row]
    assert len(columns) == width
    return columns


MESSAGE_ID_JSON: Final = "json_quote(json_extract(data, '$.messageId'))"
"""An event row's ``messageId`` as JSON text (``null`` when absent; a value of another type
keeps its JSON type, which :func:`read_stored` turns into ``None``)."""


def read_stored(
    conn: sqlite3.Connection, select: str, params: tuple[Any, ...]
) -> list[StoredEvent]:
    """Run ``select`` (one row: JSON arrays of seqs, byte lengths, enqueue times and messageIds,
    then the rows' data concatenated) in one step; returns the rows as
    :class:`~crossdock.queue.StoredEvent`, their bytes split by length, none decoded."""
    seqs_json, lengths_json, enqueued_json, ids_json, blob = conn.execute(select, params).fetchone()
    if seqs_json is None:
        return []
    lengths = orjson.loads(lengths_json)
    ids = orjson.loads(ids_json)
    out: list[StoredEvent] = []
    start = 0
    for seq, length, enqueued_at, mid in zip(
        orjson.loads(seqs_json), lengths, orjson.loads(enqueued_json), ids, strict=True
    ):
        end = start + length
        out.append(
            StoredEvent(seq, blob[start:end], mid if type(mid) is str else None, enqueued_at)
        )
        start = end
    if start != len(blob):
        raise sqlite3.DatabaseError("stored events: lengths do not add up to the data read")
    return out


def insert_rows(
    conn: sqlite3.Connection, head: str, row: str, rows: Sequence[tuple[Any, ...]], tail: str = ""
) -> None:
    """``head VALUES row, row, ... tail`` for ``rows``, in chunks of at most
    :data:`ROWS_PER_STATEMENT` rows: a step per chunk instead of one per row.

    ``row`` is one row's values with ``{1}``, ``{2}``, ... standing for its parameters (each
    may appear more than once, e.g. in a subquery); ``tail`` follows the values (an upsert's
    ``ON CONFLICT`` clause).
    """
    for start, size in power_of_two_chunks(len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + size]
        conn.execute(_rows_sql(head, row, tail, size, len(chunk[0])), [v for r in chunk for v in r])


def power_of_two_chunks(total: int, most: int) -> Iterator[tuple[int, int]]:
    """``(start, size)`` covering ``total`` items in chunks of ``most`` (a power of two), then
    of smaller powers of two: a multi-row statement per chunk comes from a few prepared
    statements (the connection's cache) instead of one compiled for each count."""
    start = 0
    while start < total:
        left = total - start
        size = most if left >= most else 1 << (left.bit_length() - 1)
        yield start, size
        start += size


@functools.cache
def _rows_sql(head: str, row: str, tail: str, count: int, width: int) -> str:
    groups = (row.format(*(f"?{k * width + i}" for i in range(width + 1))) for k in range(count))
    return f"{head} VALUES {', '.join(groups)} {tail}".rstrip()


def as_json_array(values: list[Any]) -> str:
    """``values`` as the JSON text a ``json_each(?)`` parameter takes."""
    return orjson.dumps(values).decode()
