"""The durable queue: one small interface, several backends (``sqlite``, ``nats``).

Ingest appends; each destination's worker fetches, delivers and settles. The backend owns
durability, deduplication, per-destination progress, the retry schedule and the dead-letter
table, so ingest and delivery never know which backend runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import orjson
from attrs import define, frozen

from crossdock.types import Event

EncodedEvent = tuple[str | None, bytes]
"""An event as a queue stores it: its ``messageId`` (``None`` when not a string) and its JSON."""


def encode_rows(events: Sequence[Event]) -> list[EncodedEvent]:
    """Serialize ``events`` for ``append_encoded`` (orjson; raises its ``JSONEncodeError``, or
    ``TypeError``, for an event it cannot write)."""
    dumps = orjson.dumps
    return [(_message_id(ev), dumps(ev)) for ev in events]


def _message_id(event: Event) -> str | None:
    mid = event.get("messageId")
    return mid if isinstance(mid, str) else None


@frozen
class AppendResult:
    """How many events of an append were stored, and how many were already seen (by messageId)."""

    stored: int
    duplicates: int


@define(slots=True)
class QueuedEvent:
    """An event handed to a destination's worker.

    ``seq`` is the backend's id for it (opaque to the worker). ``attempts`` counts deliveries
    already tried; ``first_attempt_at`` is when the first one failed (epoch seconds) or ``None``.
    """

    seq: int
    event: Event
    attempts: int = 0
    first_attempt_at: float | None = None
    enqueued_at: float | None = None


_EVENT_SLOT: Any = QueuedEvent.__dict__["event"]


class StoredEvent(QueuedEvent):
    """A new event as the queue stored it: its JSON bytes, decoded only if ``event`` is read.

    Handed out by :meth:`FetchesStored.fetch_stored` for destinations that send the stored
    event as it is (the identity mapping): their worker sends :attr:`data` and never builds
    the event's dicts, which cost more of the event loop's time than the rest of delivering
    it (``bench/deliver_cost.py``). Reading :attr:`event` (a retry, a dead letter, a
    ``sources`` filter) decodes it once. ``message_id`` is the event's ``messageId`` as the
    queue read it (``None`` when not a string).
    """

    __slots__ = ("data", "message_id")

    data: bytes
    message_id: str | None

    def __init__(
        self, seq: int, data: bytes, message_id: str | None, enqueued_at: float | None
    ) -> None:
        self.seq = seq
        self.data = data
        self.message_id = message_id
        self.attempts = 0
        self.first_attempt_at = None
        self.enqueued_at = enqueued_at

    @property  # type: ignore[override]
    def event(self) -> Event:
        """The event, decoded from :attr:`data` on first use."""
        try:
            return _EVENT_SLOT.__get__(self)  # type: ignore[no-any-return]
        except AttributeError:
            event = orjson.loads(self.data)
            _EVENT_SLOT.__set__(self, event)
            return event  # type: ignore[no-any-return]

    @event.setter
    def event(self, value: Event) -> None:
        _EVENT_SLOT.__set__(self, value)

    @property
    def decoded(self) -> bool:
        """Whether :attr:`event` was read (the stored-bytes path never reads it)."""
        try:
            _EVENT_SLOT.__get__(self)
        except AttributeError:
            return False
        return True


@frozen
class Retry:
    """Schedule ``seq`` again at ``next_at`` (epoch seconds) with ``attempts`` tried so far."""

    seq: int
    event: Event
    next_at: float
    attempts: int
    first_attempt_at: float
    reason: str
    hold_key: str | None = None


@frozen
class DeadLetter:
    """Move ``seq`` to the dead-letter table with the vendor's reason, status and body."""

    seq: int
    event: Event
    reason: str
    attempts: int
    status: int | None = None
    body: str | None = None


@frozen
class DeadLetterEntry:
    """One row of the dead-letter table, as the admin API and ``crossdock dlq list`` show it."""

    id: int
    destination: str
    event: Event
    reason: str
    status: int | None
    body: str | None
    attempts: int
    failed_at: float


@frozen
class QueueStats:
    """A destination's backlog: events not yet fetched, waiting for retry, dead-lettered, and the
    enqueue time of the oldest unsettled event (``None`` when nothing is waiting)."""

    pending: int
    retrying: int
    dead: int
    oldest_at: float | None


@runtime_checkable
class FetchesStored(Protocol):
    """A queue that can hand out new events as the bytes it stored (the SQLite queue)."""

    async def fetch_stored(self, destination: str, limit: int, now: float) -> list[QueuedEvent]:
        """:meth:`Queue.fetch`, with the new events as :class:`StoredEvent` (retries, which
        are few, stay decoded :class:`QueuedEvent`)."""
        ...


class Queue(Protocol):
    """What a queue backend provides. Every method is a coroutine that never blocks the loop."""

    async def open(self, destinations: Sequence[str]) -> None:
        """Create or check storage, and register the destinations that read from the queue.

        A destination seen for the first time starts at the current end of the queue.
        """
        ...

    async def close(self) -> None:
        """Flush and release everything; pending appends complete first."""
        ...

    async def rewind(self, destination: str) -> None:
        """Hand out again what ``destination`` has in flight (fetched, not settled): its worker
        was stopped and a new one takes over (configuration reload). Call with no worker
        running for it."""
        ...

    async def append(self, events: Sequence[Event]) -> AppendResult:
        """Store ``events`` durably (all or none), skipping those whose ``messageId`` was seen
        within the dedupe window (and repeats inside ``events``). Returns once committed."""
        ...

    async def fetch(self, destination: str, limit: int, now: float) -> list[QueuedEvent]:
        """Up to ``limit`` events for ``destination``: retries due at ``now`` first (oldest
        first), then new events in append order. An event is not handed out again until it is
        settled (or the process restarts: then unsettled events come again, as duplicates)."""
        ...

    async def settle(
        self,
        destination: str,
        done: Sequence[int],
        retries: Sequence[Retry] = (),
        dead: Sequence[DeadLetter] = (),
    ) -> None:
        """Record outcomes in one transaction: ``done`` (delivered or filtered) leave the queue,
        ``retries`` are scheduled, ``dead`` go to the dead-letter table."""
        ...

    async def release(self, destination: str, now: float) -> int:
        """Make every retry of ``destination`` scheduled after ``now`` due at ``now`` (the
        destination recovered: its backlog need not wait out each event's backoff); returns
        how many were moved forward (a backend that cannot count returns 0)."""
        ...

    async def wait(self, destination: str, timeout: float) -> None:
        """Return when new events may be available for ``destination``, or after ``timeout``."""
        ...

    async def held_keys(self, destination: str) -> dict[str, int]:
        """For ``ordering = "per_user"``: hold key → number of that user's events waiting for
        retry."""
        ...

    async def stats(self, destination: str) -> QueueStats:
        """The destination's backlog (see :class:`QueueStats`)."""
        ...

    async def dlq_list(
        self, destination: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[DeadLetterEntry]:
        """Dead-letter entries, oldest first, of one destination or all."""
        ...

    async def dlq_replay(
        self, destination: str | None = None, ids: Sequence[int] | None = None
    ) -> int:
        """Queue dead-lettered events again (attempts reset, due now); returns how many."""
        ...

    async def dlq_purge(
        self, destination: str | None = None, ids: Sequence[int] | None = None
    ) -> int:
        """Delete dead-letter entries for good; returns how many."""
        ...

    async def ping(self) -> None:
        """Raise :class:`~crossdock.errors.QueueError` unless the queue is writable (``/ready``)."""
        ...

    def info(self) -> dict[str, Any]:
        """Backend facts for logs and metrics (name, path or URL; never credentials)."""
        ...


def make_queue(config: Any) -> Queue:
    """The queue backend named by a ``[queue]`` config (a ``QueueConfig``)."""
    if config.backend == "sqlite":
        from crossdock.queue.sqlite import SqliteQueue

        return SqliteQueue(
            config.path,
            dedupe_window=config.dedupe_window,
            dedupe_max=config.dedupe_max,
            synchronous=config.synchronous,
        )
    if config.backend == "nats":
        try:
            from crossdock.queue.nats import NatsQueue
        except ImportError as exc:  # pragma: no cover - config.py reports this first
            from crossdock.errors import ConfigError

            raise ConfigError(
                ["queue.backend: \"nats\" needs the NATS client: pip install 'crossdock[nats]'"]
            ) from exc
        return NatsQueue(
            config.url,
            stream=config.stream,
            replicas=config.replicas,
            storage=config.storage,
            dedupe_window=config.dedupe_window,
            ack_wait=config.ack_wait,
            max_ack_pending=config.max_ack_pending,
        )
    from crossdock.errors import ConfigError

    raise ConfigError([f"queue.backend: {config.backend!r} is not available"])
