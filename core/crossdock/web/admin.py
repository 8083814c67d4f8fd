"""The admin API under ``/admin`` (``Authorization: Bearer <server.admin_token>``).

- ``GET  /admin/destinations``                 status of every destination (incl. lag, pause reason)
- ``GET  /admin/destinations/{id}``            one destination
- ``POST /admin/destinations/{id}/dry-run``    body: an event; answers the payload it would get
- ``GET  /admin/dlq?destination=&limit=&offset=``  dead-letter entries
- ``POST /admin/dlq/replay``                   body: ``{"destination"?, "ids"?}``
- ``POST /admin/dlq/purge``                    body: ``{"destination"?, "ids"?}``
- ``GET  /admin/tail?source=``                 live NDJSON stream of accepted events

Without an ``admin_token`` in the config the admin API answers 403 on every path.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any

import orjson
from aiohttp import web

from crossdock.errors import Unsendable
from crossdock.ingest.handler import error_body, json_response
from crossdock.web import keys

MAX_DLQ_PAGE = 1000


@web.middleware
async def admin_auth(request: web.Request, handler: Any) -> web.StreamResponse:
    """Check the bearer token on every ``/admin`` path, in constant time."""
    if not request.path.startswith("/admin"):
        return await handler(request)
    token = request.app[keys.CONFIG].server.admin_token
    if token is None:
        body = error_body("admin_disabled", "the admin API is off: set server.admin_token")
        return json_response(403, body)
    given = request.headers.get("Authorization", "")
    expected = "Bearer " + token.reveal()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return json_response(401, error_body("unauthorized", "missing or wrong admin token"),
                             {"WWW-Authenticate": "Bearer"})  # fmt: skip
    return await handler(request)


async def _status(request: web.Request, destination_id: str) -> dict[str, Any]:
    app = request.app
    worker = app[keys.WORKERS][destination_id]
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


def _worker_id(request: web.Request) -> str:
    destination_id = request.match_info["id"]
    if destination_id not in request.app[keys.WORKERS]:
        body = orjson.dumps(error_body("not_found", f"no destination {destination_id!r}"))
        raise web.HTTPNotFound(body=body, content_type="application/json")
    return destination_id


async def destinations(request: web.Request) -> web.Response:
    """Status of every destination."""
    rows = [await _status(request, d) for d in request.app[keys.WORKERS]]
    return json_response(200, {"destinations": rows})


async def destination(request: web.Request) -> web.Response:
    """Status of one destination."""
    return json_response(200, await _status(request, _worker_id(request)))


async def dry_run(request: web.Request) -> web.Response:
    """Transform the posted event as the destination would; nothing is sent or stored."""
    worker = request.app[keys.WORKERS][_worker_id(request)]
    try:
        event = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return json_response(400, error_body("invalid_json", "body: not valid JSON"))
    if not isinstance(event, dict):
        return json_response(400, error_body("invalid_event", "body: must be a JSON object"))
    try:
        payload = worker.transform(event)
    except Unsendable as exc:
        return json_response(422, error_body("unsendable", exc.reason))
    except Exception as exc:
        message = f"transform failed: {type(exc).__name__}: {exc}"
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
    rows = [
        {
            "id": e.id, "destination": e.destination, "reason": e.reason, "status": e.status,
            "body": e.body, "attempts": e.attempts, "failed_at": e.failed_at, "event": e.event,
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


class EventTail:
    """Fan-out of accepted events to live ``/admin/tail`` subscribers (bounded, lossy)."""

    def __init__(self, max_buffer: int = 1000) -> None:
        self.subscribers: set[asyncio.Queue[tuple[str, dict[str, Any]]]] = set()
        self.max_buffer = max_buffer

    def __call__(self, source_id: str, events: list[dict[str, Any]]) -> None:
        """Listener called by the ingest handler; drops events a slow subscriber cannot take."""
        for subscriber in self.subscribers:
            for event in events:
                if subscriber.full():
                    break
                subscriber.put_nowait((source_id, event))


async def tail(request: web.Request) -> web.StreamResponse:
    """Stream accepted events as NDJSON until the client disconnects."""
    hub: EventTail = request.app[keys.TAIL]
    only = request.query.get("source")
    subscriber: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(hub.max_buffer)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    hub.subscribers.add(subscriber)
    try:
        while True:
            source_id, event = await subscriber.get()
            if only is None or only == source_id:
                await response.write(orjson.dumps(event) + b"\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.subscribers.discard(subscriber)
    return response


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
    ]
