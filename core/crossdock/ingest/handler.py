"""The core's HTTP handler around ingestors: parse → normalise → store durably → answer.

A source's ingestor only turns a request into Spec messages. Everything that must hold for
every source lives here, once: Spec validation and normalisation (:mod:`.normalize`), loop
prevention, deduplication and the durable append (the queue), the 200-only-after-commit rule,
error answers in the shape Segment clients read, and metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import orjson
from aiohttp import web

from crossdock.errors import IngestError, QueueError
from crossdock.ingest import normalize as events
from crossdock.ingest.limits import (
    DEFAULT_LIMITS,
    IngestGate,
    IngestLimits,
    set_current_limits,
    too_many_events,
)
from crossdock.ingest.stored_checks import check_stored_rows, check_unencoded
from crossdock.metrics import Metrics
from crossdock.queue import AppendResult, EncodedEvent, Queue, encode_rows
from crossdock.types import Ingestor, Source

log = logging.getLogger("crossdock.ingest")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
EventListener = Callable[[str, list[dict[str, Any]]], None]


@runtime_checkable
class AppendsEncoded(Protocol):
    """A queue that also takes events serialized by the caller (both built-in queues)."""

    async def append_encoded(self, rows: list[EncodedEvent]) -> AppendResult:
        """:meth:`Queue.append` for ``(messageId or None, JSON bytes)`` rows."""
        ...


@runtime_checkable
class WantsEvents(Protocol):
    """A listener that says whether it wants a source's events now (the admin live tail, when
    someone is subscribed); the handler then keeps a request's parsed events until its commit
    only if one does, and holds just their bytes otherwise."""

    def wants_events(self, source_id: str) -> bool:
        """Whether events of ``source_id`` accepted now are wanted."""
        ...


@runtime_checkable
class TakesEncoded(Protocol):
    """A :class:`WantsEvents` listener that, when it did not want a request's parsed events,
    still hears of them as the stored bytes (the console's ring of recent events keeps bytes,
    which the garbage collector never scans, and decodes the few it is asked for)."""

    def accept_encoded(self, source_id: str, rows: list[EncodedEvent]) -> None:
        """``rows`` of ``source_id`` were stored (called after the commit)."""
        ...


# One gate per application: the concurrency limit is daemon-wide, across every source.
INGEST_GATE: web.AppKey[IngestGate] = web.AppKey("ingest_gate")


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON answer serialized once with orjson."""
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers=headers,
    )


def error_body(code: str, message: str) -> dict[str, Any]:
    """The error document Segment clients read (``code`` and a never-empty ``message``)."""
    return {"success": False, "code": code, "message": message or code}


def make_ingest_handler(
    source: Source,
    ingestor: Ingestor,
    queue: Queue,
    metrics: Metrics,
    listeners: list[EventListener] | None = None,
    gate: IngestGate | None = None,
) -> Handler:
    """Build the aiohttp handler serving ``ingestor``'s routes for ``source``.

    ``listeners`` are called with ``(source_id, events)`` after a successful append (the admin
    live tail); they must be cheap and never raise. ``gate`` holds the ingest limits and the
    count of requests in progress (shared by every source of the app; default limits without).
    """
    source_id = source.id
    labels = (source_id,)
    extra_headers = getattr(ingestor, "response_headers", None)
    listeners = listeners if listeners is not None else []
    gate = gate if gate is not None else IngestGate(DEFAULT_LIMITS)
    limits = gate.limits
    # A queue that takes events already serialized (``append_encoded``: SQLite and NATS) gets
    # them from :func:`encode_events`, which checks the depth in the same pass.
    append_encoded = queue.append_encoded if isinstance(queue, AppendsEncoded) else None

    async def handle(request: web.Request) -> web.Response:
        headers = extra_headers(request) if extra_headers is not None else None
        weight = gate.enter(request.content_length)
        if weight is None:
            metrics.inc("crossdock_requests_rejected_total", (source_id, "overloaded"))
            retry = {"Retry-After": str(limits.retry_after)}
            if headers:
                retry.update(headers)
            body = error_body("overloaded", "too many ingest requests in progress; retry later")
            return json_response(503, body, retry)
        metrics.set("crossdock_ingest_in_flight", (), gate.in_flight)
        try:
            return await _handle(request, headers)
        finally:
            gate.leave(weight)
            metrics.set("crossdock_ingest_in_flight", (), gate.in_flight)

    async def _handle(request: web.Request, headers: Mapping[str, str] | None) -> web.Response:
        started = time.perf_counter()
        set_current_limits(limits)
        try:
            ingested = await ingestor.ingest(request)
            if len(ingested.events) > limits.max_events:
                raise too_many_events(len(ingested.events), limits.max_events)
            normalized = events.normalize(ingested, source_id=source_id, received_at=time.time())
            looped = normalized.looped
            answer, answer_headers = ingested.body, ingested.headers
            tail: list[dict[str, Any]] | None = None
            encoded: list[EncodedEvent] | None = None
            if not normalized.events:
                result = None
            elif append_encoded is not None:
                rows = encode_events(normalized.events, ingested, limits.max_depth)
                check_stored_rows(rows, ingested)
                if _tail_wanted(listeners, source_id):
                    tail = normalized.events
                else:
                    encoded = rows
                # Only bytes wait for the commit: a parsed batch kept alive meanwhile would be
                # promoted through the garbage collector's generations and scanned again and
                # again (a quarter of the event loop's time under load, bench/ingest_profile.py).
                del ingested, normalized
                result = await append_encoded(rows)
            else:
                check_depth(normalized.events, ingested, limits.max_depth)
                check_unencoded(ingested)
                tail = normalized.events
                result = await queue.append(normalized.events)
        except IngestError as exc:
            metrics.inc("crossdock_requests_rejected_total", (source_id, exc.code))
            return json_response(exc.status, error_body(exc.code, exc.message), headers)
        except QueueError as exc:
            metrics.inc("crossdock_requests_rejected_total", (source_id, "queue_unavailable"))
            log.error("queue append failed", extra={"source": source_id, "error": str(exc)})
            body = error_body("queue_unavailable", "events could not be stored; retry later")
            return json_response(503, body, headers)
        if looped:
            metrics.inc("crossdock_events_looped_total", labels, looped)
        if result is not None:
            metrics.inc("crossdock_events_received_total", labels, result.stored)
            if result.duplicates:
                metrics.inc("crossdock_events_deduplicated_total", labels, result.duplicates)
            if tail is not None:
                for listener in listeners:
                    listener(source_id, tail)
            elif encoded is not None:
                for listener in listeners:
                    if isinstance(listener, TakesEncoded):
                        listener.accept_encoded(source_id, encoded)
        metrics.observe("crossdock_ingest_duration_seconds", labels, time.perf_counter() - started)
        all_headers = dict(answer_headers)
        if headers:
            all_headers.update(headers)
        return json_response(200, answer, all_headers)

    return handle


def check_depth(stored: list[dict[str, Any]], ingested: Any, max_depth: int) -> None:
    """400 ``too_deep`` naming the first event nested more than ``max_depth`` levels.

    orjson refuses to write more than 254 levels; wrapping the events in ``253 - max_depth``
    one-item lists makes one serialisation (in C, no Python walk) fail exactly when an event is
    deeper than ``max_depth``. Only then are the events checked one by one, to name it.
    """
    if not _too_deep(stored, 253 - max_depth):
        return
    for index, original in enumerate(ingested.events):
        if _too_deep(original, 254 - max_depth):
            label = events.label(ingested, index) or "body"
            msg = f"{label}: nested more than {max_depth} levels deep"
            raise IngestError(400, msg, code="too_deep")
    raise IngestError(400, f"body: nested more than {max_depth} levels deep", code="too_deep")


_COUNT_BRACKETS_UP_TO = 16
"""Requests of at most this many events have their depth bounded by counting brackets."""


def encode_events(
    stored: list[dict[str, Any]], ingested: Any, max_depth: int
) -> list[EncodedEvent]:
    """Serialize ``stored`` for the queue (orjson, once) and apply :func:`check_depth`.

    The depth check costs no second serialization of a small request: an event has no more
    levels than its JSON has ``{`` and ``[`` bytes (brackets inside strings only add to the
    count), so only an event over ``max_depth`` by that count is checked exactly. A larger
    request is checked by :func:`check_depth`'s one wrapped serialization, which costs about
    what counting would. An event orjson cannot write (nested beyond its limit) is the same
    400 ``too_deep`` as before.
    """
    try:
        rows = encode_rows(stored)
    except orjson.JSONEncodeError as exc:
        check_depth(stored, ingested, max_depth)
        raise QueueError(f"event cannot be stored as JSON: {exc}") from None
    if len(rows) > _COUNT_BRACKETS_UP_TO:
        check_depth(stored, ingested, max_depth)
        return rows
    for _, data in rows:
        if data.count(b"{") + data.count(b"[") > max_depth:
            check_depth(stored, ingested, max_depth)
            break
    return rows


def _tail_wanted(listeners: list[EventListener], source_id: str) -> bool:
    """Whether a listener wants this request's events (one that is not a
    :class:`WantsEvents` always does)."""
    for listener in listeners:
        kind = type(listener)
        asks = _ASKS.get(kind)
        if asks is None:
            asks = _ASKS[kind] = isinstance(listener, WantsEvents)
        if not asks or listener.wants_events(source_id):  # type: ignore[attr-defined]
            return True
    return False


_ASKS: dict[type, bool] = {}
"""Listener type → whether it is a :class:`WantsEvents` (``isinstance`` on a Protocol is slow)."""


def _too_deep(value: Any, wrap: int) -> bool:
    for _ in range(wrap):
        value = [value]
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return True
    return False


def add_source_routes(
    app: web.Application,
    source: Source,
    ingestor: Ingestor,
    queue: Queue,
    metrics: Metrics,
    listeners: list[EventListener] | None = None,
    limits: IngestLimits | None = None,
) -> None:
    """Mount one source: its ingest routes through the core handler, plus its extra routes.

    Every source of ``app`` shares one :class:`IngestGate`, made by the first call with
    ``limits`` (``[server.limits]``; the defaults without).
    """
    gate = app.get(INGEST_GATE)
    if gate is None:
        gate = app[INGEST_GATE] = IngestGate(limits or DEFAULT_LIMITS)
    handler = make_ingest_handler(source, ingestor, queue, metrics, listeners, gate)
    for route in ingestor.routes():
        app.router.add_route(route.method, route.path, handler, name=None)
    web_routes = getattr(ingestor, "web_routes", None)
    if web_routes is not None:
        app.router.add_routes(web_routes())
