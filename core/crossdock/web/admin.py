"""The admin API under ``/admin`` (``Authorization: Bearer <server.admin_token>``).

- ``GET  /admin/destinations``                 status of every destination (incl. lag, pause reason)
- ``GET  /admin/destinations/{id}``            one destination
- ``POST /admin/destinations/{id}/dry-run``    body: an event; answers the payload it would get
- ``GET  /admin/dlq?destination=&limit=&offset=``  dead-letter entries (secrets masked)
- ``POST /admin/dlq/replay``                   body: ``{"destination"?, "ids"?}``
- ``POST /admin/dlq/purge``                    body: ``{"destination"?, "ids"?}``
- ``GET  /admin/tail?source=``                 live NDJSON stream of accepted events
- ``POST /admin/reload``                       re-read and apply the config file (below)
- ``GET  /admin/tail?destination=``            live NDJSON stream of the events that destination's
  worker did not send: filtered, dropped by its mapping, or dead-lettered at transform time
  (unsendable, transform failed, too large). One record per event, with no event data:
  ``{"destination", "messageId", "type", "event", "outcome", "reason"}``; ``outcome`` is
  ``filtered`` | ``dropped`` | ``dead_lettered``, ``reason`` the one the metrics count
  (``sources``, ``where``, ``section refund: null payload``, …) or the dead-letter reason
  (secrets masked). Only the delivering process has records; unknown destination → 404.

Both tails are bounded and lossy: a reader that falls 1000 records behind loses the excess, and
the hot path never waits for a reader. Without a subscriber the worker builds no record. A tail
ends within a second of its reader leaving and at once at shutdown; a reader that takes nothing
for :data:`WRITE_TIMEOUT` seconds is disconnected.

Reload (:mod:`crossdock.web.reload`): 200 ``{"success": true, "sources": {"added", "removed",
"changed"}, "destinations": {...}, "notes"}`` once applied; 422 ``{"success": false, "code":
"invalid_config", "message", "problems": [...]}`` with every problem when refused (the running
configuration stays). With ``crossdock run --workers N`` the answering process checks the file
and has the supervisor signal every process: 202 ``{"success": true, "forwarded": true}``.

Without an ``admin_token`` in the config the admin API answers 403 on every path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from crossdock.errors import Unsendable
from crossdock.ingest.handler import (
    EncodedEvent,
    TakesEncoded,
    WantsEvents,
    error_body,
    json_response,
)
from crossdock.secrets import mask
from crossdock.web import keys
from crossdock.web.reload import current_config

MAX_DLQ_PAGE = 1000


@web.middleware
async def admin_auth(request: web.Request, handler: Any) -> web.StreamResponse:
    """Check the bearer token on every ``/admin`` path, in constant time."""
    if not request.path.startswith("/admin"):
        return await handler(request)
    token = current_config(request.app).server.admin_token
    if token is None:
        body = error_body("admin_disabled", "the admin API is off: set server.admin_token")
        return json_response(403, body)
    given = request.headers.get("Authorization", "")
    expected = "Bearer " + token.reveal()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return json_response(401, error_body("unauthorized", "missing or wrong admin token"),
                             {"WWW-Authenticate": "Bearer"})  # fmt: skip
    return await handler(request)


async def status_row(
    app: web.Application, destination_id: str, worker: Any = None
) -> dict[str, Any]:
    """One destination's admin status in this process: its worker's state and the queue's
    counts (``worker`` defaults to the app's)."""
    worker = worker if worker is not None else app[keys.WORKERS][destination_id]
    stats = await app[keys.QUEUE].stats(destination_id)
    status = dict(worker.status())
    now = time.time()
    status.update(
        pending=stats.pending,
        retrying=stats.retrying,
        dead_letters=stats.dead,
        lag_seconds=round(max(0.0, now - stats.oldest_at), 3) if stats.oldest_at else 0.0,
    )
    return status


async def status_rows(app: web.Application) -> list[dict[str, Any]]:
    """Every destination's :func:`status_row` in this process."""
    # A copy: a reload may add or remove workers while the statuses are awaited.
    workers = dict(app[keys.WORKERS])
    return [await status_row(app, d, w) for d, w in workers.items()]


_UNAVAILABLE = error_body("unavailable", "the delivering process did not answer; retry later")


async def _rows_of_delivering_process(request: web.Request) -> list[dict[str, Any]] | None:
    """Under ``--workers`` on ``sqlite``, in a process that does not deliver: the delivering
    process's rows (its workers' state is not known here); ``None`` when this one delivers.
    503 when the delivering process does not answer (e.g. while it restarts)."""
    elsewhere = request.app.get(keys.DELIVERING_PROCESS)
    if elsewhere is None:
        return None
    rows = await elsewhere.status_rows()
    if rows is None:
        raise web.HTTPServiceUnavailable(
            body=orjson.dumps(_UNAVAILABLE),
            content_type="application/json",
            headers={"Retry-After": "1"},
        )
    return list(rows)


def _worker_id(request: web.Request) -> str:
    destination_id = request.match_info["id"]
    if destination_id not in request.app[keys.WORKERS]:
        body = orjson.dumps(error_body("not_found", f"no destination {destination_id!r}"))
        raise web.HTTPNotFound(body=body, content_type="application/json")
    return destination_id


async def destinations(request: web.Request) -> web.Response:
    """Status of every destination."""
    rows = await _rows_of_delivering_process(request)
    if rows is None:
        rows = await status_rows(request.app)
    return json_response(200, {"destinations": rows})


async def destination(request: web.Request) -> web.Response:
    """Status of one destination."""
    destination_id = _worker_id(request)
    rows = await _rows_of_delivering_process(request)
    if rows is None:
        return json_response(200, await status_row(request.app, destination_id))
    for row in rows:
        if row.get("id") == destination_id:
            return json_response(200, row)
    body = error_body("not_found", f"no destination {destination_id!r}")
    return json_response(404, body)


async def dry_run(request: web.Request) -> web.Response:
    """Transform the posted event as the destination would; nothing is sent or stored."""
    worker = request.app[keys.WORKERS][_worker_id(request)]
    try:
        event = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return json_response(400, error_body("invalid_json", "body: not valid JSON"))
    if not isinstance(event, dict):
        return json_response(400, error_body("invalid_event", "body: must be a JSON object"))
    secrets = current_config(request.app).secrets()
    try:
        payload = worker.transform(event)
    except Unsendable as exc:
        return json_response(422, error_body("unsendable", mask(exc.reason, secrets)))
    except Exception as exc:
        message = mask(f"transform failed: {type(exc).__name__}: {exc}", secrets)
        return json_response(422, error_body("transform_failed", message))
    answer: dict[str, Any] = {"dropped": payload is None, "payload": payload}
    if payload is None:
        answer["reason"] = worker.drop_reason(event)
    return json_response(200, answer)


async def _ids_body(request: web.Request) -> tuple[str | None, list[int] | None]:
    raw = await request.read()
    try:
        doc = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise web.HTTPBadRequest(
            body=orjson.dumps(error_body("invalid_json", "body: not valid JSON")),
            content_type="application/json",
        ) from None
    destination_id = doc.get("destination") or request.query.get("destination")
    ids = doc.get("ids")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, int) for i in ids)):
        raise web.HTTPBadRequest(
            body=orjson.dumps(error_body("invalid_ids", "ids: must be a list of integers")),
            content_type="application/json",
        )
    return destination_id, ids


async def dlq_list(request: web.Request) -> web.Response:
    """Dead-letter entries, oldest first."""
    try:
        limit = min(int(request.query.get("limit", "100")), MAX_DLQ_PAGE)
        offset = int(request.query.get("offset", "0"))
    except ValueError:
        return json_response(400, error_body("invalid_query", "limit/offset: must be integers"))
    entries = await request.app[keys.QUEUE].dlq_list(
        request.query.get("destination"), limit=limit, offset=offset
    )
    # masked again here: entries stored by an older version may hold a secret in clear
    secrets = current_config(request.app).secrets()
    rows = [
        {
            "id": e.id, "destination": e.destination, "reason": mask(e.reason, secrets),
            "status": e.status, "body": mask(e.body, secrets) if e.body is not None else None,
            "attempts": e.attempts, "failed_at": e.failed_at, "event": e.event,
        }
        for e in entries
    ]  # fmt: skip
    return json_response(200, {"entries": rows})


async def dlq_replay(request: web.Request) -> web.Response:
    """Queue dead-lettered events again."""
    destination_id, ids = await _ids_body(request)
    count = await request.app[keys.QUEUE].dlq_replay(destination_id, ids)
    return json_response(200, {"replayed": count})


async def dlq_purge(request: web.Request) -> web.Response:
    """Delete dead-letter entries."""
    destination_id, ids = await _ids_body(request)
    count = await request.app[keys.QUEUE].dlq_purge(destination_id, ids)
    return json_response(200, {"purged": count})


DISCONNECT_POLL = 1.0
"""Seconds between checks that a tail's reader is still connected while nothing arrives."""

WRITE_TIMEOUT = 10.0
"""Seconds a stream's write may wait for a reader that takes nothing (its connection is then
closed and the stream released)."""

STREAM_GRACE = 1.0
"""At shutdown, seconds streams get to end by themselves before their connections are closed."""


class NotSentTail:
    """Fan-out of the records of events a destination did not send to live
    ``/admin/tail?destination=`` subscribers (bounded, lossy): the worker's
    :class:`~crossdock.deliver.worker.NotSentListener`."""

    def __init__(self, max_buffer: int = 1000) -> None:
        self.subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self.max_buffer = max_buffer

    def wants(self, destination_id: str) -> bool:
        """Whether ``destination_id`` has a subscriber (emptied sets are removed)."""
        return destination_id in self.subscribers

    def __call__(self, destination_id: str, records: list[dict[str, Any]]) -> None:
        """Hand ``records`` to each subscriber of ``destination_id``; a full one loses them."""
        for subscriber in self.subscribers.get(destination_id, ()):
            for record in records:
                if subscriber.full():
                    break
                subscriber.put_nowait(record)

    def subscribe(self, destination_id: str) -> asyncio.Queue[dict[str, Any]]:
        """A new bounded queue that receives ``destination_id``'s records."""
        subscriber: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.max_buffer)
        self.subscribers.setdefault(destination_id, set()).add(subscriber)
        return subscriber

    def unsubscribe(self, destination_id: str, subscriber: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop feeding ``subscriber``; the destination's set goes when it is empty."""
        subscribers = self.subscribers.get(destination_id)
        if subscribers is None:
            return
        subscribers.discard(subscriber)
        if not subscribers:
            del self.subscribers[destination_id]


_KINDS: dict[tuple[type, type], bool] = {}


def _is(listener: object, protocol: type) -> Any:
    """``isinstance(listener, protocol)``, cached by type (a Protocol check is slow and this
    runs on every ingest request)."""
    key = (type(listener), protocol)
    known = _KINDS.get(key)
    if known is None:
        known = _KINDS[key] = isinstance(listener, protocol)
    return known


class EventTail:
    """Fan-out of accepted events to live ``/admin/tail`` subscribers (bounded, lossy); its
    :attr:`not_sent` hub carries the destination tail. :attr:`listeners` hear every call too
    (the console's ring of recent events); :attr:`closed` is set at shutdown, which ends every
    tail at once."""

    def __init__(self, max_buffer: int = 1000) -> None:
        self.subscribers: set[asyncio.Queue[tuple[str, dict[str, Any]]]] = set()
        self.max_buffer = max_buffer
        self.not_sent = NotSentTail(max_buffer)
        self.listeners: list[Callable[[str, list[dict[str, Any]]], None]] = []
        self.closed = asyncio.Event()
        self.streams: set[asyncio.BaseTransport] = set()

    def wants_events(self, source_id: str) -> bool:
        """Whether a request's parsed events are wanted (an ``/admin/tail`` reader, or a
        listener that wants them); otherwise the handler holds only their bytes while the
        commit runs, and :meth:`accept_encoded` hears of them."""
        if self.subscribers:
            return True
        for listener in self.listeners:
            if not _is(listener, WantsEvents) or listener.wants_events(source_id):
                return True
        return False

    def accept_encoded(self, source_id: str, rows: list[EncodedEvent]) -> None:
        """The stored bytes of events nobody wanted parsed, for listeners that keep them."""
        for listener in self.listeners:
            if _is(listener, TakesEncoded):
                listener.accept_encoded(source_id, rows)

    def __call__(self, source_id: str, events: list[dict[str, Any]]) -> None:
        """Listener called by the ingest handler; drops events a slow subscriber cannot take."""
        for subscriber in self.subscribers:
            for event in events:
                if subscriber.full():
                    break
                subscriber.put_nowait((source_id, event))
        for listener in self.listeners:
            listener(source_id, events)

    def close(self) -> None:
        """Shutdown: every open tail ends now (SIGTERM never waits for a reader); a stream
        still writing to a reader that does not read a second later has its connection
        closed."""
        self.closed.set()
        if not self.streams:
            return
        try:
            asyncio.get_running_loop().call_later(STREAM_GRACE, self._abort_streams)
        except RuntimeError:
            self._abort_streams()

    def _abort_streams(self) -> None:
        for transport in list(self.streams):
            transport.abort()
        self.streams.clear()

    @contextlib.contextmanager
    def stream(self, request: web.Request) -> Iterator[None]:
        """Count ``request``'s connection among the open streams while the block runs."""
        transport = request.transport
        if transport is not None:
            self.streams.add(transport)
        try:
            yield
        finally:
            if transport is not None:
                self.streams.discard(transport)


async def write_or_let_go(request: web.Request, response: web.StreamResponse, data: bytes) -> None:
    """``response.write(data)``; a reader that takes nothing for :data:`WRITE_TIMEOUT` seconds
    has its connection closed (``ConnectionResetError``): a stalled or vanished client holds
    neither memory nor the handler."""
    try:
        async with asyncio.timeout(WRITE_TIMEOUT):
            await response.write(data)
    except TimeoutError:
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise ConnectionResetError("the reader stopped reading") from None


async def tail(request: web.Request) -> web.StreamResponse:
    """Stream accepted events (``?source=``, or all) or a destination's not-sent records
    (``?destination=``) as NDJSON until the client disconnects."""
    hub: EventTail = request.app[keys.TAIL]
    only = request.query.get("source")
    destination_id = request.query.get("destination")
    if destination_id is not None:
        if only is not None:
            message = "give source or destination, not both"
            return json_response(400, error_body("invalid_query", message))
        if destination_id not in request.app[keys.WORKERS]:
            return json_response(404, error_body("not_found", f"no destination {destination_id!r}"))
        elsewhere = request.app.get(keys.DELIVERING_PROCESS)
        if elsewhere is not None:
            # Only the delivering process builds these records: relay its tail.
            return await _relayed_tail(request, hub, elsewhere, destination_id)
        return await not_sent_tail(request, hub, destination_id)
    subscriber: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(hub.max_buffer)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    hub.subscribers.add(subscriber)
    try:
        await response.prepare(request)
        with hub.stream(request):
            async for source_id, event in _records(request, subscriber, hub.closed):
                if only is None or only == source_id:
                    await write_or_let_go(request, response, orjson.dumps(event) + b"\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        # Released as soon as the reader goes (or the daemon stops), not at the next event.
        hub.subscribers.discard(subscriber)
    return response


async def _records(
    request: web.Request, subscriber: asyncio.Queue[Any], closed: asyncio.Event
) -> AsyncIterator[Any]:
    """What ``subscriber`` receives, until the reader leaves or ``closed`` is set.

    One pending get across the disconnect checks: cancelling it on each check could lose a
    record taken at that moment.
    """
    getter: asyncio.Task[Any] | None = None
    stop = asyncio.ensure_future(closed.wait())
    try:
        while not closed.is_set() and not _gone(request):
            if getter is None and not subscriber.empty():
                yield subscriber.get_nowait()  # the common case under load: no task, no wait
                continue
            if getter is None:
                getter = asyncio.ensure_future(subscriber.get())
            await asyncio.wait(
                {getter, stop}, timeout=DISCONNECT_POLL, return_when=asyncio.FIRST_COMPLETED
            )
            if not getter.done():
                continue
            record, getter = getter.result(), None
            yield record
    finally:
        stop.cancel()
        if getter is not None:
            getter.cancel()


async def not_sent_tail(
    request: web.Request, tail_hub: EventTail, destination_id: str
) -> web.StreamResponse:
    """Stream ``destination_id``'s not-sent records of this process (``tail_hub``: the
    process's tails) as NDJSON until the reader leaves or the daemon stops."""
    hub: NotSentTail = tail_hub.not_sent
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    # Subscribed before the headers go out: a reader that has them misses nothing after.
    subscriber = hub.subscribe(destination_id)
    try:
        await response.prepare(request)
        with tail_hub.stream(request):
            async for record in _records(request, subscriber, tail_hub.closed):
                await write_or_let_go(request, response, orjson.dumps(record) + b"\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        # Unsubscribed as soon as the reader goes, so the worker stops building records.
        hub.unsubscribe(destination_id, subscriber)
    return response


async def _relayed_tail(
    request: web.Request, tail_hub: EventTail, elsewhere: Any, destination_id: str
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    try:
        async with elsewhere.not_sent(destination_id) as upstream:
            if upstream is None:
                return json_response(503, _UNAVAILABLE, {"Retry-After": "1"})
            await response.prepare(request)
            with tail_hub.stream(request):
                while not tail_hub.closed.is_set() and not _gone(request):
                    try:
                        chunk = await asyncio.wait_for(upstream.readany(), DISCONNECT_POLL)
                    except TimeoutError:
                        continue
                    if not chunk:
                        break  # the delivering process stopped (or restarts): the tail ends
                    await write_or_let_go(request, response, chunk)
    except (ConnectionResetError, asyncio.CancelledError, aiohttp.ClientError):
        pass
    return response


def _gone(request: web.Request) -> bool:
    # aiohttp does not cancel a handler whose client left; a quiet stream would wait forever.
    transport = request.transport
    return transport is None or transport.is_closing()


async def reload(request: web.Request) -> web.Response:
    """Re-read, check and apply the configuration file (see the module docstring)."""
    outcome = await request.app[keys.RELOADER].reload(forward=True)
    status = 202 if outcome.forwarded else 200 if outcome.applied else 422
    return json_response(status, outcome.as_dict())


def routes() -> list[web.RouteDef]:
    """The admin routes (mounted with :func:`admin_auth` as middleware)."""
    return [
        web.get("/admin/destinations", destinations),
        web.get("/admin/destinations/{id}", destination),
        web.post("/admin/destinations/{id}/dry-run", dry_run),
        web.get("/admin/dlq", dlq_list),
        web.post("/admin/dlq/replay", dlq_replay),
        web.post("/admin/dlq/purge", dlq_purge),
        web.get("/admin/tail", tail),
        web.post("/admin/reload", reload),
    ]
