"""Per-destination delivery: fetch → route → transform → batch → send → settle.

One :class:`DestinationWorker` per configured destination. Each has its own queue position,
batching, concurrency slots, token bucket and retry schedule, so a slow or failing destination
only ever waits on itself.

The worker orchestrates; each job has its module: :mod:`.batching` (caps), :mod:`.sending`
(rate limit, concurrency, the deliver contract, isolating refused events; shared with
``crossdock backfill``), :mod:`.settle` (the retry and dead-letter rule), :mod:`.ordering`
(per-user holds) and :mod:`.pause` (credentials refused).

The hot path is per batch, not per event: one ``queue.fetch`` per batch (more only when a batch
fills slowly), the transformer called directly (no pluggy), each payload serialized once with
orjson into a :class:`~crossdock.BatchItem`, one ``deliver`` call and one ``queue.settle`` per
batch. The only awaits are those batch-level ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any, Final, Protocol

import orjson
from attrs import define, field

from crossdock.deliver.batching import SEPARATOR_BYTES, BatchCaps
from crossdock.deliver.journal import Journal
from crossdock.deliver.ordering import UserOrder, hold_key
from crossdock.deliver.outcomes import (
    BODY_LIMIT,
    clean_text,
    received_epoch,
    retry_reason,
    secrets_of,
)
from crossdock.deliver.pacing import PAUSE_BACKOFF, RETRY_BACKOFF, Backoff, RateLimiter
from crossdock.deliver.pause import OUTAGE_BACKOFF, PauseState
from crossdock.deliver.sending import Sender, call_deliverer
from crossdock.deliver.settle import RetryRule, Settlement
from crossdock.deliver.stored import StoredItem, sends_stored_events
from crossdock.errors import Unsendable
from crossdock.metrics import Metrics
from crossdock.queue import DeadLetter, FetchesStored, Queue, QueuedEvent, Retry, StoredEvent
from crossdock.secrets import Secret
from crossdock.types import (
    BatchItem,
    CredentialsRejected,
    Delivered,
    Deliverer,
    Destination,
    Event,
    Outcome,
    Rejected,
    RetryLater,
    Transformer,
)

__all__ = ["Backoff", "DestinationWorker", "NotSentListener", "RateLimiter", "call_deliverer"]

OPERATOR_PAUSE = "paused by operator"

log = logging.getLogger("crossdock.delivery")

IDLE_POLL = 1.0
"""Seconds between fetches while the queue is empty (retries become due without a signal)."""

STATS_INTERVAL = 5.0
"""Seconds between refreshes of the queue gauges."""

WRITE_BACKOFF = Backoff(base=0.1, factor=2.0, cap=5.0, jitter=False)
"""A queue write that failed is tried again after 0.1 s, 0.2 s ... then every 5 s, forever."""


class NotSentListener(Protocol):
    """Who hears of the events a worker decided not to send (the admin API's destination tail).

    The worker asks :meth:`wants` once per fetched batch and builds records only when it is
    true, so a listener nobody subscribes to costs one set lookup per batch.
    """

    def wants(self, destination_id: str) -> bool:
        """Whether anyone listens to ``destination_id`` right now."""
        ...

    def __call__(self, destination_id: str, records: list[dict[str, Any]]) -> None:
        """Take ``records`` (see :func:`not_sent_record`); must not block."""
        ...


def not_sent_record(destination_id: str, event: Event, outcome: str, reason: str) -> dict[str, Any]:
    """The record of one event not sent: its ids, type and name, the outcome (``filtered``,
    ``dropped``, ``dead_lettered``) and the reason. Never the event's data (properties, traits,
    context): people read it."""
    name = event.get("event")
    message_id = event.get("messageId")
    kind = event.get("type")
    return {
        "destination": destination_id,
        "messageId": message_id if isinstance(message_id, str) else None,
        "type": kind if isinstance(kind, str) else None,
        "event": name if isinstance(name, str) else None,
        "outcome": outcome,
        "reason": reason,
    }


@define(slots=True)
class _Batch:
    """Items to send, the queued events they came from (same order), and earlier outcomes
    (filtered, held, too large) settled together with the batch's own."""

    items: list[BatchItem]
    queued: list[QueuedEvent]
    extra: Settlement
    probe: bool = False


@define(eq=False)
class DestinationWorker:
    """Delivers one destination's events from the queue.

    Lifecycle: ``await start()``; ``await stop(timeout)`` stops fetching, lets in-flight batches
    finish for up to ``timeout`` seconds, then cancels them (whatever was not settled stays in
    the queue and comes again). The caller closes :attr:`deliverer`.

    Requests go through the destination's :class:`~.sending.Sender`: ``concurrency`` slots, the
    rate limit counting ``request_cost``, and the isolation of events answered
    :class:`~crossdock.BatchRejected` (resent in halves until each refused event is alone).

    Outcomes (settled per event, one ``queue.settle`` per batch):

    - :class:`~crossdock.Delivered` → done.
    - :class:`~crossdock.Rejected` (and a lone :class:`~crossdock.BatchRejected`) → dead letter
      with the vendor's status and body (cut to 4 KB, secrets masked).
    - :class:`~crossdock.RetryLater`, an exception from ``deliver`` (whole batch), a timeout
      (``delivery.timeout``) or a wrong number of outcomes (a plugin bug) → retry at
      ``now + max(after, backoff)``, backoff ``1 s·2ⁿ`` with full jitter capped at 10 min, unless
      *both* ``attempts >= max_attempts`` and ``now - first_attempt_at >= max_age``: then dead
      letter with the last reason (:class:`~.settle.RetryRule`).
    - A whole batch answered :class:`~crossdock.RetryLater` (the vendor is down: refused
      connections, timeouts, 5xx, 429; a batch of one event only without an HTTP status, see
      :func:`_vendor_down`) → the events are retried as above, and the destination
      is *down*: it fetches nothing more until a probe batch is due
      (``max(Retry-After, 1 s·2ⁿ)`` capped at 30 s, :data:`~.pause.OUTAGE_BACKOFF`), so an
      outage costs one batch of retry records per probe, not one per queued event. The first
      batch not answered "retry later" as a whole ends the outage and *releases* the
      destination's waiting retries (``queue.release``: all due now), so the backlog drains at
      the delivery rate instead of waiting out each event's backoff.
    - :class:`~crossdock.CredentialsRejected` → the destination pauses: its events go back to the
      queue unchanged (attempts not counted, due after the probe delay), fetching stops, and
      after 5 s, 10 s, ... (cap 5 min) one batch is sent as a probe; the destination resumes
      when the probe is not refused for credentials. Nothing is dead-lettered for a wrong key.

    Ordering ``"per_user"`` (hold key = ``userId``, else ``anonymousId``; events without either
    are not ordered): the worker remembers, in memory, which of each user's events wait in the
    retry table and when they are due (after a restart, only counts per user are known, from
    ``queue.held_keys``). A fetched event is *held* when an earlier event of its user (a smaller
    queue ``seq``; backends hand out increasing seqs in append order) waits for retry: it goes
    to the retry table unchanged (attempts not counted, reason ``held: ...``, ``hold_key`` set),
    due when that earlier event is due, and is looked at again then (and held again if the
    earlier event was rescheduled). So a user's later events are not sent while an earlier one
    waits. A user with more than ``max_held_per_user`` events waiting bypasses the hold: their
    events are sent unordered rather than piling up. Limits of the promise: events of one user
    in flight together (same batch, or concurrent batches when ``concurrency > 1``) can still
    overtake each other if one of them fails; ``concurrency = 1`` gives the strictest order.

    Settling never gives up: a ``queue.settle`` (or ``queue.release``) that fails is tried again
    after 0.1 s, 0.2 s ... every 5 s (:data:`WRITE_BACKOFF`) until it succeeds, counted in
    ``crossdock_queue_write_retries_total`` and logged; meanwhile :attr:`writes_failing` is
    true (``/ready`` answers 503) and the batch keeps its concurrency slot, so the worker stops
    sending once every slot waits on a settle.

    ``not_sent`` (optional): told of each event filtered, dropped or dead-lettered while
    preparing a batch (:func:`not_sent_record`), only while it :meth:`~NotSentListener.wants`
    this destination; the admin API's ``/admin/tail?destination=`` is fed this way.

    :attr:`journal`: the last outcome of each recently settled event by ``messageId``,
    throughput buckets and the last vendor errors (:mod:`.journal`, for the console).

    Operator controls (the console): :meth:`pause_by_operator` stops fetching until
    :meth:`resume_by_operator` (batches in flight finish); :meth:`probe_now` makes the probe of a
    destination paused for credentials or down due at once.

    ``secrets`` (optional): the configuration's other secrets (``Config.secrets()``: every
    ``${VAR}`` value, URL credentials), masked with the settings' own :class:`~crossdock.Secret`
    values in every reason and vendor body before it is logged or stored.
    """

    destination: Destination
    transformer: Transformer
    deliverer: Deliverer
    queue: Queue
    metrics: Metrics
    clock: Callable[[], float] = field(default=time.time, kw_only=True)
    rng: Callable[[], float] = field(default=random.random, kw_only=True)
    retry_backoff: Backoff = field(default=RETRY_BACKOFF, kw_only=True)
    pause_backoff: Backoff = field(default=PAUSE_BACKOFF, kw_only=True)
    outage_backoff: Backoff = field(default=OUTAGE_BACKOFF, kw_only=True)
    write_backoff: Backoff = field(default=WRITE_BACKOFF, kw_only=True)
    idle_poll: float = field(default=IDLE_POLL, kw_only=True)
    stats_interval: float = field(default=STATS_INTERVAL, kw_only=True)
    not_sent: NotSentListener | None = field(default=None, kw_only=True)
    secrets: Sequence[Secret] = field(default=(), kw_only=True, repr=False)
    journal: Journal = field(factory=Journal, kw_only=True, repr=False)

    # Derived settings (computed once).
    _id: str = field(init=False)
    _labels: tuple[str, ...] = field(init=False)
    _caps: BatchCaps = field(init=False)
    _max_wait: float = field(init=False)
    _secrets: tuple[Any, ...] = field(init=False)
    _sender: Sender = field(init=False)
    _unsettled: asyncio.Semaphore = field(init=False)
    _rule: RetryRule = field(init=False)
    _order: UserOrder | None = field(init=False)
    _pause: PauseState = field(init=False)
    _down: PauseState = field(init=False)

    # Runtime state.
    _tasks: set[asyncio.Task[None]] = field(init=False, factory=set)
    _main: asyncio.Task[None] | None = field(init=False, default=None)
    _stats_task: asyncio.Task[None] | None = field(init=False, default=None)
    _stopping: bool = field(init=False, default=False)
    _carry: list[tuple[QueuedEvent, BatchItem]] = field(init=False, factory=list)
    _in_flight_events: int = field(init=False, default=0)
    _last_error: str | None = field(init=False, default=None)
    _last_success_at: float | None = field(init=False, default=None)
    _counts: dict[str, int] = field(init=False, factory=dict)
    _writes_failing: int = field(init=False, default=0)
    _release_due: bool = field(init=False, default=False)
    _operator_paused: bool = field(init=False, default=False)
    _wake: asyncio.Event | None = field(init=False, default=None)
    _probes: int = field(init=False, default=0)
    _stored: bool = field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        dest = self.destination
        self._id = dest.id
        self._labels = (dest.id,)
        self._caps = BatchCaps.of(dest)
        self._max_wait = max(0.0, dest.delivery.max_wait_ms / 1000.0)
        self._secrets = tuple(dict.fromkeys((*secrets_of(dest.settings), *self.secrets)))
        self._sender = Sender.of(dest, self.deliverer, secrets=self._secrets, metrics=self.metrics)
        # A batch frees its request slot once the vendor answered, and its settle (one commit,
        # queued behind ingest's) goes on meanwhile; this bounds the batches at the vendor or
        # still settling, so settles that fall behind do not let batches pile up in memory.
        self._unsettled = asyncio.Semaphore(2 * max(1, self._sender.concurrency))
        self._rule = RetryRule.of(dest.delivery, self.retry_backoff)
        per_user = dest.delivery.ordering == "per_user"
        self._order = UserOrder(dest.delivery.max_held_per_user) if per_user else None
        # The identity mapping sends events as stored: fetched undecoded (``.stored``).
        self._stored = sends_stored_events(self.transformer) and isinstance(
            self.queue, FetchesStored
        )
        self._pause = PauseState(self.pause_backoff, self.rng)
        self._down = PauseState(self.outage_backoff, self.rng)
        self._counts = {
            "delivered": 0,
            "retried": 0,
            "dead_lettered": 0,
            "filtered": 0,
            "dropped": 0,
        }

    # ------------------------------------------------------------------------------------------
    # Lifecycle

    async def start(self) -> None:
        """Start fetching and delivering in background tasks (seeds per-user holds first)."""
        if self._main is not None:
            return
        self._stopping = False
        if self._order is not None:
            self._order.seed(await self.queue.held_keys(self._id))
        self.metrics.set("crossdock_destination_paused", self._labels, 0)
        self.metrics.set("crossdock_destination_down", self._labels, 0)
        self._main = asyncio.create_task(self._run(), name=f"crossdock-deliver-{self._id}")
        self._stats_task = asyncio.create_task(
            self._stats_loop(), name=f"crossdock-stats-{self._id}"
        )
        log.info(
            "destination started",
            extra={"destination": self._id, "plugin": self.destination.plugin},
        )

    async def stop(self, timeout: float) -> None:
        """Stop fetching; wait up to ``timeout`` s for in-flight batches, then cancel them.

        Events not settled by then stay in the queue (they come again after a restart).
        """
        self._stopping = True
        for task in (self._main, self._stats_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._main = self._stats_task = None
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=max(0.0, timeout))
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                log.warning(
                    "destination stopped with batches in flight",
                    extra={"destination": self._id, "batches": len(pending)},
                )
        self._carry.clear()
        log.info("destination stopped", extra={"destination": self._id})

    def status(self) -> dict[str, Any]:
        """A JSON-able summary for the admin API and ``crossdock`` commands."""
        return {
            "id": self._id,
            "plugin": self.destination.plugin,
            "running": self._main is not None and not self._main.done(),
            "paused": self._pause.paused or self._operator_paused,
            "pause_reason": OPERATOR_PAUSE if self._operator_paused else self._pause.reason,
            "paused_by_operator": self._operator_paused,
            "credentials_rejected": self._pause.paused,
            "down": self._down.paused,
            "down_reason": self._down.reason,
            "writes_failing": self.writes_failing,
            "in_flight": len(self._tasks),
            "in_flight_events": self._in_flight_events,
            "last_error": self._last_error,
            "last_success_at": self._last_success_at,
            "ordering": self.destination.delivery.ordering,
            "held_users": self._order.held_users if self._order is not None else 0,
            **self._counts,
        }

    @property
    def writes_failing(self) -> bool:
        """Whether a queue write of this destination is failing and being retried now."""
        return self._writes_failing > 0

    @property
    def probes(self) -> int:
        """Probe batches sent so far (a caller of :meth:`probe_now` waits for it to move)."""
        return self._probes

    def pause_by_operator(self) -> None:
        """Stop fetching until :meth:`resume_by_operator` (batches in flight finish)."""
        if not self._operator_paused:
            self._operator_paused = True
            log.info("destination paused by the operator", extra={"destination": self._id})
        self.metrics.set("crossdock_destination_paused", self._labels, 1)

    def resume_by_operator(self) -> None:
        """Undo :meth:`pause_by_operator`; a pause for credentials stays until its probe."""
        if self._operator_paused:
            self._operator_paused = False
            log.info("destination resumed by the operator", extra={"destination": self._id})
        self.metrics.set("crossdock_destination_paused", self._labels, int(self._pause.paused))
        self._nudge()

    def probe_now(self) -> bool:
        """Make the probe of a destination paused for credentials or down due now; ``False``
        when it is neither (nothing to probe)."""
        state = self._pause if self._pause.paused else self._down if self._down.paused else None
        if state is None:
            return False
        state.probe_at = 0.0
        self._nudge()
        return True

    def _nudge(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _nap(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when an operator control wakes the worker."""
        if self._wake is None:
            self._wake = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    def transform(self, event: Event) -> Any:
        """The payload this destination would send for ``event`` (``None``: dropped). Dry runs."""
        return self.transformer(event)

    def drop_reason(self, event: Event) -> str:
        """Why ``event`` yields no payload, as the metrics name it: ``filtered`` (the
        destination's sources or ``where``), the mapping's rule, or ``mapping``."""
        sources = self.destination.sources
        if sources is not None and _source_of(event) not in sources:
            return "filtered"
        drop_reason = getattr(self.transformer, "drop_reason", None)
        reason = drop_reason(event) if drop_reason else None
        matches = getattr(self.transformer, "matches", None)
        if matches is not None and not matches(event):
            return f"filtered: {reason}" if reason and reason != "filtered" else "filtered"
        return reason or "mapping"

    # ------------------------------------------------------------------------------------------
    # Main loop

    async def _run(self) -> None:
        slots = self._sender.slots
        while not self._stopping:
            try:
                if self._operator_paused:
                    await self._nap(self.idle_poll)
                    continue
                if self._pause.paused or self._down.paused:
                    await self._probe()
                    continue
                await self._unsettled.acquire()
                try:
                    await slots.acquire()
                except BaseException:
                    self._unsettled.release()
                    raise
                try:
                    batch = await self._form_batch(wait=True)
                except BaseException:
                    slots.release()
                    self._unsettled.release()
                    raise
                if batch is None:
                    slots.release()
                    self._unsettled.release()
                    continue
                if self._pause.paused:  # paused while this batch was being formed
                    slots.release()
                    self._unsettled.release()
                    await self._put_back(batch)
                    continue
                self._launch(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a queue failure must not kill the worker
                self._last_error = clean_text(f"{type(exc).__name__}: {exc}", self._secrets)
                log.exception("delivery loop failed; retrying", extra={"destination": self._id})
                await asyncio.sleep(self.idle_poll)

    def _launch(self, batch: _Batch) -> asyncio.Task[None]:
        task = asyncio.create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _probe(self) -> None:
        """While paused or down: sleep until the probe time, then send one batch and wait for
        it."""
        state = self._pause if self._pause.paused else self._down
        delay = state.probe_delay()
        if delay > 0:
            await self._nap(min(delay, self.idle_poll))
            return
        if self._tasks:  # let the batches that were in flight at the pause settle first
            await asyncio.wait(set(self._tasks))
            return
        batch = await self._form_batch(wait=False)
        if batch is None:
            # Nothing to probe with: resume, and the next batch acts as the probe.
            if state is self._pause:
                self._resume()
            else:
                self._up()
            return
        batch.probe = True
        await self._unsettled.acquire()
        try:
            await self._sender.slots.acquire()
        except BaseException:
            self._unsettled.release()
            raise
        await asyncio.wait({self._launch(batch)})
        self._probes += 1

    # ------------------------------------------------------------------------------------------
    # Batch forming

    async def _form_batch(self, *, wait: bool) -> _Batch | None:
        """Fetch and prepare events until a batch is full, or ``max_wait`` has passed since its
        first item, or (``wait=False``) the queue has nothing more right now."""
        queued: list[QueuedEvent] = []
        items: list[BatchItem] = []
        extra = Settlement()
        size = 0
        caps = self._caps
        # Items carried over from the last fetch (a batch closed on bytes) go first.
        carry, self._carry = self._carry, []
        full = False
        for i, (q, item) in enumerate(carry):
            cost = len(item.data) + SEPARATOR_BYTES
            if caps.full(len(items), size, cost):
                self._carry = carry[i:]
                full = True
                break
            queued.append(q)
            items.append(item)
            size += cost
        deadline: float | None = None
        fetch = self.queue.fetch_stored if self._stored else self.queue.fetch  # type: ignore[attr-defined]
        while not full:
            room = caps.count - len(items)
            fetched = await fetch(self._id, room, self.clock())
            if fetched:
                size, full = self._prepare(fetched, queued, items, extra, size)
                if full:
                    break
                if len(fetched) >= room:
                    continue
            if not items:
                if extra:
                    await self._settle(extra)
                    extra = Settlement()
                if not wait or self._stopping:
                    return None
                if not fetched:
                    await self.queue.wait(self._id, self.idle_poll)
                continue
            if not wait:
                break
            now = time.monotonic()
            if deadline is None:
                deadline = now + self._max_wait
            remaining = deadline - now
            if remaining <= 0:
                break
            await self.queue.wait(self._id, remaining)
        if not items:
            if extra:
                await self._settle(extra)
            return None
        return _Batch(items, queued, extra)

    def _prepare(
        self,
        fetched: list[QueuedEvent],
        queued: list[QueuedEvent],
        items: list[BatchItem],
        extra: Settlement,
        size: int,
    ) -> tuple[int, bool]:
        """Route, hold, transform and serialize ``fetched`` into ``items``; returns the new byte
        size and whether the batch is full (overflow goes to the carry list)."""
        sources = self.destination.sources
        transformer = self.transformer
        dumps = orjson.dumps
        caps = self._caps
        order = self._order
        now = self.clock()
        filtered = 0
        dropped: dict[str, int] = {}
        # A transformer built on CompiledMapping tells a false ``where`` (filtered) from a
        # mapping that produced nothing (dropped), and names why it dropped; other transformers
        # only say "dropped".
        matches = getattr(transformer, "matches", None)
        drop_reason = getattr(transformer, "drop_reason", None)
        # Records for the destination tail, only while someone subscribes (one check per fetch).
        listener = self.not_sent
        records: list[dict[str, Any]] | None = None
        if listener is not None and listener.wants(self._id):
            records = []
        full = False
        journal = self.journal
        # The caps' checks inlined (``BatchCaps.too_large`` and ``full``): this runs per event.
        stored = sources is None and order is None
        largest, most_items, most_bytes = caps.largest, caps.count, caps.bytes
        for q in fetched:
            item: BatchItem
            if stored and type(q) is StoredEvent:
                # The identity mapping: the stored bytes are the payload's JSON.
                data = q.data
                item = StoredItem(q)
            else:
                event = q.event
                if sources is not None and _source_of(event) not in sources:
                    extra.done.append(q.seq)
                    filtered += 1
                    journal.filtered(event, now, "sources")
                    if records is not None:
                        records.append(not_sent_record(self._id, event, "filtered", "sources"))
                    continue
                if order is not None:
                    held = order.hold(q, now)
                    if held is not None:
                        extra.retries.append(held)
                        continue
                try:
                    payload = transformer(event)
                    if payload is None:
                        extra.done.append(q.seq)
                        if matches is not None and not matches(event):
                            filtered += 1
                            journal.filtered(event, now)
                            if records is not None:
                                why = _filter_reason(event, drop_reason)
                                records.append(not_sent_record(self._id, event, "filtered", why))
                        else:
                            why = (drop_reason(event) if drop_reason else None) or "mapping"
                            dropped[why] = dropped.get(why, 0) + 1
                            journal.dropped(event, now, why)
                            if records is not None:
                                records.append(not_sent_record(self._id, event, "dropped", why))
                        continue
                    data = dumps(payload)
                except Unsendable as exc:
                    why = self._dead(extra, q, exc.reason, "unsendable")
                    if records is not None:
                        records.append(not_sent_record(self._id, event, "dead_lettered", why))
                    continue
                except Exception as exc:
                    reason = f"transform failed: {type(exc).__name__}: {exc}"
                    why = self._dead(extra, q, reason, "transform_failed")
                    if records is not None:
                        records.append(not_sent_record(self._id, event, "dead_lettered", why))
                    continue
                item = BatchItem(event, payload, data)
            length = len(data)
            if length > largest:
                why = self._dead(extra, q, f"too large: {length} bytes", "too_large")
                if records is not None:
                    records.append(not_sent_record(self._id, q.event, "dead_lettered", why))
                continue
            cost = length + SEPARATOR_BYTES
            if full or (items and (len(items) >= most_items or size + cost > most_bytes)):
                full = True
                self._carry.append((q, item))
                continue
            queued.append(q)
            items.append(item)
            size += cost
        if filtered:
            self.metrics.inc("crossdock_events_filtered_total", self._labels, filtered)
            self._counts["filtered"] += filtered
        for why, count in dropped.items():
            self.metrics.inc("crossdock_events_dropped_total", (*self._labels, why), count)
            self._counts["dropped"] += count
        if records and listener is not None:
            listener(self._id, records)
        return size, full or len(items) >= caps.count

    # ------------------------------------------------------------------------------------------
    # Sending and settling

    async def _send(self, batch: _Batch) -> None:
        """Send ``batch`` in the slot ``_run`` took for it, then settle its outcomes. The slot
        is free for the next batch once the outcomes are decided (pause and outage state
        included), before the settle's commit."""
        n = len(batch.items)
        self._in_flight_events += n
        holding = True

        def free_slot() -> None:
            nonlocal holding
            if holding:
                holding = False
                self._sender.slots.release()

        try:
            outcomes = await self._sender.send(batch.items)
            await self._settle_outcomes(batch, outcomes, free_slot)
        finally:
            self._in_flight_events -= n
            free_slot()
            self._unsettled.release()

    async def _settle_outcomes(
        self, batch: _Batch, outcomes: Sequence[Outcome], decided: Callable[[], None]
    ) -> None:
        settlement = batch.extra
        now = self.clock()
        queued, items = batch.queued, batch.items
        first = outcomes[0] if outcomes else None
        credentials: CredentialsRejected | None = None
        down = False
        if type(first) is Delivered and outcomes.count(first) == len(outcomes) == len(queued):
            # The common answer, one shared ``DELIVERED`` for the whole batch: no per-event
            # look at the outcomes.
            self._delivered(settlement, queued, items, now)
        else:
            credentials = next((o for o in outcomes if isinstance(o, CredentialsRejected)), None)
            if credentials is not None:
                self._pause_for(credentials)  # first, so the events go back due at the probe time
            down = _vendor_down(outcomes)
            if down:
                self._down_for(outcomes, batch.probe)  # type: ignore[arg-type]
            sent: list[QueuedEvent] = []
            sent_items: list[BatchItem] = []
            for q, item, outcome in zip(queued, items, outcomes, strict=True):
                if isinstance(outcome, Delivered):
                    sent.append(q)
                    sent_items.append(item)
                elif isinstance(outcome, RetryLater):
                    self._retry(settlement, q, outcome, now)
                elif isinstance(outcome, Rejected):
                    reason = clean_text(outcome.reason, self._secrets, 500) or "rejected"
                    body = clean_text(outcome.body, self._secrets, BODY_LIMIT)
                    self._dead(
                        settlement,
                        q,
                        reason,
                        "vendor_rejected",
                        outcome.status,
                        body,
                        attempts=q.attempts + 1,
                    )
                elif isinstance(outcome, CredentialsRejected):
                    self._put_back_one(settlement, q, now, outcome)
                else:
                    word = f"plugin returned {type(outcome).__name__}"
                    self._retry(settlement, q, RetryLater(word), now)
            self._delivered(settlement, sent, sent_items, now)
        decided()
        await self._settle(settlement)
        if credentials is None and batch.probe:
            self._resume()
        if not down and credentials is None:
            await self._recovered()

    def _delivered(
        self, settlement: Settlement, queued: list[QueuedEvent], items: list[BatchItem], now: float
    ) -> None:
        """Settle ``queued`` (sent as ``items``) as delivered: done, journal, metrics."""
        if not queued:
            return
        settlement.done.extend(map(_SEQ, queued))
        self.journal.delivered_ids(
            [q.message_id if type(q) is StoredEvent else q.event.get("messageId") for q in queued],
            now,
        )
        # End-to-end latency from the time the queue stored the event; events of one group
        # commit share that time, so a batch has few distinct values to observe (counted in C).
        stored_at = Counter(map(_ENQUEUED_AT, queued))
        if stored_at.pop(None, 0):
            # A queue that does not know when it stored an event: the receive time instead.
            for q, item in zip(queued, items, strict=True):
                if q.enqueued_at is None and (received := received_epoch(item.event)) is not None:
                    stored_at[received] += 1
        for received, count in stored_at.items():
            self.metrics.observe(
                "crossdock_end_to_end_latency_seconds",
                self._labels,
                max(0.0, now - received),
                count,
            )
        self.metrics.inc("crossdock_events_delivered_total", self._labels, len(queued))
        self._counts["delivered"] += len(queued)
        self._last_success_at = now

    def _retry(
        self, settlement: Settlement, q: QueuedEvent, outcome: RetryLater, now: float
    ) -> None:
        attempts = q.attempts + 1
        first = q.first_attempt_at if q.first_attempt_at is not None else now
        reason = clean_text(outcome.reason, self._secrets, 500) or "retry"
        self._last_error = reason
        body = clean_text(outcome.body, self._secrets, BODY_LIMIT)
        if self._rule.gives_up(attempts, first, now):
            self._dead(
                settlement, q, reason, "max_attempts", outcome.status, body, attempts=attempts
            )
            return
        next_at = now + self._rule.delay(outcome, attempts, self.rng)
        self.journal.retrying(
            q.event, now, attempts=attempts, next_at=next_at, reason=reason,
            status=outcome.status, body=body,
        )  # fmt: skip
        key = self._hold_key(q.event)
        settlement.retries.append(Retry(q.seq, q.event, next_at, attempts, first, reason, key))
        self.metrics.inc("crossdock_events_retried_total", (self._id, retry_reason(outcome)))
        self._counts["retried"] += 1

    def _hold_key(self, event: Event) -> str | None:
        """The event's hold key under per-user ordering (``None`` without ordering)."""
        return hold_key(event) if self._order is not None else None

    def _dead(
        self,
        settlement: Settlement,
        q: QueuedEvent,
        reason: str,
        word: str,
        status: int | None = None,
        body: str | None = None,
        *,
        attempts: int | None = None,
    ) -> str:
        """Dead-letter ``q``; returns the reason as stored (secrets masked, cut)."""
        reason = clean_text(reason, self._secrets, 500) or word
        attempts = q.attempts if attempts is None else attempts
        settlement.dead.append(DeadLetter(q.seq, q.event, reason, attempts, status, body))
        self.metrics.inc("crossdock_events_dead_lettered_total", (self._id, word))
        self._counts["dead_lettered"] += 1
        log.info(
            "event dead-lettered",
            extra={"destination": self._id, "reason": reason, "status": status,
                   "messageId": q.event.get("messageId")},
        )  # fmt: skip
        return reason

    def _put_back_one(
        self,
        settlement: Settlement,
        q: QueuedEvent,
        now: float,
        outcome: CredentialsRejected | None = None,
    ) -> None:
        """Return an event to the queue untouched (attempts unchanged) while paused."""
        next_at = now + self._pause.probe_delay()
        key = self._hold_key(q.event)
        first = q.first_attempt_at if q.first_attempt_at is not None else now
        reason = self._pause.reason or "paused"
        status = outcome.status if outcome is not None else None
        self.journal.retrying(
            q.event, now, attempts=q.attempts, next_at=next_at, reason=reason, status=status
        )
        settlement.retries.append(Retry(q.seq, q.event, next_at, q.attempts, first, "paused", key))

    async def _put_back(self, batch: _Batch) -> None:
        now = self.clock()
        for q in batch.queued:
            self._put_back_one(batch.extra, q, now)
        await self._settle(batch.extra)

    async def _settle(self, settlement: Settlement) -> None:
        """One ``queue.settle``, tried until it succeeds (:meth:`_write_until_done`): an outcome
        forgotten would leave the event pending, hold back garbage collection and send it again
        after a restart.

        Retries of ordered users are remembered first, so later events of theirs are held.
        """
        if self._order is not None:
            for retry in settlement.retries:
                if retry.hold_key is not None:
                    self._order.mark_waiting(retry.hold_key, retry.seq, retry.next_at)
        await self._write_until_done(
            "settle",
            lambda: self.queue.settle(
                self._id, settlement.done, settlement.retries, settlement.dead
            ),
        )
        if settlement.dead:
            # once stored, so a journey that says dead-lettered finds the dead letter
            now = self.clock()
            for dead in settlement.dead:
                self.journal.dead_lettered(
                    dead.event, now, reason=dead.reason, attempts=dead.attempts,
                    status=dead.status, body=dead.body,
                )  # fmt: skip

    async def _write_until_done(self, operation: str, write: Callable[[], Any]) -> None:
        """Await ``write()`` until it succeeds, backing off (:attr:`write_backoff`), counting
        and logging each failure; :attr:`writes_failing` is true meanwhile."""
        failures = 0
        try:
            while True:
                try:
                    await write()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures += 1
                    if failures == 1:
                        self._writes_failing += 1
                    delay = self.write_backoff.delay(failures, self.rng)
                    error = clean_text(f"{type(exc).__name__}: {exc}", self._secrets, 500)
                    self._last_error = f"queue {operation} failed: {error}"
                    self.metrics.inc("crossdock_queue_write_retries_total", (self._id, operation))
                    log.warning(
                        "queue write failed; retrying",
                        extra={"destination": self._id, "operation": operation,
                               "attempt": failures, "retry_in": delay, "error": error},
                    )  # fmt: skip
                    await asyncio.sleep(delay)
                else:
                    if failures:
                        log.info(
                            "queue write succeeded after retries",
                            extra={"destination": self._id, "operation": operation,
                                   "attempts": failures + 1},
                        )  # fmt: skip
                    return
        finally:
            if failures:
                self._writes_failing -= 1

    # ------------------------------------------------------------------------------------------
    # Pause and resume

    def _pause_for(self, outcome: CredentialsRejected) -> None:
        reason = clean_text(outcome.reason, self._secrets, 500) or "credentials rejected"
        if self._pause.pause(reason):
            log.warning(
                "destination paused: credentials rejected",
                extra={"destination": self._id, "reason": reason, "status": outcome.status},
            )
        self._last_error = reason
        self.metrics.set("crossdock_destination_paused", self._labels, 1)

    def _resume(self) -> None:
        if self._pause.resume():
            log.info("destination resumed", extra={"destination": self._id})
            self._release_due = True
        self.metrics.set("crossdock_destination_paused", self._labels, 0)

    def _down_for(self, outcomes: Sequence[RetryLater], probe: bool) -> None:
        """A whole batch answered "retry later": the destination is down until a probe. Only
        a failed probe (or the first failure) moves the back-off on: batches that were in
        flight together fail together."""
        if self._down.paused and not probe:
            return
        after = max((o.after or 0.0 for o in outcomes), default=0.0)
        reason = clean_text(outcomes[0].reason, self._secrets, 500) or "retry later"
        if self._down.pause(reason, after):
            log.warning(
                "destination down: a whole batch answered retry later; probing",
                extra={"destination": self._id, "reason": reason, "status": outcomes[0].status},
            )
        self._release_due = True
        self.metrics.set("crossdock_destination_down", self._labels, 1)

    def _up(self) -> None:
        if self._down.resume():
            log.info("destination up again", extra={"destination": self._id})
        self.metrics.set("crossdock_destination_down", self._labels, 0)

    async def _recovered(self) -> None:
        """A batch was answered (not "retry later" as a whole): end an outage, and release the
        retries that waited through it or through a pause (all due now)."""
        self._up()
        if not self._release_due:
            return
        self._release_due = False
        released = 0

        async def release() -> None:
            nonlocal released
            released = await self.queue.release(self._id, self.clock())

        await self._write_until_done("release", release)
        if released:
            log.info(
                "waiting retries released",
                extra={"destination": self._id, "events": released},
            )

    # ------------------------------------------------------------------------------------------
    # Gauges

    async def _stats_loop(self) -> None:
        while True:
            try:
                stats = await self.queue.stats(self._id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("queue stats failed", exc_info=True, extra={"destination": self._id})
            else:
                labels = self._labels
                self.metrics.set("crossdock_queue_pending", labels, stats.pending)
                self.metrics.set("crossdock_queue_retrying", labels, stats.retrying)
                self.metrics.set("crossdock_queue_dead_letters", labels, stats.dead)
                lag = 0.0 if stats.oldest_at is None else max(0.0, self.clock() - stats.oldest_at)
                self.metrics.set("crossdock_queue_lag_seconds", labels, lag)
            await asyncio.sleep(self.stats_interval)


_SEQ: Final = attrgetter("seq")
_ENQUEUED_AT: Final = attrgetter("enqueued_at")


def _vendor_down(outcomes: Sequence[Outcome]) -> bool:
    """Whether a batch's outcomes say the vendor is down: every event answered "retry later",
    and either the batch had several events or no HTTP answer came (refused, timed out). One
    event refused with a status may be that event's own problem: it waits out its backoff
    without stopping the destination."""
    if not outcomes or not all(isinstance(o, RetryLater) for o in outcomes):
        return False
    return len(outcomes) > 1 or outcomes[0].status is None  # type: ignore[union-attr]


def _filter_reason(event: Event, drop_reason: Callable[[Event], str | None] | None) -> str:
    """Why the mapping filtered ``event``, for the destination tail: ``where`` (the
    destination's condition is false) or the mapping's rule (``no section (type group)``,
    ``section group: drop``). Slow path: only while someone subscribes."""
    try:
        reason = drop_reason(event) if drop_reason else None
    except Exception:  # the tail must never cost the batch
        reason = None
    return "where" if reason in (None, "filtered") else reason


def _source_of(event: Event) -> Any:
    context = event.get("context")
    if isinstance(context, dict):
        meta = context.get("crossdock")
        if isinstance(meta, dict):
            return meta.get("source")
    return None
