"""The NATS JetStream queue backend, for several Crossdock instances sharing one queue.

Streams (``stream`` = ``crossdock`` by default; ``replicas`` and ``storage`` from ``[queue]``):

- ``crossdock`` (subject ``crossdock.events``, *interest* retention): every accepted event, one
  message each, with its ``messageId`` as ``Nats-Msg-Id``, so the server's duplicate window
  (``dedupe_window``) deduplicates across every instance. A message leaves the stream once every
  destination's consumer acknowledged it (that is the garbage collection).
- ``crossdock_retries`` (``crossdock.retries.<dest>.<hold key>``, *work-queue* retention): one
  record per event waiting for another attempt (event, attempts, first failure, due time,
  reason). Acknowledged = gone, so the stream's per-subject counts *are* the retry table:
  ``stats().retrying`` and ``held_keys`` read them without scanning.
- ``crossdock_dlq`` (``crossdock.dlq.<dest>``, limits retention): dead letters; an entry's id
  is its stream sequence. Replay publishes a retry record (due now) and deletes the entry.

Per destination there are two durable pull consumers, ``<dest>`` on the events and
``<dest>`` on its retry subjects, shared by every instance: any instance delivers any
destination's events, and the server hands each message to one of them at a time.

Publish path. An append publishes every event of the request at once, pipelined (one
message per event, every publish acknowledgement awaited together), and answers only when all
acknowledgements are in. One message per event keeps what matters: the server deduplicates
each event by its own ``messageId`` and each event gets its own outcome (stored or
duplicate). Packing many events into one message would be faster on the wire (≈ 250 K events/s
against ≈ 33 K/s measured with 1,000 publishes in flight, ``shared/bench/README.md``) but the
duplicate window would then see request ids, not event ids, and one redelivered message would
re-deliver all its events. When a publish of a request fails the request fails (503 to the
sender) even if some of its events were stored: the sender retries the whole request and
the stored ones come back as duplicates, so nothing is half-stored *visibly*.

Acknowledgement. An event is acknowledged only when the destination settles it: delivered or
filtered (``+ACK``), scheduled for retry (the retry record's publish is acknowledged first, then
the event), or dead-lettered (likewise). The acknowledgements of one settle go out together and
the last one per consumer is a request: the server applies a consumer's acknowledgements in
order, so its answer confirms them all before ``settle`` returns. Messages handed to a worker
and not settled are kept alive with ``+WPI`` every ``ack_wait / 3``; if this instance dies they
come again, to any instance, once ``ack_wait`` has passed (duplicates, never losses). Retry
records are published with a ``Nats-Msg-Id`` naming the message they settle, so a settle retried
after a partial failure (or a redelivered event settled twice) does not create a second record.

Retry schedule. A record is delivered to a worker's fetch at once; if it is not due yet it is
``-NAK``-ed with the delay until ``next_at`` (at most :data:`RELEASE_LOOK`) and the server hands
it out again at that time. ``release`` (a destination recovered) makes the records written
before it due in this instance: since the server holds a NAK-ed record until its delay ends,
they come within ``RELEASE_LOOK`` seconds, not at once as on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from attrs import define

from crossdock.errors import QueueError
from crossdock.queue import (
    AppendResult,
    DeadLetter,
    DeadLetterEntry,
    EncodedEvent,
    QueuedEvent,
    QueueStats,
    Retry,
    StoredEvent,
    encode_rows,
)
from crossdock.queue.nats_publish import Publisher
from crossdock.queue.nats_pull import Puller, decode_key, decode_token, encode_key, encode_token
from crossdock.types import Event

__all__ = ["NatsQueue", "redact_url"]

log = logging.getLogger("crossdock.queue.nats")

STORAGES = ("file", "memory")
RETRY_POLL = 0.25
"""Seconds between looks at a destination's retry consumer when the last look found nothing
(retries become due on the server's clock; a worker's idle poll is about a second anyway)."""

RELEASE_LOOK = 30.0
"""Longest ``-NAK`` delay of a retry record not due yet: how late a released record comes."""

HOLD_LIMIT = 1800.0
"""Seconds a handed-out message is kept alive at most (a worker that lost track of it must not
hold it forever: after this the server redelivers it)."""

_RECORD_DUPLICATE_WINDOW = 600.0
_API_TIMEOUT = 10.0


def redact_url(url: str) -> str:
    """``url`` without user, password or token (for logs, errors and ``info()``)."""
    parts = []
    for one in url.split(","):
        split = urlsplit(one.strip())
        host = split.hostname or ""
        if split.port:
            host = f"{host}:{split.port}"
        parts.append(urlunsplit((split.scheme, host, split.path, "", "")))
    return ",".join(parts)


@define(slots=True)
class _Held:
    msg: Any
    kind: str  # "e" (events stream) or "r" (retry record)
    sseq: int  # the message's own stream sequence
    since: float  # time.monotonic() when handed out
    record: dict[str, Any] | None = None
    enqueued_at: float | None = None


@define
class _Dest:
    token: str
    events: Puller
    retries: Puller
    inflight: dict[int, _Held]
    lock: asyncio.Lock
    last_retry_look: float = float("-inf")
    retries_hint: bool = True
    batch: int = 100
    released_at: float = float("-inf")


class NatsQueue:
    """A :class:`~crossdock.queue.Queue` on NATS JetStream (see the module docstring).

    ``url`` may list several servers separated by commas and may carry credentials (never shown).
    ``dedupe_window`` is the events stream's duplicate window; ``ack_wait`` how long the server
    waits for an instance before handing its unsettled messages to another; ``max_ack_pending``
    bounds a destination's messages in flight across all instances.
    """

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        stream: str = "crossdock",
        replicas: int = 1,
        storage: str = "file",
        dedupe_window: float = 86400.0,
        ack_wait: float = 30.0,
        max_ack_pending: int = 20_000,
        publish_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        retry_poll: float = RETRY_POLL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if storage not in STORAGES:
            raise QueueError(f"nats queue: storage must be one of {', '.join(STORAGES)}")
        if not 1 <= replicas <= 5:
            raise QueueError("nats queue: replicas must be between 1 and 5")
        self.url = url
        self.stream = stream
        self.replicas = int(replicas)
        self.storage = storage
        self.dedupe_window = float(dedupe_window)
        self.ack_wait = float(ack_wait)
        self.max_ack_pending = int(max_ack_pending)
        self.publish_timeout = float(publish_timeout)
        self.connect_timeout = float(connect_timeout)
        self.retry_poll = float(retry_poll)
        self._clock = clock
        self.events_subject = f"{stream}.events"
        self.retries_stream = f"{stream}_retries"
        self.dlq_stream = f"{stream}_dlq"
        self._state = "new"
        self._open_lock: asyncio.Lock | None = None
        self._nc: Any = None
        self._js: Any = None
        self._jsm: Any = None
        self._dests: dict[str, _Dest] = {}
        self._appending = 0
        self._appends_done: asyncio.Event | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._publisher: Publisher | None = None

    # -----------------------------------------------------------------------------------------
    # Lifecycle

    def info(self) -> dict[str, Any]:
        """Backend facts for logs and metrics (the URL without credentials)."""
        return {"backend": "nats", "url": redact_url(self.url), "stream": self.stream}

    def _where(self) -> str:
        return f"nats queue {redact_url(self.url)} stream {self.stream!r}"

    async def open(self, destinations: Sequence[str]) -> None:
        """Connect, create or check the streams, and create or check each destination's two
        consumers (a new events consumer starts at the end of the stream)."""
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._state in ("closing", "closed"):
                raise QueueError(f"{self._where()}: closed")
            if self._state == "new":
                try:
                    await self._connect()
                    await self._ensure_streams()
                except QueueError:
                    await self._disconnect()
                    raise
                except Exception as exc:
                    await self._disconnect()
                    raise self._error(exc) from exc
                self._state = "open"
                self._appends_done = asyncio.Event()
                self._appends_done.set()
                self._keepalive = asyncio.create_task(self._keep_alive())
            for dest in dict.fromkeys(destinations):
                if dest not in self._dests:
                    try:
                        self._dests[dest] = await self._register(dest)
                    except QueueError:
                        raise
                    except Exception as exc:
                        raise self._error(exc) from exc

    async def rewind(self, destination: str) -> None:
        """``-NAK`` what this instance holds for ``destination``, so it comes again at once."""
        dest = self._dest(destination)
        held, dest.inflight = list(dest.inflight.values()), {}
        for h in held:
            with contextlib.suppress(Exception):
                await self._nc.publish(h.msg.reply, b"-NAK")

    async def _connect(self) -> None:
        try:
            import nats
        except ImportError as exc:  # pragma: no cover - the extra is part of dev installs
            raise QueueError(
                "nats queue: the nats client is not installed; pip install 'crossdock[nats]'"
            ) from exc

        async def on_error(exc: Exception) -> None:
            log.warning("nats connection error", extra={"error": f"{type(exc).__name__}"})

        async def on_disconnect() -> None:
            if self._state == "open":
                log.warning("nats disconnected; reconnecting", extra=self.info())

        async def on_reconnect() -> None:
            log.info("nats reconnected", extra=self.info())

        servers = [s.strip() for s in self.url.split(",") if s.strip()]
        try:
            self._nc = await nats.connect(
                servers,
                name="crossdock",
                connect_timeout=self.connect_timeout,
                allow_reconnect=True,
                # Bounded at start-up (an unreachable server must fail ``open``)...
                max_reconnect_attempts=2,
                reconnect_time_wait=0.5,
                # Subjects are built from escaped tokens; replies come from the server.
                skip_subject_validation=True,
                error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
            )
        except Exception as exc:
            raise QueueError(f"{self._where()}: cannot connect: {type(exc).__name__}") from exc
        # ... and unbounded once running: a restarting server must not stop the daemon.
        self._nc.options["max_reconnect_attempts"] = -1
        self._js = self._nc.jetstream(timeout=_API_TIMEOUT)
        self._jsm = self._nc.jsm(timeout=_API_TIMEOUT)
        self._publisher = Publisher(self._nc)
        await self._publisher.start()

    async def _ensure_streams(self) -> None:
        from nats.js.api import RetentionPolicy, StorageType, StreamConfig

        storage = StorageType.FILE if self.storage == "file" else StorageType.MEMORY
        wanted = [
            StreamConfig(
                name=self.stream,
                subjects=[self.events_subject],
                retention=RetentionPolicy.INTEREST,
                storage=storage,
                num_replicas=self.replicas,
                duplicate_window=self.dedupe_window,
            ),
            StreamConfig(
                name=self.retries_stream,
                subjects=[f"{self.stream}.retries.>"],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=storage,
                num_replicas=self.replicas,
                duplicate_window=_RECORD_DUPLICATE_WINDOW,
            ),
            StreamConfig(
                name=self.dlq_stream,
                subjects=[f"{self.stream}.dlq.>"],
                retention=RetentionPolicy.LIMITS,
                storage=storage,
                num_replicas=self.replicas,
                duplicate_window=_RECORD_DUPLICATE_WINDOW,
            ),
        ]
        for config in wanted:
            await self._ensure_stream(config)

    async def _ensure_stream(self, config: Any) -> None:
        from nats.js.errors import NotFoundError

        try:
            info = await self._jsm.stream_info(config.name)
        except NotFoundError:
            try:
                await self._jsm.add_stream(config)
                return
            except Exception as exc:
                # Another instance may have created it at the same moment: check it below.
                try:
                    info = await self._jsm.stream_info(config.name)
                except NotFoundError:
                    raise QueueError(
                        f"{self._where()}: cannot create stream {config.name!r} (replicas "
                        f"{config.num_replicas}, storage {_enum_value(config.storage)}): "
                        f"{getattr(exc, 'description', None) or exc}"
                    ) from exc
        have = info.config
        problems = []
        if list(have.subjects or []) != list(config.subjects):
            problems.append(f"subjects {have.subjects} (expected {config.subjects})")
        if _enum_value(have.retention) != _enum_value(config.retention):
            have_r, want_r = _enum_value(have.retention), _enum_value(config.retention)
            problems.append(f"retention {have_r} (expected {want_r})")
        if _enum_value(have.storage) != _enum_value(config.storage):
            problems.append(
                f"storage {_enum_value(have.storage)} but [queue] storage = "
                f"{_enum_value(config.storage)!r} (storage cannot change; use another stream name)"
            )
        if problems:
            raise QueueError(
                f"{self._where()}: stream {config.name!r} exists with " + "; ".join(problems)
            )
        changed = (have.num_replicas or 1) != config.num_replicas or abs(
            float(have.duplicate_window or 0) - float(config.duplicate_window)
        ) > 1e-3
        if changed:
            try:
                await self._jsm.update_stream(config)
            except Exception as exc:
                raise QueueError(
                    f"{self._where()}: stream {config.name!r} exists with replicas "
                    f"{have.num_replicas} and duplicate window {have.duplicate_window}s; updating "
                    f"it to the [queue] settings failed: {exc}"
                ) from exc

    async def _register(self, dest: str) -> _Dest:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        token = encode_token(dest)
        common = {
            "durable_name": token,
            "ack_policy": AckPolicy.EXPLICIT,
            "ack_wait": self.ack_wait,
            "max_deliver": -1,
        }
        events_config = ConsumerConfig(
            **common,
            deliver_policy=DeliverPolicy.NEW,
            filter_subject=self.events_subject,
            max_ack_pending=self.max_ack_pending,
            description=f"crossdock destination {dest}: events",
        )
        retries_config = ConsumerConfig(
            **common,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=f"{self.stream}.retries.{token}.>",
            # Records waiting for their due time are NAK-ed with a delay and stay pending.
            max_ack_pending=-1,
            description=f"crossdock destination {dest}: retries",
        )
        for stream, config in ((self.stream, events_config), (self.retries_stream, retries_config)):
            try:
                await self._jsm.add_consumer(stream, config)
            except Exception as exc:
                raise QueueError(
                    f"{self._where()}: consumer {token!r} of stream {stream!r} for destination "
                    f"{dest!r}: {exc}"
                ) from exc
        prefix = "$JS.API"
        events = Puller(self._nc, prefix, self.stream, token, read_ahead=True)
        retries = Puller(self._nc, prefix, self.retries_stream, token)
        await events.start()
        await retries.start()
        return _Dest(token, events, retries, {}, asyncio.Lock())

    async def close(self) -> None:
        """Finish pending appends; give back what this instance holds (``-NAK``, so another
        instance gets it at once); disconnect."""
        if self._state in ("closing", "closed"):
            return
        if self._state == "new":
            self._state = "closed"
            return
        self._state = "closing"
        if self._appends_done is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._appends_done.wait(), self.publish_timeout)
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
        for dest in self._dests.values():
            await dest.events.stop()
            await dest.retries.stop()
            msgs = [h.msg for h in dest.inflight.values()]
            msgs += list(dest.events.buffer) + list(dest.retries.buffer)
            for msg in msgs:
                with contextlib.suppress(Exception):
                    await self._nc.publish(msg.reply, b"-NAK")
            dest.inflight.clear()
            dest.events.buffer.clear()
            dest.retries.buffer.clear()
        if self._publisher is not None:
            await self._publisher.stop()
        await self._disconnect()
        self._state = "closed"

    async def _disconnect(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.flush(timeout=2)
            with contextlib.suppress(Exception):
                await nc.close()

    async def __aenter__(self) -> NatsQueue:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def ping(self) -> None:
        """Raise :class:`QueueError` unless the server answers for the events stream."""
        self._check_open()
        try:
            await self._jsm.stream_info(self.stream)
        except Exception as exc:
            raise self._error(exc) from exc

    # -----------------------------------------------------------------------------------------
    # Append

    async def append(self, events: Sequence[Event]) -> AppendResult:
        """Publish every event (pipelined) and return once the server acknowledged all of them.

        Each event is one message with ``Nats-Msg-Id = messageId``: the server's duplicate
        window answers "duplicate" for ids it saw, from any instance, and for repeats inside
        ``events``.
        """
        self._check_open()
        if not events:
            return AppendResult(0, 0)
        try:
            rows = encode_rows(events)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise QueueError(f"nats queue: event cannot be stored as JSON: {exc}") from exc
        return await self.append_encoded(rows)

    async def append_encoded(self, rows: list[EncodedEvent]) -> AppendResult:
        """:meth:`append` for events the caller serialized: ``(messageId or None, JSON)`` each.

        The ingest handler serializes while it checks the depth and then holds only these
        bytes while the server acknowledges them, not the parsed events (which the garbage
        collector would otherwise scan again and again meanwhile).
        """
        self._check_open()
        if not rows:
            return AppendResult(0, 0)
        assert self._appends_done is not None
        self._appending += 1
        self._appends_done.clear()
        try:
            return await self._publish_rows(rows)
        finally:
            self._appending -= 1
            if not self._appending:
                self._appends_done.set()

    async def _publish_rows(self, rows: list[EncodedEvent]) -> AppendResult:
        assert self._publisher is not None
        subject = self.events_subject
        messages = [(subject, data, mid or None) for mid, data in rows]
        try:
            results = await self._publisher.publish_many(messages, self.publish_timeout)
        except Exception as exc:
            raise self._error(exc) from exc
        duplicates = 0
        for result in results:
            if isinstance(result, BaseException):
                raise self._error(result)
            duplicates += result
        return AppendResult(len(results) - duplicates, duplicates)

    # -----------------------------------------------------------------------------------------
    # Fetch and settle

    async def fetch(self, destination: str, limit: int, now: float) -> list[QueuedEvent]:
        """Due retries first (oldest due first), then new events in stream order."""
        return await self._fetch(destination, limit, now, stored=False)

    async def fetch_stored(self, destination: str, limit: int, now: float) -> list[QueuedEvent]:
        """:meth:`fetch` with the new events as :class:`~crossdock.queue.StoredEvent`: the
        message bytes as published, not decoded on the event loop; the messageId from the
        ``Nats-Msg-Id`` header the publish set. A message that does not look like a JSON
        object (only Crossdock publishes on the events subject) is decoded to be sure."""
        return await self._fetch(destination, limit, now, stored=True)

    async def _fetch(
        self, destination: str, limit: int, now: float, *, stored: bool
    ) -> list[QueuedEvent]:
        dest = self._dest(destination)
        if limit <= 0:
            return []
        dest.batch = max(1, min(limit, 1000))
        try:
            async with dest.lock:
                retries = await self._fetch_retries(dest, limit, now)
                new: list[QueuedEvent] = []
                if len(retries) < limit:
                    new = await self._hand_out_events(
                        dest, await dest.events.take(limit - len(retries), _API_TIMEOUT), stored
                    )
        except QueueError:
            raise
        except Exception as exc:
            raise self._error(exc) from exc
        return retries + new

    async def _fetch_retries(self, dest: _Dest, limit: int, now: float) -> list[QueuedEvent]:
        mono = time.monotonic()
        if not dest.retries_hint and mono - dest.last_retry_look < self.retry_poll:
            return []
        dest.last_retry_look = mono
        msgs = await dest.retries.take(limit, _API_TIMEOUT)
        dest.retries_hint = bool(msgs)
        due: list[tuple[float, int, QueuedEvent, Any, dict[str, Any]]] = []
        for msg in msgs:
            try:
                record = orjson.loads(msg.data)
                seq = int(record["seq"])
                next_at = float(record["next_at"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                log.error("unreadable retry record dropped", extra={"subject": msg.subject})
                await self._nc.publish(msg.reply, b"+TERM")
                continue
            released = float(record.get("scheduled_at") or now) < dest.released_at
            if next_at > now and not released:
                await self._nak(msg, min(next_at - now, RELEASE_LOOK))
                continue
            if seq in dest.inflight:
                await self._nak(msg, 1.0)
                continue
            queued = QueuedEvent(
                seq,
                record["event"],
                int(record.get("attempts") or 0),
                record.get("first_attempt_at"),
                record.get("enqueued_at"),
            )
            due.append((next_at, seq, queued, msg, record))
        due.sort(key=lambda row: (row[0], row[1]))
        out = []
        for _next_at, seq, queued, msg, record in due:
            dest.inflight[seq] = _Held(msg, "r", _stream_seq(msg), time.monotonic(), record)
            out.append(queued)
        return out

    async def _hand_out_events(
        self, dest: _Dest, msgs: list[Any], stored: bool = False
    ) -> list[QueuedEvent]:
        out: list[QueuedEvent] = []
        loads = orjson.loads
        for msg in msgs:
            seq, enqueued = _ack_facts(msg.reply)
            if seq in dest.inflight:
                # Redelivered while this instance still works on it, or its retry record is in
                # flight: let it come back later instead of handing out the same seq twice.
                await self._nak(msg, 1.0)
                continue
            data = msg.data
            if stored and data[:1] == b"{" and data[-1:] == b"}":
                headers = msg.headers
                mid = headers.get("Nats-Msg-Id") if headers else None
                dest.inflight[seq] = _Held(msg, "e", seq, time.monotonic(), None, enqueued)
                out.append(StoredEvent(seq, data, mid, enqueued))
                continue
            try:
                event = loads(data)
            except orjson.JSONDecodeError:
                log.error("unreadable event dropped", extra={"seq": seq})
                await self._nc.publish(msg.reply, b"+TERM")
                continue
            dest.inflight[seq] = _Held(msg, "e", seq, time.monotonic(), None, enqueued)
            out.append(QueuedEvent(seq, event, 0, None, enqueued))
        return out

    async def _nak(self, msg: Any, delay: float) -> None:
        payload = b"-NAK " + orjson.dumps({"delay": max(1, int(delay * 1e9))})
        await self._nc.publish(msg.reply, payload)

    async def settle(
        self,
        destination: str,
        done: Sequence[int],
        retries: Sequence[Retry] = (),
        dead: Sequence[DeadLetter] = (),
    ) -> None:
        """Record outcomes: retry and dead-letter records are published (and acknowledged by
        the server) before the messages they settle are acknowledged; the acknowledgements are
        confirmed by the server before this returns. Seqs this instance does not hold are
        ignored."""
        dest = self._dest(destination)
        assert self._publisher is not None
        failed_at = self._clock()
        acks: list[tuple[int, _Held]] = []
        records: list[tuple[int, _Held, dict[str, Any], str]] = []
        for seq in dict.fromkeys(done):
            held = dest.inflight.get(seq)
            if held is not None:
                acks.append((seq, held))
        for r in retries:
            held = dest.inflight.get(r.seq)
            if held is not None:
                record = {
                    "seq": r.seq, "event": r.event, "attempts": r.attempts,
                    "first_attempt_at": r.first_attempt_at, "next_at": r.next_at,
                    "reason": r.reason, "hold_key": r.hold_key,
                    "enqueued_at": _enqueued_at(held), "scheduled_at": failed_at,
                }  # fmt: skip
                subject = f"{self.stream}.retries.{dest.token}.{encode_key(r.hold_key)}"
                records.append((r.seq, held, record, subject))
        for d in dead:
            held = dest.inflight.get(d.seq)
            if held is not None:
                record = {
                    "seq": d.seq, "event": d.event, "reason": d.reason, "status": d.status,
                    "body": d.body, "attempts": d.attempts, "failed_at": failed_at,
                    "enqueued_at": _enqueued_at(held),
                }  # fmt: skip
                records.append((d.seq, held, record, f"{self.stream}.dlq.{dest.token}"))
        error: BaseException | None = None
        if records:
            dest.retries_hint = True
            try:
                # The id names the message being settled: a repeated settle adds no record.
                messages = [
                    (subject, orjson.dumps(record), f"{dest.token}:{held.kind}{held.sseq}")
                    for _seq, held, record, subject in records
                ]
            except (TypeError, orjson.JSONEncodeError) as exc:
                raise QueueError(f"nats queue: event cannot be stored as JSON: {exc}") from exc
            results = await self._publisher.publish_many(messages, self.publish_timeout)
            for (seq, held, _record, _subject), result in zip(records, results, strict=True):
                if isinstance(result, BaseException):
                    error = error or result
                else:
                    acks.append((seq, held))
        try:
            await self._ack(acks)
        except Exception as exc:
            error = error or exc
        else:
            for seq, held in acks:
                if dest.inflight.get(seq) is held:
                    del dest.inflight[seq]
        if error is not None:
            raise self._error(error)

    async def _ack(self, acks: list[tuple[int, _Held]]) -> None:
        """Acknowledge every message; confirmed by one request per consumer: the server works
        through a consumer's acknowledgements in order, so the answer to the last one means
        every one before it was applied."""
        by_kind: dict[str, list[_Held]] = {}
        for _seq, held in acks:
            by_kind.setdefault(held.kind, []).append(held)
        publish = self._nc.publish
        confirms = []
        for helds in by_kind.values():
            for held in helds[:-1]:
                await publish(held.msg.reply, b"+ACK")
            confirms.append(
                self._nc.request(helds[-1].msg.reply, b"+ACK", timeout=self.publish_timeout)
            )
        if confirms:
            await asyncio.gather(*confirms)

    # -----------------------------------------------------------------------------------------
    # Waiting, keep-alive, holds, stats

    async def release(self, destination: str, now: float) -> int:
        """Retry records written before ``now`` become due in this instance as they come back
        (within :data:`RELEASE_LOOK`); returns 0 (the server does not say how many wait)."""
        dest = self._dest(destination)
        dest.released_at = max(dest.released_at, now)
        dest.retries_hint = True
        return 0

    async def wait(self, destination: str, timeout: float) -> None:
        """Return when new events may be available for ``destination``, or after ``timeout``.

        A lingering pull request waits on the server; what it brings is kept for the next
        fetch."""
        dest = self._dests.get(destination)
        if self._state != "open" or dest is None:
            return
        try:
            await dest.events.wait(dest.batch, timeout)
        except Exception:  # a failed wait is only an early return: fetch reports the error
            log.debug("nats wait failed", exc_info=True)
            await asyncio.sleep(min(timeout, 0.1))

    async def _keep_alive(self) -> None:
        """``+WPI`` for every message this instance holds, every ``ack_wait / 3``."""
        interval = max(0.1, self.ack_wait / 3)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            try:
                for dest in list(self._dests.values()):
                    msgs = [h.msg for h in dest.inflight.values() if now - h.since < HOLD_LIMIT]
                    msgs += list(dest.events.buffer) + list(dest.retries.buffer)
                    for msg in msgs:
                        await self._nc.publish(msg.reply, b"+WPI")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("nats keep-alive failed", exc_info=True)

    async def held_keys(self, destination: str) -> dict[str, int]:
        """hold key → number of the destination's retry records with that key."""
        self._check_open()
        token = encode_token(destination)
        subjects = await self._subject_counts(
            self.retries_stream, f"{self.stream}.retries.{token}.>"
        )
        out: dict[str, int] = {}
        for subject, count in subjects.items():
            key = decode_key(subject.rsplit(".", 1)[1])
            if key is not None and count:
                out[key] = out.get(key, 0) + count
        return out

    async def _subject_counts(self, stream: str, subjects_filter: str) -> dict[str, int]:
        try:
            info = await self._jsm.stream_info(stream, subjects_filter=subjects_filter)
        except Exception as exc:
            raise self._error(exc) from exc
        return dict(info.state.subjects or {})

    async def stats(self, destination: str) -> QueueStats:
        """Pending (not yet settled, in flight included), retrying, dead, oldest enqueue time."""
        from nats.js.errors import NotFoundError

        self._check_open()
        token = encode_token(destination)
        pending = 0
        oldest: list[float] = []
        try:
            info = await self._jsm.consumer_info(self.stream, token)
        except NotFoundError:
            info = None
        except Exception as exc:
            raise self._error(exc) from exc
        if info is not None:
            pending = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
            if pending:
                floor = info.ack_floor.stream_seq if info.ack_floor else 0
                with contextlib.suppress(Exception):
                    msg = await self._jsm.get_msg(
                        self.stream, floor + 1, subject=self.events_subject, next=True
                    )
                    if msg.time is not None:
                        oldest.append(msg.time.timestamp())
        # The retry consumer sees exactly this destination's records (work queue: a record is
        # gone once acknowledged), so its counts are the retry table's size without listing
        # the per-user subjects, which can be many during a long outage.
        try:
            retry_info = await self._jsm.consumer_info(self.retries_stream, token)
            retrying = int(retry_info.num_pending or 0) + int(retry_info.num_ack_pending or 0)
        except NotFoundError:
            retry_counts = await self._subject_counts(
                self.retries_stream, f"{self.stream}.retries.{token}.>"
            )
            retrying = sum(retry_counts.values())
        except Exception as exc:
            raise self._error(exc) from exc
        if retrying:
            with contextlib.suppress(Exception):
                first = await self._jsm.get_msg(
                    self.retries_stream, 1, subject=f"{self.stream}.retries.{token}.>", next=True
                )
                at = orjson.loads(first.data or b"{}").get("enqueued_at")
                if at is not None:
                    oldest.append(float(at))
        dead_counts = await self._subject_counts(self.dlq_stream, f"{self.stream}.dlq.{token}")
        return QueueStats(
            pending=pending,
            retrying=retrying,
            dead=sum(dead_counts.values()),
            oldest_at=min(oldest) if oldest else None,
        )

    # -----------------------------------------------------------------------------------------
    # Dead letters

    def _dlq_filter(self, destination: str | None) -> str:
        if destination is None:
            return f"{self.stream}.dlq.>"
        return f"{self.stream}.dlq.{encode_token(destination)}"

    async def _dlq_entries(
        self, destination: str | None, ids: Sequence[int] | None, limit: int | None, offset: int
    ) -> list[DeadLetterEntry]:
        from nats.js.errors import NotFoundError

        self._check_open()
        subject = self._dlq_filter(destination)
        out: list[DeadLetterEntry] = []
        try:
            if ids is not None:
                for i in sorted(set(int(i) for i in ids)):
                    try:
                        raw = await self._jsm.get_msg(self.dlq_stream, i)
                    except NotFoundError:
                        continue
                    entry = self._dlq_entry(raw)
                    if destination is None or entry.destination == destination:
                        out.append(entry)
                return out[offset:] if limit is None else out[offset : offset + limit]
            seq = 1
            skipped = 0
            while limit is None or len(out) < limit:
                try:
                    raw = await self._jsm.get_msg(self.dlq_stream, seq, subject=subject, next=True)
                except NotFoundError:
                    break
                seq = int(raw.seq) + 1
                if skipped < offset:
                    skipped += 1
                    continue
                out.append(self._dlq_entry(raw))
        except QueueError:
            raise
        except Exception as exc:
            raise self._error(exc) from exc
        return out

    def _dlq_entry(self, raw: Any) -> DeadLetterEntry:
        record = orjson.loads(raw.data or b"{}")
        return DeadLetterEntry(
            id=int(raw.seq),
            destination=decode_token(raw.subject.rsplit(".", 1)[1]),
            event=record.get("event"),
            reason=record.get("reason", ""),
            status=record.get("status"),
            body=record.get("body"),
            attempts=int(record.get("attempts") or 0),
            failed_at=float(record.get("failed_at") or 0.0),
        )

    async def dlq_list(
        self, destination: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[DeadLetterEntry]:
        """Dead-letter entries, oldest first, of one destination or all."""
        return await self._dlq_entries(destination, None, limit, offset)

    async def dlq_replay(
        self, destination: str | None = None, ids: Sequence[int] | None = None
    ) -> int:
        """Publish each entry as a retry record due now (attempts reset), then delete it."""
        entries = await self._dlq_entries(destination, ids, None, 0)
        now = self._clock()
        count = 0
        try:
            for entry in entries:
                raw = await self._jsm.get_msg(self.dlq_stream, entry.id)
                record = orjson.loads(raw.data or b"{}")
                retry = {
                    "seq": record.get("seq", 0), "event": entry.event, "attempts": 0,
                    "first_attempt_at": None, "next_at": now, "reason": "replay",
                    "hold_key": None, "enqueued_at": record.get("enqueued_at"),
                }  # fmt: skip
                token = encode_token(entry.destination)
                await self._js.publish(
                    f"{self.stream}.retries.{token}.{encode_key(None)}",
                    orjson.dumps(retry),
                    timeout=self.publish_timeout,
                    headers={"Nats-Msg-Id": f"{token}:dlq{entry.id}"},
                )
                await self._jsm.delete_msg(self.dlq_stream, entry.id)
                count += 1
                hinted = self._dests.get(entry.destination)
                if hinted is not None:
                    hinted.retries_hint = True
        except Exception as exc:
            raise self._error(exc) from exc
        return count

    async def dlq_purge(
        self, destination: str | None = None, ids: Sequence[int] | None = None
    ) -> int:
        """Delete dead-letter entries for good; returns how many."""
        try:
            if ids is None:
                self._check_open()
                subject = self._dlq_filter(destination)
                counts = await self._subject_counts(self.dlq_stream, subject)
                await self._jsm.purge_stream(self.dlq_stream, subject=subject)
                return sum(counts.values())
            entries = await self._dlq_entries(destination, ids, None, 0)
            for entry in entries:
                await self._jsm.delete_msg(self.dlq_stream, entry.id)
            return len(entries)
        except QueueError:
            raise
        except Exception as exc:
            raise self._error(exc) from exc

    # -----------------------------------------------------------------------------------------
    # Helpers

    def _check_open(self) -> None:
        if self._state != "open":
            raise QueueError(f"{self._where()}: not open")

    def _dest(self, destination: str) -> _Dest:
        self._check_open()
        dest = self._dests.get(destination)
        if dest is None:
            raise QueueError(f"nats queue: destination {destination!r} is not registered")
        return dest

    def _error(self, exc: BaseException) -> QueueError:
        if isinstance(exc, QueueError):
            return exc
        text = str(exc) or type(exc).__name__
        return QueueError(f"{self._where()}: {type(exc).__name__}: {text}")


def _enum_value(value: Any) -> Any:
    return getattr(value, "value", value)


def _stream_seq(msg: Any) -> int:
    return _ack_facts(msg.reply)[0]


def _ack_facts(reply: str) -> tuple[int, float]:
    """Stream sequence and stored time (epoch seconds) from a JetStream reply subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>``, or the newer form
    with domain and account hash after ``$JS.ACK`` (two tokens more, and a trailing token).
    Parsed here because nats-py's ``Msg.metadata`` costs more than the rest of a fetch.

    The time is cut to whole milliseconds: the server stamps every message to the nanosecond,
    and the worker records end-to-end latency once per distinct stored time, so events stored
    in the same millisecond (a publish of one request's events) share one observation instead
    of one histogram update each.
    """
    tokens = reply.split(".")
    if len(tokens) == 9:
        return int(tokens[5]), int(tokens[7]) // 1_000_000 / 1e3
    return int(tokens[7]), int(tokens[9]) // 1_000_000 / 1e3


def _enqueued_at(held: _Held) -> float | None:
    if held.record is not None:
        return held.record.get("enqueued_at")
    return held.enqueued_at
