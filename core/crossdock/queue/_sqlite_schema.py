"""The SQLite queue's schema, connection settings and version check.

Tables (one file, WAL):

- ``meta(key, value)``: ``schema_version`` and small facts.
- ``events(seq, enqueued_at, data)``: every stored event once, as orjson bytes. ``seq`` is
  ``AUTOINCREMENT`` so it is never reused, even after garbage collection emptied the table.
- ``dedupe(id, message_id, seen_at)``: messageIds accepted recently, an append-only log in
  arrival order (``id`` is ``AUTOINCREMENT``, never reused) with **no index on** ``message_id``:
  a commit appends its ids at the b-tree's right edge, and the oldest rows are a rowid range
  to prune. Lookups go to an in-memory index rebuilt from the log at open
  (``crossdock.queue._sqlite_dedupe``). Schema version 1 had ``message_id UNIQUE`` (a random
  page written per id); :func:`ensure_schema` migrates such a file at open.
- ``destinations(id, position, created_at)``: each destination's durable position: every seq
  ``<= position`` is settled for it.
- ``settled(destination, seq)``: seqs above ``position`` already settled out of order (so a
  restart does not deliver them again); rows go away once ``position`` passes them.
- ``retries``: a destination's events waiting for another attempt, with their own copy of the
  event (garbage collection of ``events`` never touches them).
- ``dead``: the dead-letter table.
"""

from __future__ import annotations

import sqlite3
import time

from crossdock.errors import QueueError

SCHEMA_VERSION = 2

BUSY_TIMEOUT = 30.0
"""Seconds a connection waits for another one's write lock (CLI and daemon share the file)."""

SYNCHRONOUS_MODES = ("off", "normal", "full", "extra")

PAGE_SIZE = 8192
"""Page size of a new queue file (an existing file keeps its own).

An SDK event is stored as a row of 600-700 bytes, and a 4 KiB page (SQLite's default) holds
only five or six such rows. Against 4 KiB pages, 8 KiB ones made the file 19 % smaller per
event, and wrote 21 % fewer bytes per event to the WAL and the file in 1,000-event group
commits, 5 % fewer at 100 events, 18 % more at 30, and 27 instead of 15 KB for a commit of one
event; the writer's CPU per event fell by 14-26 % in 1,000-event commits. 16 KiB pages
wrote more than 4 KiB ones below 100 events per commit. ``bench/page_size.py`` measures it.
"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    enqueued_at REAL NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS dedupe (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS destinations (
    id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS settled (
    destination TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (destination, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS retries (
    id INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    enqueued_at REAL,
    attempts INTEGER NOT NULL,
    first_attempt_at REAL,
    next_at REAL NOT NULL,
    reason TEXT NOT NULL,
    hold_key TEXT,
    UNIQUE (destination, seq)
);
CREATE INDEX IF NOT EXISTS retries_due ON retries (destination, next_at);
CREATE TABLE IF NOT EXISTS dead (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    enqueued_at REAL,
    reason TEXT NOT NULL,
    status INTEGER,
    body TEXT,
    attempts INTEGER NOT NULL,
    failed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_by_destination ON dead (destination, id);
"""


def connect(path: str, *, synchronous: str, writer: bool) -> sqlite3.Connection:
    """Open a connection in autocommit mode (transactions are explicit ``BEGIN IMMEDIATE``)."""
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        if writer:
            # Both before WAL and the first table, or SQLite ignores them (no effect on older
            # files): a new file can then give freed pages back to the file system after a
            # drain, and its pages fit the rows it stores (:data:`PAGE_SIZE`).
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = _switch_to_wal(conn)
            if str(mode).lower() != "wal":
                raise QueueError(f"sqlite queue {path}: cannot switch to WAL mode (got {mode})")
            # Keeps the WAL file from staying huge after a burst once it was checkpointed.
            conn.execute("PRAGMA journal_size_limit = 67108864")
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    except BaseException:
        conn.close()
        raise
    return conn


def _switch_to_wal(conn: sqlite3.Connection) -> str:
    """``PRAGMA journal_mode = WAL``, retried while another process holds the file: SQLite
    answers "database is locked" at once here instead of waiting for the busy timeout (seen
    when ``crossdock run --workers N`` processes open a new file at the same moment)."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    delay = 0.005
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def ensure_schema(conn: sqlite3.Connection, path: str) -> None:
    """Create the tables of a new file, or check the version of an existing one.

    A new file gets ``auto_vacuum = INCREMENTAL`` and :data:`PAGE_SIZE` from :func:`connect`.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        else:
            try:
                version = int(row[0])
            except ValueError:
                version = -1
            if version > SCHEMA_VERSION:
                raise QueueError(
                    f"sqlite queue {path}: schema version {version} is newer than this "
                    f"Crossdock supports ({SCHEMA_VERSION}); upgrade Crossdock or use another file"
                )
            if version < 1:
                raise QueueError(f"sqlite queue {path}: unknown schema version {row[0]!r}")
            if version == 1:
                _migrate_1_to_2(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Version 1's ``dedupe`` (``message_id UNIQUE``) becomes the append-only log: same rows,
    same ids (arrival order), no index on the id. In the caller's transaction, so of several
    processes opening the file at once exactly one migrates."""
    conn.execute("ALTER TABLE dedupe RENAME TO dedupe_v1")
    conn.execute(
        "CREATE TABLE dedupe (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " message_id TEXT NOT NULL, seen_at REAL NOT NULL)"
    )
    conn.execute(
        "INSERT INTO dedupe (id, message_id, seen_at)"
        " SELECT id, message_id, seen_at FROM dedupe_v1 ORDER BY id"
    )
    conn.execute("DROP TABLE dedupe_v1")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
