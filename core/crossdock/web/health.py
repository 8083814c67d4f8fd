"""``GET /health`` (the process answers) and ``GET /ready`` (the queue is writable, and no
destination's queue write is failing and being retried)."""

from __future__ import annotations

from aiohttp import web

from crossdock.errors import QueueError
from crossdock.ingest.handler import json_response
from crossdock.web import keys


async def health(request: web.Request) -> web.Response:
    """Liveness: 200 while the process serves requests."""
    return json_response(200, {"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """Readiness: 200 when the queue accepts writes, no destination is retrying a failed queue
    write (a settle), and the server is not shutting down."""
    app = request.app
    if app.get(keys.SHUTTING_DOWN, [False])[0]:
        return json_response(503, {"status": "shutting_down"})
    failing = sorted(d for d, w in app.get(keys.WORKERS, {}).items() if w.writes_failing)
    if failing:
        return json_response(
            503,
            {
                "status": "queue_writes_failing",
                "message": "queue writes fail and are being retried",
                "destinations": failing,
            },
        )
    try:
        await app[keys.QUEUE].ping()
    except QueueError as exc:
        return json_response(503, {"status": "queue_unavailable", "message": str(exc)})
    return json_response(200, {"status": "ready"})


def routes() -> list[web.RouteDef]:
    """The health routes."""
    return [web.get("/health", health), web.get("/ready", ready)]
