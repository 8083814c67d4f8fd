"""The embedded queue backend: one SQLite file in WAL mode, with group commit.

Threads. All SQLite work runs off the event loop. One writer thread owns the only writing
connection; every write (append groups, settles, DLQ changes, collection) is a transaction on
it, so writes never contend inside the process. Reads (fetch, stats, DLQ listing) use a small
pool of reader connections, which WAL lets run next to the writer.

Group commit. ``append`` serializes its events (orjson, once; the ingest handler passes them
serialized to ``append_encoded``) and parks a request; the writer thread takes everything
parked as ONE transaction (one fsync for many requests). While that commit runs, new requests
park and go into the next one, which the writer starts as soon as the commit ends (``_drain``).
If the transaction fails, every request in it fails with :class:`QueueError` and nothing of it
is stored. While this writer is the only one (it knows the file as its last commit left it),
the transaction is a single statement (:mod:`._sqlite_onestep`); otherwise it is the full
``BEGIN IMMEDIATE`` … ``COMMIT``, which first reads what other processes stored.

Positions. Each destination has a durable ``position`` (every seq up to it is settled) and an
in-memory read position ahead of it, so an event in flight is not handed out twice. Seqs
settled out of order above the position are recorded in ``settled`` in the same transaction,
so a restart re-delivers only what was really in flight (duplicates, never losses).

Garbage collection. After settles (at most every few seconds, in the background) the writer
deletes events at or below the smallest durable position of the destinations registered by
this process, then hands free pages back to the file system (``PRAGMA incremental_vacuum``, at
most :data:`_VACUUM_BYTES` per collection, only once :data:`_VACUUM_MIN_FREE` bytes are free),
so the file shrinks after a drain (files created before auto_vacuum was set keep their size
until an offline ``VACUUM``). Both run in small writer jobs (:data:`_GC_STEP` events,
:data:`_VACUUM_STEP` bytes) so that appends commit between them. Only a
process that settles collects, so the CLI opening the file never deletes anything. A queue
with no registered destination keeps its events (nobody reads them: a destination added later
starts at the end, and the first collection then removes them). A destination removed from the
configuration keeps its row, retries and dead letters but no longer holds events back; added
again, it resumes at its old position minus what was collected meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson
from attrs import define, field

from crossdock.errors import QueueError
from crossdock.queue import (
    AppendResult,
    DeadLetter,
    DeadLetterEntry,
    EncodedEvent,
    QueuedEvent,
    QueueStats,
    Retry,
    encode_rows,
)
from crossdock.queue import _sqlite_onestep as onestep
from crossdock.queue._sqlite_cursor import Cursor, SettlePlan
from crossdock.queue._sqlite_dedupe import DedupeIndex
from crossdock.queue._sqlite_schema import (
    BUSY_TIMEOUT,
    SYNCHRONOUS_MODES,
    connect,
    ensure_schema,
)
from crossdock.queue._sqlite_shared import AppendClient, RemoteUnavailable
from crossdock.queue._sqlite_steps import (
    MESSAGE_ID_JSON,
    floats,
    insert_rows,
    json_list,
    power_of_two_chunks,
    read_columns,
    read_stored,
)
from crossdock.queue._sqlite_writelock import WriteLock
from crossdock.types import Event

__all__ = ["SqliteQueue"]

log = logging.getLogger("crossdock.queue")

T = TypeVar("T")

MAX_EVENTS_PER_COMMIT = 20_000
"""A group commit takes parked requests up to about this many events; the rest wait for the next."""

_INSERT_CHUNK = 1024
"""Most rows per multi-row ``INSERT`` (well under SQLite's bound-parameter limit); a power of
two, like every smaller chunk."""

_TRIM_INTERVAL = 10.0
"""Seconds between two ``malloc_trim`` calls of the writer thread (each takes ~1 ms)."""
_GC_INTERVAL = 2.0
_GC_STEP = 5_000
"""Most events one collection step deletes (one writer job, a few milliseconds)."""
_PRUNE_CHUNK = 10_000
_CATCH_UP_CHUNK = 100_000
_VACUUM_MIN_FREE = 1024 * 1024
"""Bytes of free pages before a collection gives any back to the file system."""
_VACUUM_BYTES = 16 * 1024 * 1024
"""Most bytes of pages one collection gives back."""
_VACUUM_STEP = 2 * 1024 * 1024
"""Most bytes of pages one vacuum step (one writer job) gives back."""
_READERS = 2
_FETCH_CHUNK = 512
"""Most new events one fetch query reads: a step or two per batch, and an aggregate of at
most 16 MiB (512 events of Segment's 32 KB), held in SQLite and again in Python."""


@define
class _AppendRequest:
    rows: list[EncodedEvent]
    future: asyncio.Future[AppendResult]
    result: AppendResult | None = None


@define
class _Settles:
    """Settles of one destination parked for its next settle commit, and their callers."""

    seqs: set[int] = field(factory=set)
    done: list[int] = field(factory=list)
    retry_rows: list[tuple[Any, ...]] = field(factory=list)
    dead_rows: list[tuple[Any, ...]] = field(factory=list)
    futures: list[asyncio.Future[None]] = field(factory=list)


@define
class _SettleGroup:
    """One destination's parked settles and the task that commits them, group after group."""

    parked: _Settles = field(factory=_Settles)
    flusher: asyncio.Task[None] | None = None


def _dumps(event: Event) -> bytes:
    return orjson.dumps(event)


class SqliteQueue:
    """The default :class:`~crossdock.queue.Queue`: durable, deduplicating, one SQLite file.

    ``dedupe_window`` (seconds) and ``dedupe_max`` (rows) bound the messageId memory;
    ``synchronous`` is SQLite's setting (``full`` = an append returns only once its commit is
    on disk); ``clock`` gives epoch seconds (tests inject one). ``commits`` counts append
    transactions and ``appends`` append requests, for tests and metrics.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        dedupe_window: float = 86400.0,
        dedupe_max: int = 5_000_000,
        synchronous: str = "full",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if synchronous.lower() not in SYNCHRONOUS_MODES:
            raise QueueError(
                f"sqlite queue: synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}"
            )
        if dedupe_max < 1:
            raise QueueError("sqlite queue: dedupe_max must be at least 1")
        self.path = Path(path)
        self.dedupe_window = float(dedupe_window)
        self.dedupe_max = int(dedupe_max)
        self.synchronous = synchronous.lower()
        self._clock = clock
        self.commits = 0
        self.appends = 0
        self._state = "new"  # new -> open -> closing -> closed
        self._open_lock: asyncio.Lock | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._wconn: sqlite3.Connection | None = None
        self._write_lock: WriteLock | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_conns_lock = threading.Lock()
        self._cursors: dict[str, Cursor] = {}
        self._settling: dict[str, _SettleGroup] = {}
        self._registered: tuple[str, ...] = ()  # replaced whole: the writer thread reads it
        self._pending: deque[_AppendRequest] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._writes_waiting = 0
        self._notify = asyncio.Event()
        self._last_seq = 0
        self._last_prune = float("-inf")
        self._dedupe: DedupeIndex | None = None  # the writer thread's, built at open
        self._known: onestep.Known | None = None  # the writer thread's, after each commit
        self._last_gc = float("-inf")
        self._collector: asyncio.Task[None] | None = None
        self._last_trim = time.monotonic()
        # ``--workers``: process 0's writer, which the other processes send their rows to.
        self._shared: AppendClient | None = None
        self._shared_lost = False
        self._index_building: asyncio.Lock | None = None

    # -----------------------------------------------------------------------------------------
    # Lifecycle

    async def open(self, destinations: Sequence[str]) -> None:
        """Create or check the file and register ``destinations`` (new ones start at the end)."""
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._state in ("closing", "closed"):
                raise QueueError(f"sqlite queue {self.path}: closed")
            if self._state == "new":
                keep_large_buffers_mapped()
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="crossdock-sqlite-writer")
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._write_lock = WriteLock(self.path, BUSY_TIMEOUT)
                self._readers = ThreadPoolExecutor(
                    _READERS, thread_name_prefix="crossdock-sqlite-reader"
                )
                try:
                    self._last_seq = await self._write(self._open_storage)
                    # Reads only, so outside the write turn: under ``--workers`` the other
                    # processes go on storing while this one indexes a full window (seconds);
                    # rows they add meanwhile are caught up by the first append, under the turn.
                    if self._shared is None:
                        await self._unlocked(self._build_index)
                except BaseException:
                    await self._shutdown()
                    raise
                self._state = "open"
            wanted = list(dict.fromkeys(destinations))
            loaded = await self._write(self._register, wanted)
            for dest, (position, skip) in loaded.items():
                if dest not in self._cursors:
                    self._cursors[dest] = Cursor(durable=position, read_pos=position, skip=skip)
            for dest in list(self._cursors):
                if dest not in loaded:
                    del self._cursors[dest]
            self._registered = tuple(loaded)

    async def rewind(self, destination: str) -> None:
        """Rebuild ``destination``'s cursor from the file: everything after its durable
        position not recorded as settled is handed out again, retries when due."""
        cursor = self._cursor(destination)
        async with cursor.settle_lock, cursor.lock:
            loaded = await self._write(self._register, [destination])
            position, skip = loaded[destination]
            self._cursors[destination] = Cursor(durable=position, read_pos=position, skip=skip)

    async def close(self) -> None:
        """Finish pending appends, checkpoint the WAL and close every connection."""
        if self._state in ("closing", "closed"):
            return
        if self._state == "new":
            self._state = "closed"
            return
        self._state = "closing"
        settling = {g.flusher for g in self._settling.values() if g.flusher is not None}
        if settling:
            await asyncio.wait(settling)
        while self._flusher is not None:
            await asyncio.shield(self._flusher)
        if self._collector is not None:
            # It stops after the step in progress (the state is no longer "open").
            await asyncio.wait({self._collector})
        with contextlib.suppress(QueueError):
            await self._write(self._checkpoint_and_close)
        await self._shutdown()
        self._state = "closed"
        self._wake()

    async def _shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        writer, readers = self._writer, self._readers
        self._writer = self._readers = None
        if readers is not None:
            await loop.run_in_executor(None, readers.shutdown, True)
        with self._reader_conns_lock:
            conns, self._reader_conns = self._reader_conns, []
        for conn in conns:
            conn.close()
        if writer is not None:
            if self._wconn is not None:
                await loop.run_in_executor(writer, self._close_writer)
            await loop.run_in_executor(None, writer.shutdown, True)
        if self._write_lock is not None:
            self._write_lock.close()
            self._write_lock = None

    def _close_writer(self) -> None:
        if self._wconn is not None:
            self._wconn.close()
            self._wconn = None
        self._dedupe = None
        self._known = None

    async def __aenter__(self) -> SqliteQueue:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def info(self) -> dict[str, Any]:
        """Backend facts for logs and metrics."""
        return {"backend": "sqlite", "path": str(self.path)}

    async def ping(self) -> None:
        """Raise :class:`QueueError` unless a write transaction can be committed."""
        self._check_open()
        await self._write(self._write_ping)

    # -----------------------------------------------------------------------------------------
    # Append (group commit)

    async def append(self, events: Sequence[Event]) -> AppendResult:
        """Store ``events`` durably, all or none, skipping messageIds seen in the window."""
        self._check_open()
        if not events:
            return AppendResult(0, 0)
        try:
            rows = encode_rows(events)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise QueueError(f"sqlite queue: event cannot be stored as JSON: {exc}") from exc
        return await self.append_encoded(rows)

    async def append_encoded(self, rows: list[EncodedEvent]) -> AppendResult:
        """:meth:`append` for events the caller serialized: ``(messageId or None, JSON)`` each.

        The ingest handler serializes while it checks the depth, and then holds only these
        bytes (not the parsed events) while the commit runs.
        """
        self._check_open()
        if not rows:
            return AppendResult(0, 0)
        shared = self._shared
        if shared is not None and shared.reachable:
            try:
                result = await shared.append(rows)
            except RemoteUnavailable as exc:
                if not self._shared_lost:
                    self._shared_lost = True
                    log.warning(
                        "process 0's queue writer cannot be reached; storing here meanwhile",
                        extra={"error": str(exc)},
                    )
            else:
                if self._shared_lost:
                    self._shared_lost = False
                    log.info("storing through process 0's queue writer again")
                self.appends += 1
                return result
        if self._dedupe is None:
            await self._index_for_local_appends()
        loop = asyncio.get_running_loop()
        request = _AppendRequest(rows, loop.create_future())
        self._pending.append(request)
        self.appends += 1
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return await request.future

    def send_appends_to(self, client: AppendClient | None) -> None:
        """``--workers``: store appends through another process's writer (``client``), and here
        only while it cannot be reached; ``None`` goes back to storing here. Set before
        :meth:`open`, the queue builds no dedupe index until it first stores here."""
        self._shared = client

    async def _index_for_local_appends(self) -> None:
        """Storing here after another process did (it cannot be reached): build the dedupe
        index first, outside the write turn. A process that sends its appends elsewhere keeps
        none (tens of MiB at a full window, and indexing every id the other process stores)."""
        if self._dedupe is not None:
            return
        if self._index_building is None:
            self._index_building = asyncio.Lock()
        async with self._index_building:
            if self._dedupe is None:
                await self._unlocked(self._build_index)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            # The writer thread drains what is parked, commit after commit (``_drain``); an
            # append parked after its last look is seen here, on the loop, and drained next.
            while self._pending:
                assert self._writer is not None
                await loop.run_in_executor(self._writer, self._drain, loop)
        finally:
            self._flusher = None

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """Writer thread: commit the parked appends, one group after another, back to back.

        The next group starts as soon as a commit ends, with whatever parked meanwhile, rather
        than after a round trip through a busy event loop (which left the writer idle while
        requests waited). Each group's outcome is handed to the loop. Other writes (settles,
        collection) queue behind this job: once one waits, the drain stops after the commit in
        progress and ``_flush`` submits it again behind them.
        """
        pending = self._pending
        while pending:
            batch: list[_AppendRequest] = []
            count = 0
            while pending and (not batch or count < MAX_EVENTS_PER_COMMIT):
                request = pending.popleft()
                batch.append(request)
                count += len(request.rows)
            try:
                with self._turn():
                    self._write_appends(batch)
            except Exception as exc:
                loop.call_soon_threadsafe(self._appended, batch, _as_queue_error(exc, self.path))
            else:
                loop.call_soon_threadsafe(self._appended, batch, None)
            self._trim_now_and_then()
            if self._writes_waiting:
                return

    def _trim_now_and_then(self) -> None:
        """Writer thread: at most every :data:`_TRIM_INTERVAL` seconds, give the C heap's free
        pages back. Event rows over 512 bytes live in glibc's per-thread arenas between the
        request and the commit; without this the freed space stayed in the process (a full
        window's daemon grew from 93 to 150 MiB over a 1 M-event backlog, bench/backlog.py)."""
        now = time.monotonic()
        if now - self._last_trim >= _TRIM_INTERVAL:
            self._last_trim = now
            release_free_memory()

    def _appended(self, batch: list[_AppendRequest], error: QueueError | None) -> None:
        """Loop side of ``_drain``: answer the group's requests."""
        for request in batch:
            if request.future.done():
                continue
            if error is not None:
                request.future.set_exception(error)
            else:
                assert request.result is not None
                request.future.set_result(request.result)
        if error is None:
            self._wake()

    def _write_appends(self, batch: list[_AppendRequest]) -> None:
        conn = self._conn_w()
        now = self._clock()
        index = self._index()
        known, self._known = self._known, None
        if known is not None and not self._prune_due(now):
            try:
                self._known = self._append_in_one_step(conn, batch, now, index, known)
            except BaseException as exc:
                for request in batch:
                    request.result = None
                if not isinstance(exc, onestep.Changed):
                    raise
            else:
                self.commits += 1
                return
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Under the write lock: ids other processes (``--workers``) committed since the
            # last look are in the index before any of this batch is decided.
            edges = self._catch_up(conn, index)
            event_rows, new_ids = self._decide(conn, batch, index, now)
            last = edges.events
            if event_rows:
                last = _insert_events(conn, now, event_rows, edges.events + 1)
            first = high = max(edges.counter, index.last)
            low = edges.low
            if new_ids:
                first += 1
                # Arrival order, explicit ids: the rows land at the log's right edge, and the
                # index learns exactly which rowid holds which id.
                conn.execute(
                    "INSERT INTO dedupe (id, message_id, seen_at)"
                    " SELECT ?1 + key, value, ?2 FROM json_each(?3)",
                    (first, now, orjson.dumps(new_ids).decode()),
                )
                high = first + len(new_ids) - 1
                low = self._prune_dedupe(conn, now, first if edges.low is None else edges.low, high)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            for request in batch:
                request.result = None
            raise
        if new_ids:
            # Only once committed: a failed transaction leaves no id behind in memory.
            index.add_many(first, new_ids)
            index.expire(low)
        self._last_seq = last
        self._known = onestep.Known(last, high, low)
        self.commits += 1

    def _append_in_one_step(
        self,
        conn: sqlite3.Connection,
        batch: list[_AppendRequest],
        now: float,
        index: DedupeIndex,
        known: onestep.Known,
    ) -> onestep.Known:
        """The group commit as one statement (:mod:`._sqlite_onestep`), for a writer that knows
        the file as its last commit left it; returns what this commit leaves. Raises
        :class:`~._sqlite_onestep.Changed` (nothing written) when another writer was there."""
        event_rows, new_ids = self._decide(conn, batch, index, now)
        high, low, cap_low = known.ids, known.low, 0
        if new_ids:
            first = known.ids + 1
            high = known.ids + len(new_ids)
            low = first if low is None else low
            capped = self._capped_low(low, high)
            if capped is not None:
                low = cap_low = capped
        onestep.append(conn, now, event_rows, new_ids, known, cap_low)
        if new_ids:
            index.add_many(first, new_ids)
            index.expire(low)
        self._last_seq = last = known.events + len(event_rows)
        return onestep.Known(last, high, low)

    def _decide(
        self, conn: sqlite3.Connection, batch: list[_AppendRequest], index: DedupeIndex, now: float
    ) -> tuple[list[bytes], list[str]]:
        """Which rows of ``batch`` to store and which ids are new (each request's
        :class:`AppendResult` is set); an id the index may hold is checked in the log."""
        cutoff = now - self.dedupe_window
        seen: set[str] = set()
        lookup = index.lookup
        event_rows: list[bytes] = []
        new_ids: list[str] = []
        for request in batch:
            stored = duplicates = 0
            for mid, data in request.rows:
                if mid is not None:
                    if mid in seen or (
                        (rowids := lookup(mid)) and _seen_in_log(conn, mid, rowids, cutoff)
                    ):
                        duplicates += 1
                        continue
                    seen.add(mid)
                    new_ids.append(mid)
                event_rows.append(data)
                stored += 1
            request.result = AppendResult(stored, duplicates)
        return event_rows, new_ids

    def _index(self) -> DedupeIndex:
        if self._dedupe is None:
            raise QueueError(f"sqlite queue {self.path}: not open")
        return self._dedupe

    @staticmethod
    def _catch_up(conn: sqlite3.Connection, index: DedupeIndex) -> _Edges:
        """Index the log rows above ``index.last`` (other processes' ids; every row at open),
        in one statement per chunk returning one row (see ``_insert_events``). The first
        chunk's row also carries the dedupe log's lowest rowid and both tables'
        ``AUTOINCREMENT`` counters, so a group commit needs no statement of its own for
        them."""
        total = 0
        edges: _Edges | None = None
        while True:
            (ids, mids, low, counter, events) = conn.execute(
                "SELECT json_group_array(id), json_group_array(message_id),"
                " (SELECT min(id) FROM dedupe),"
                " (SELECT seq FROM sqlite_sequence WHERE name = 'dedupe'),"
                # The events' counter, or their highest seq if that is higher (a file whose
                # sqlite_sequence row was lost): explicit seqs above both never collide.
                " max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),"
                "     coalesce((SELECT max(seq) FROM events), 0)) FROM"
                " (SELECT id, message_id FROM dedupe WHERE id > ? ORDER BY id LIMIT ?)",
                (index.last, _CATCH_UP_CHUNK),
            ).fetchone()
            if edges is None:
                edges = _Edges(low, int(counter or 0), int(events or 0), 0)
            rowids = orjson.loads(ids)
            if not rowids:
                break
            index.add_rows(rowids, orjson.loads(mids))
            total += len(rowids)
            if len(rowids) < _CATCH_UP_CHUNK:
                break
        if total:
            index.expire(index.last + 1 if edges.low is None else int(edges.low))
        edges.indexed = total
        return edges

    def _prune_due(self, now: float) -> bool:
        """Whether the age limit is due again (at most every minute) on the next commit."""
        return now - self._last_prune >= min(60.0, self.dedupe_window / 4)

    def _capped_low(self, low: int, high: int) -> int | None:
        """The log's lowest rowid once the cap applies to rowids ``low`` to ``high``, or
        ``None`` when they fit. Ids grow with insertion, so the newest ``dedupe_max`` ids are
        a rowid range: the cap deletes whatever is below it."""
        return high - self.dedupe_max + 1 if high - low + 1 > self.dedupe_max else None

    def _prune_dedupe(self, conn: sqlite3.Connection, now: float, low: int, high: int) -> int:
        """Apply the cap and (at most every minute) the age limit to the log whose rowids run
        from ``low`` to ``high`` (known to the caller: no statement reads them); returns the
        log's lowest rowid left (the index drops what is below it once the transaction
        committed)."""
        capped = self._capped_low(low, high)
        if capped is not None:
            low = capped
            conn.execute("DELETE FROM dedupe WHERE id < ?", (low,))
        # Age: from the oldest rows on, a chunk at a time; correctness never depends on it
        # (lookups compare seen_at), it only bounds the log and the index.
        if not self._prune_due(now):
            return int(low)
        self._last_prune = now
        cutoff = now - self.dedupe_window
        while True:
            deleted = conn.execute(
                "DELETE FROM dedupe WHERE id IN (SELECT id FROM dedupe ORDER BY id LIMIT ?)"
                " AND seen_at < ?",
                (_PRUNE_CHUNK, cutoff),
            ).rowcount
            if deleted < _PRUNE_CHUNK:
                break
        (low,) = conn.execute("SELECT min(id) FROM dedupe").fetchone()
        return 0 if low is None else int(low)

    # -----------------------------------------------------------------------------------------
    # Fetch and settle

    async def fetch(self, destination: str, limit: int, now: float) -> list[QueuedEvent]:
        """Due retries (oldest first), then new events in order; none already in flight."""
        return await self._fetch(destination, limit, now, stored=False)

    async def fetch_stored(self, destination: str, limit: int, now: float) -> list[QueuedEvent]:
        """:meth:`fetch` with the new events as :class:`~crossdock.queue.StoredEvent`: their
        bytes are split from one aggregate in SQLite (no JSON decoding in Python, which holds
        the GIL the event loop needs), their messageId read by SQLite's ``json_extract``."""
        return await self._fetch(destination, limit, now, stored=True)

    async def _fetch(
        self, destination: str, limit: int, now: float, *, stored: bool
    ) -> list[QueuedEvent]:
        cursor = self._cursor(destination)
        if limit <= 0:
            return []
        async with cursor.lock:
            retries, new, read_pos = await self._read(
                self._read_fetch,
                destination,
                limit,
                now,
                cursor.read_pos,
                set(cursor.inflight_retry),
                cursor.skip,
                stored,
            )
            cursor.hand_out_retries([(q.seq, q.enqueued_at) for q in retries])
            cursor.hand_out_new([q.seq for q in new], [q.enqueued_at or 0.0 for q in new], read_pos)
        return retries + new

    def _read_fetch(
        self,
        destination: str,
        limit: int,
        now: float,
        read_pos: int,
        inflight_retry: set[int],
        skip: set[int],
        stored: bool = False,
    ) -> tuple[list[QueuedEvent], list[QueuedEvent], int]:
        # One step per query (``_sqlite_steps``): row by row, this thread waited for the GIL
        # once per event while the event loop was busy.
        conn = self._conn_r()
        retries: list[QueuedEvent] = []
        seqs, events, attempts, first_attempts, enqueued = read_columns(
            conn, _FETCH_RETRIES, (destination, now, limit + len(inflight_retry)), 5
        )
        for i, seq in enumerate(seqs):
            if seq in inflight_retry:
                continue
            retries.append(QueuedEvent(seq, events[i], attempts[i], first_attempts[i], enqueued[i]))
            if len(retries) >= limit:
                break
        new: list[QueuedEvent] = []
        wanted = limit - len(retries)
        while wanted > 0:
            # In chunks: each aggregate is held whole in SQLite and again in Python.
            asked = min(wanted, _FETCH_CHUNK)
            chunk: list[QueuedEvent]
            if stored:
                chunk = read_stored(conn, _FETCH_NEW_STORED, (read_pos, asked))
            else:
                seqs, events, enqueued = read_columns(conn, _FETCH_NEW, (read_pos, asked), 3)
                chunk = list(map(_new_event, seqs, events, enqueued))
            if not chunk:
                break
            read_pos = chunk[-1].seq
            new.extend([q for q in chunk if q.seq not in skip] if skip else chunk)
            if len(chunk) < asked:
                break  # nothing more stored
            wanted = limit - len(retries) - len(new)
        return retries, new, read_pos

    async def settle(
        self,
        destination: str,
        done: Sequence[int],
        retries: Sequence[Retry] = (),
        dead: Sequence[DeadLetter] = (),
    ) -> None:
        """Record outcomes in one transaction and advance the durable position."""
        cursor = self._cursor(destination)
        seqs = {*done, *(r.seq for r in retries), *(d.seq for d in dead)}
        if not seqs:
            return
        try:
            retry_rows = [
                (
                    destination,
                    r.seq,
                    _dumps(r.event),
                    cursor.enqueued_at(r.seq),
                    r.attempts,
                    r.first_attempt_at,
                    r.next_at,
                    r.reason,
                    r.hold_key,
                )
                for r in retries
            ]
            failed_at = self._clock()
            dead_rows = [
                (
                    destination,
                    d.seq,
                    _dumps(d.event),
                    cursor.enqueued_at(d.seq),
                    d.reason,
                    d.status,
                    d.body,
                    d.attempts,
                    failed_at,
                )
                for d in dead
            ]
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise QueueError(f"sqlite queue: event cannot be stored as JSON: {exc}") from exc
        # Group settle: settles that arrive while one of this destination's commits runs are
        # written together by the next one (a commit waits behind ingest's group commits, an
        # fsync each; one at a time per batch left delivery far behind ingest).
        group = self._settling.get(destination)
        if group is None:
            group = self._settling[destination] = _SettleGroup()
        future = asyncio.get_running_loop().create_future()
        parked = group.parked
        parked.seqs |= seqs
        parked.done.extend(done)
        parked.retry_rows.extend(retry_rows)
        parked.dead_rows.extend(dead_rows)
        parked.futures.append(future)
        if group.flusher is None:
            group.flusher = asyncio.get_running_loop().create_task(
                self._flush_settles(destination, group)
            )
        await future

    async def _flush_settles(self, destination: str, group: _SettleGroup) -> None:
        try:
            while group.parked.futures:
                settles, group.parked = group.parked, _Settles()
                try:
                    async with self._cursor(destination).settle_lock:
                        cursor = self._cursor(destination)  # a rewind may have replaced it
                        plan = cursor.plan(settles.seqs)
                        await self._write(
                            self._write_settle,
                            destination,
                            cursor.durable,
                            plan,
                            settles.done,
                            settles.retry_rows,
                            settles.dead_rows,
                        )
                        cursor.apply(plan)
                except Exception as exc:
                    for future in settles.futures:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for future in settles.futures:
                    if not future.done():
                        future.set_result(None)
                self._collect_soon()
        finally:
            group.flusher = None

    def _write_settle(
        self,
        destination: str,
        durable: int,
        plan: SettlePlan,
        done: list[int],
        retry_rows: list[tuple[Any, ...]],
        dead_rows: list[tuple[Any, ...]],
    ) -> None:
        conn = self._conn_w()
        # A retry settled as done or dead leaves the retry table. Keys go in as one JSON
        # array (one step, see ``_sqlite_steps``): with concurrent batches, most of a batch
        # lands beyond the durable position.
        gone = [s for s in done if s in plan.retried] + [row[1] for row in dead_rows]
        advanced = plan.durable if plan.durable > durable else None
        if not retry_rows and not dead_rows:
            # Delivered: the common settle, one statement (``_sqlite_onestep``).
            onestep.settle(conn, destination, gone, list(plan.beyond), advanced)
            return
        with _transaction(conn):
            if retry_rows:
                insert_rows(conn, _INSERT_RETRIES, _RETRY_ROW, retry_rows, _UPSERT_RETRIES)
            if dead_rows:
                insert_rows(conn, _INSERT_DEAD, _DEAD_ROW, dead_rows)
            onestep.settle(conn, destination, gone, list(plan.beyond), advanced)

    async def release(self, destination: str, now: float) -> int:
        """Make the destination's retries due later than ``now`` due at ``now``: one statement
        over the ``(destination, next_at)`` index; returns how many moved."""
        self._cursor(destination)
        return await self._write(self._write_release, destination, now)

    def _write_release(self, destination: str, now: float) -> int:
        conn = self._conn_w()
        with _transaction(conn):
            count = conn.execute(
                "UPDATE retries SET next_at = ? WHERE destination = ? AND next_at > ?",
                (now, destination, now),
            ).rowcount
        return count

    async def collect(self) -> int:
        """Delete events every registered destination has passed; returns how many.

        Runs by itself after settles (:meth:`_collect_soon`); exposed for tests and maintenance.
        """
        self._check_open()
        return await self._collect_in_steps()

    def _collect_soon(self) -> None:
        """After a settle: start a collection in the background, at most every
        :data:`_GC_INTERVAL` seconds and one at a time."""
        if self._collector is not None or time.monotonic() - self._last_gc < _GC_INTERVAL:
            return
        self._last_gc = time.monotonic()
        self._collector = asyncio.get_running_loop().create_task(self._collect_in_background())

    async def _collect_in_background(self) -> None:
        try:
            await self._collect_in_steps()
        except QueueError as exc:
            # Housekeeping: a later settle starts another; nothing is lost meanwhile.
            log.warning("sqlite queue: collection failed", extra={"error": str(exc)})
        finally:
            self._collector = None

    async def _collect_in_steps(self) -> int:
        """Delete passed events, then give free pages back, in writer jobs of bounded size so
        that ingest's group commits run between them (one job deleting 50,000 rows and
        vacuuming 16 MiB held every append up for a quarter of a second); the WAL checkpoint
        that lets the file shrink runs on a reader connection, beside the writer."""
        self._last_gc = time.monotonic()
        total = 0
        while self._state == "open":
            deleted = await self._write(self._collect_step)
            total += deleted
            if deleted < _GC_STEP:
                break
        freed = 0
        while self._state == "open" and freed < _VACUUM_BYTES:
            freed_now = await self._write(self._vacuum_step, freed == 0)
            if not freed_now:
                break
            freed += freed_now
        if freed and self._state == "open":
            await self._read(self._checkpoint_on_reader)
        return total

    def _checkpoint_on_reader(self) -> None:
        _checkpoint(self._conn_r())

    def _collect_step(self) -> int:
        """Writer thread: delete up to :data:`_GC_STEP` events below every registered
        destination's position, in one transaction; returns how many."""
        conn = self._conn_w()
        dests = self._registered
        if not dests:
            return 0
        marks = ",".join("?" * len(dests))
        (floor,) = conn.execute(
            f"SELECT min(position) FROM destinations WHERE id IN ({marks})", dests
        ).fetchone()
        if floor is None:
            return 0
        with _transaction(conn):
            deleted = conn.execute(
                "DELETE FROM events WHERE seq IN"
                " (SELECT seq FROM events WHERE seq <= ? ORDER BY seq LIMIT ?)",
                (floor, _GC_STEP),
            ).rowcount
        self._trim_now_and_then()
        return int(deleted)

    def _vacuum_step(self, first: bool) -> int:
        """Writer thread: give up to :data:`_VACUUM_STEP` bytes of free pages back to the file
        system (``auto_vacuum = INCREMENTAL`` files only; the first step of a collection only
        once :data:`_VACUUM_MIN_FREE` bytes are free); returns how many bytes it gave back."""
        return _shrink(self._conn_w(), _VACUUM_MIN_FREE if first else 1, _VACUUM_STEP)

    # -----------------------------------------------------------------------------------------
    # Waiting, holds, stats

    async def wait(self, destination: str, timeout: float) -> None:
        """Return when an append may have brought events for ``destination``, or on timeout."""
        cursor = self._cursors.get(destination)
        if self._state != "open" or (cursor is not None and self._last_seq > cursor.read_pos):
            return
        event = self._notify
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    def _wake(self) -> None:
        self._notify.set()
        self._notify = asyncio.Event()

    async def held_keys(self, destination: str) -> dict[str, int]:
        """hold key → number of the destination's retry rows with that key."""
        self._check_open()
        return await self._read(self._read_held_keys, destination)

    def _read_held_keys(self, destination: str) -> dict[str, int]:
        rows = self._conn_r().execute(
            "SELECT hold_key, count(*) FROM retries WHERE destination = ? AND hold_key IS NOT NULL"
            " GROUP BY hold_key",
            (destination,),
        )
        return dict(rows.fetchall())

    async def stats(self, destination: str) -> QueueStats:
        """The destination's backlog, from indexed lookups and seq arithmetic."""
        self._check_open()
        return await self._read(self._read_stats, destination)

    def _read_stats(self, destination: str) -> QueueStats:
        conn = self._conn_r()
        conn.execute("BEGIN")
        try:
            row = conn.execute(
                "SELECT position FROM destinations WHERE id = ?", (destination,)
            ).fetchone()
            last = _last_seq(conn)
            position = last if row is None else row[0]
            (beyond,) = conn.execute(
                "SELECT count(*) FROM settled WHERE destination = ?", (destination,)
            ).fetchone()
            pending = max(0, last - position - beyond)
            retrying, oldest_retry = conn.execute(
                "SELECT count(*), min(enqueued_at) FROM retries WHERE destination = ?",
                (destination,),
            ).fetchone()
            (dead,) = conn.execute(
                "SELECT count(*) FROM dead WHERE destination = ?", (destination,)
            ).fetchone()
            oldest_new = None
            if pending:
                found = conn.execute(
                    "SELECT enqueued_at FROM events WHERE seq > ? AND seq NOT IN"
                    " (SELECT seq FROM settled WHERE destination = ?) ORDER BY seq LIMIT 1",
                    (position, destination),
                ).fetchone()
                oldest_new = None if found is None else found[0]
        finally:
            conn.execute("COMMIT")
        times = [t for t in (oldest_new, oldest_retry) if t is not None]
        return QueueStats(
            pending=pending, retrying=retrying, dead=dead, oldest_at=min(times) if times else None
        )

    # -----------------------------------------------------------------------------------------
    # Dead letters

    async def dlq_list(
        self, destination: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[DeadLetterEntry]:
        """Dead-letter entries, oldest first, of one destination or all."""
        self._check_open()
        return await self._read(self._read_dlq, destination, limit, offset)

    def _read_dlq(self, destination: str | None, limit: int, offset: int) -> list[DeadLetterEntry]:
        where, params = _dead_filter(destination, None)
        rows = self._conn_r().execute(
            "SELECT id, destination, data, reason, status, body, attempts, failed_at FROM dead"
            f" WHERE {where} ORDER BY id LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [
            DeadLetterEntry(
                id=i,
                destination=dest,
                event=orjson.loads(data),
                reason=reason,
                status=status,
                body=body,
                attempts=attempts,
                failed_at=failed_at,
            )
            for i, dest, data, reason, status, body, attempts, failed_at in rows
        ]

    async def dlq_replay(
        self, destination: str | None = None, ids: Sequence[int] | None = None
    ) -> int:
        """Move dead letters back to the retry table, due now with attempts reset."""
        self._check_open()
        return await self._write(self._write_dlq_replay, destination, ids)

    def _write_dlq_replay(self, destination: str | None, ids: Sequence[int] | None) -> int:
        where, params = _dead_filter(destination, ids)
        conn = self._conn_w()
        with _transaction(conn):
            conn.execute(
                "INSERT INTO retries (destination, seq, data, enqueued_at, attempts,"
                " first_attempt_at, next_at, reason, hold_key)"
                " SELECT destination, seq, data, enqueued_at, 0, NULL, ?, 'replay', NULL"
                f" FROM dead WHERE {where} ORDER BY id"
                " ON CONFLICT (destination, seq) DO UPDATE SET data = excluded.data,"
                " attempts = 0, first_attempt_at = NULL, next_at = excluded.next_at,"
                " reason = excluded.reason, hold_key = NULL",
                (self._clock(), *params),
            )
            count = conn.execute(f"DELETE FROM dead WHERE {where}", params).rowcount
        return count

    async def dlq_purge(
        self, destination: str | None = None, ids: Sequence[int] | None = None
    ) -> int:
        """Delete dead letters for good."""
        self._check_open()
        return await self._write(self._write_dlq_purge, destination, ids)

    def _write_dlq_purge(self, destination: str | None, ids: Sequence[int] | None) -> int:
        where, params = _dead_filter(destination, ids)
        conn = self._conn_w()
        with _transaction(conn):
            count = conn.execute(f"DELETE FROM dead WHERE {where}", params).rowcount
        return count

    # -----------------------------------------------------------------------------------------
    # Writer-thread helpers

    def _open_storage(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(str(self.path), synchronous=self.synchronous, writer=True)
        try:
            ensure_schema(conn, str(self.path))
            onestep.install(conn)
            last = _last_seq(conn)
        except BaseException:
            conn.close()
            raise
        self._wconn = conn
        return last

    def _build_index(self) -> None:
        """Writer thread, without the write turn: index the dedupe log as it is now."""
        index = DedupeIndex(self.dedupe_max)
        if self._catch_up(self._conn_w(), index).indexed:
            release_free_memory()
        self._dedupe = index

    def _register(self, destinations: list[str]) -> dict[str, tuple[int, set[int]]]:
        conn = self._conn_w()
        now = self._clock()
        with _transaction(conn):
            end = _last_seq(conn)
            conn.executemany(
                "INSERT OR IGNORE INTO destinations (id, position, created_at) VALUES (?, ?, ?)",
                [(d, end, now) for d in destinations],
            )
            loaded: dict[str, tuple[int, set[int]]] = {}
            for dest in destinations:
                (position,) = conn.execute(
                    "SELECT position FROM destinations WHERE id = ?", (dest,)
                ).fetchone()
                skip = {
                    s
                    for (s,) in conn.execute(
                        "SELECT seq FROM settled WHERE destination = ? AND seq > ?",
                        (dest, position),
                    )
                }
                loaded[dest] = (position, skip)
        return loaded

    def _write_ping(self) -> None:
        conn = self._conn_w()
        with _transaction(conn):
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_ping', ?)",
                (repr(self._clock()),),
            )

    def _checkpoint_and_close(self) -> None:
        conn = self._wconn
        if conn is None:
            return
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _conn_w(self) -> sqlite3.Connection:
        if self._wconn is None:
            raise QueueError(f"sqlite queue {self.path}: not open")
        return self._wconn

    def _conn_r(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(str(self.path), synchronous=self.synchronous, writer=False)
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._reader_conns_lock:
                self._reader_conns.append(conn)
        return conn

    # -----------------------------------------------------------------------------------------
    # Loop-side helpers

    def _check_open(self) -> None:
        if self._state != "open":
            raise QueueError(f"sqlite queue {self.path}: not open")

    def _cursor(self, destination: str) -> Cursor:
        self._check_open()
        cursor = self._cursors.get(destination)
        if cursor is None:
            raise QueueError(f"sqlite queue: destination {destination!r} is not registered")
        return cursor

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        if self._writer is None:
            raise QueueError(f"sqlite queue {self.path}: not open")
        self._writes_waiting += 1  # read by ``_drain`` in the writer thread
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._writer, self._locked, fn, *args
            )
        except Exception as exc:
            raise _as_queue_error(exc, self.path) from exc
        finally:
            self._writes_waiting -= 1

    async def _unlocked(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the writer thread without taking the cross-process write turn (for
        work that only reads, such as building the dedupe index at open)."""
        return await self._run_on(self._writer, fn, *args)

    def _locked(self, fn: Callable[..., T], *args: Any) -> T:
        """Writer thread: run ``fn`` holding the cross-process write turn (``--workers``)."""
        with self._turn():
            return fn(*args)

    def _turn(self) -> WriteLock:
        if self._write_lock is None:
            raise QueueError(f"sqlite queue {self.path}: not open")
        return self._write_lock

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._run_on(self._readers, fn, *args)

    async def _run_on(
        self, executor: ThreadPoolExecutor | None, fn: Callable[..., T], *args: Any
    ) -> T:
        if executor is None:
            raise QueueError(f"sqlite queue {self.path}: not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
        except Exception as exc:
            raise _as_queue_error(exc, self.path) from exc


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc ``malloc_trim``; nothing
    elsewhere). Rebuilding the index of a full window reads 5 M ids through temporary objects;
    freed, they stayed in the process's heap (29 MiB of RSS measured after opening a full
    window), against the daemon's 150 MiB bound under a backlog."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 256 * 1024
"""Allocations from this size up get their own mapping, given back when freed."""


@functools.cache
def keep_large_buffers_mapped() -> bool:
    """Fix glibc's mmap threshold (``mallopt(M_MMAP_THRESHOLD)``; nothing elsewhere), once
    per process; whether it was set.

    glibc raises the threshold each time a mapped block is freed, up to 32 MiB, so after the
    first delivery fetches (a batch read as one JSON array of up to megabytes) those buffers
    came from the threads' heaps instead and stayed there: a daemon draining a 1 M backlog on a
    full window grew to 150.2 MiB, against 139.9 with the threshold fixed (``bench/backlog.py``).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None


def _shrink(conn: sqlite3.Connection, min_free: int, most: int) -> int:
    """Give up to ``most`` bytes of free pages back to the file system when at least
    ``min_free`` bytes are free (``auto_vacuum = INCREMENTAL`` files only); returns how many
    bytes it gave back. In bytes, because files differ in page size
    (:data:`._sqlite_schema.PAGE_SIZE`)."""
    (mode,) = conn.execute("PRAGMA auto_vacuum").fetchone()
    (free,) = conn.execute("PRAGMA freelist_count").fetchone()
    (page,) = conn.execute("PRAGMA page_size").fetchone()
    if mode != 2 or free == 0 or free * page < min_free:
        return 0
    # The pragma frees one page per step, and execute() steps once: executescript() runs it
    # to completion (sqlite3_exec).
    conn.executescript(f"PRAGMA incremental_vacuum({max(1, most // page)});")
    (left,) = conn.execute("PRAGMA freelist_count").fetchone()
    return (int(free) - int(left)) * int(page)


def _checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database file without waiting for anyone (``PASSIVE``): after a
    vacuum, this is what makes the file shrink. Runs on a reader connection."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


_INSERT_RETRIES = (
    "INSERT INTO retries (destination, seq, data, enqueued_at, attempts, first_attempt_at,"
    " next_at, reason, hold_key)"
)
_RETRY_ROW = "({1}, {2}, {3}, {4}, {5}, {6}, {7}, {8}, {9})"
_UPSERT_RETRIES = (
    "ON CONFLICT (destination, seq) DO UPDATE SET data = excluded.data,"
    " attempts = excluded.attempts, first_attempt_at = excluded.first_attempt_at,"
    " next_at = excluded.next_at, reason = excluded.reason, hold_key = excluded.hold_key,"
    " enqueued_at = coalesce(retries.enqueued_at, excluded.enqueued_at)"
)
_INSERT_DEAD = (
    "INSERT INTO dead (destination, seq, data, enqueued_at, reason, status, body, attempts,"
    " failed_at)"
)
_DEAD_ROW = (
    "({1}, {2}, {3}, coalesce({4}, (SELECT enqueued_at FROM retries WHERE destination = {1}"
    " AND seq = {2})), {5}, {6}, {7}, {8}, {9})"
)
_FETCH_NEW = (
    f"SELECT {json_list('seq')}, {json_list('data')}, {json_list(floats('enqueued_at'))}"
    " FROM (SELECT seq, enqueued_at, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?)"
)
_FETCH_NEW_STORED = (
    f"SELECT {json_list('seq')}, {json_list('length(CAST(data AS BLOB))')},"
    f" {json_list(floats('enqueued_at'))}, {json_list(MESSAGE_ID_JSON)},"
    " CAST(group_concat(data, '') AS BLOB)"
    " FROM (SELECT seq, enqueued_at, data FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2)"
)
_FETCH_RETRIES = (
    f"SELECT {json_list('seq')}, {json_list('data')}, {json_list('attempts')},"
    f" {json_list(floats('first_attempt_at'))}, {json_list(floats('enqueued_at'))}"
    " FROM (SELECT seq, data, attempts, first_attempt_at, enqueued_at FROM retries"
    " WHERE destination = ? AND next_at <= ? ORDER BY next_at, seq LIMIT ?)"
)


def _new_event(seq: int, event: Event, enqueued_at: float) -> QueuedEvent:
    return QueuedEvent(seq, event, 0, None, enqueued_at)


def _insert_events(conn: sqlite3.Connection, now: float, rows: list[bytes], first: int) -> int:
    """Append ``rows`` (at least one) in arrival order as seqs ``first``, ``first + 1``, …
    (``first`` is above the table's ``AUTOINCREMENT`` counter); returns the last seq.

    One statement for the whole group: the rows go in as one blob, which SQLite cuts with
    ``substr`` at offsets and lengths packed into one JSON array of integers, each at its
    explicit seq (so the order does not rest on the order SQLite produces the rows in). Each
    statement of the writer thread gives the GIL up and must wait for the busy event loop to
    hand it back (1 to 3 ms each under load, ``bench/README.md``), so a group commit takes as
    few as it can; this costs about the CPU of multi-row ``VALUES`` chunks (one per set bit
    of the count) and needs no statement compiled per count.
    """
    packed = onestep.pack(rows)
    if packed is None:
        return _insert_events_chunked(conn, now, rows)
    blob, offsets = packed
    conn.execute(onestep.INSERT_PACKED, (now, blob, offsets, first))
    return first + len(rows) - 1


def _insert_events_chunked(conn: sqlite3.Connection, now: float, rows: list[bytes]) -> int:
    # Multi-row VALUES in chunks of power-of-two sizes, so a few prepared statements (the
    # connection's cache) serve every count.
    last = 0
    for start, size in power_of_two_chunks(len(rows), _INSERT_CHUNK):
        last = conn.execute(_insert_sql(size), (now, *rows[start : start + size])).lastrowid
    return int(last)


@functools.cache
def _insert_sql(count: int) -> str:
    values = ",".join(f"(?1, ?{i})" for i in range(2, count + 2))
    return f"INSERT INTO events (enqueued_at, data) VALUES {values}"


@define(slots=True)
class _Edges:
    """What :meth:`SqliteQueue._catch_up` read besides the ids: the dedupe log's lowest rowid
    (``None`` when empty) and ``AUTOINCREMENT`` counter, the events table's counter (the
    highest seq ever given), and how many log rows it indexed."""

    low: int | None
    counter: int
    events: int
    indexed: int


def _seen_in_log(conn: sqlite3.Connection, mid: str, rowids: list[int], cutoff: float) -> bool:
    """Whether one of the log rows the index points at holds ``mid`` seen since ``cutoff``
    (the index compares 32-bit tags; this compares the full id)."""
    for rowid in rowids:
        row = conn.execute(
            "SELECT message_id, seen_at FROM dedupe WHERE id = ?", (rowid,)
        ).fetchone()
        if row is not None and row[0] == mid and row[1] >= cutoff:
            return True
    return False


def _last_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return 0 if row is None else int(row[0])


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception (then re-raised)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def _dead_filter(destination: str | None, ids: Iterable[int] | None) -> tuple[str, tuple[Any, ...]]:
    clauses = ["1"]
    params: list[Any] = []
    if destination is not None:
        clauses.append("destination = ?")
        params.append(destination)
    if ids is not None:
        clauses.append("id IN (SELECT value FROM json_each(?))")
        params.append(orjson.dumps([int(i) for i in ids]).decode())
    return " AND ".join(clauses), tuple(params)


def _as_queue_error(exc: BaseException, path: Path) -> QueueError:
    if isinstance(exc, QueueError):
        return exc
    return QueueError(f"sqlite queue {path}: {type(exc).__name__}: {exc}")
