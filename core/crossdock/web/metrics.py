"""``GET /metrics``: Prometheus text format, by stage with reasons (every process's under
``--workers``)."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from crossdock.web import keys


async def metrics(request: web.Request) -> web.Response:
    """Render every metric family; queue gauges are refreshed from the backend first."""
    app = request.app
    registry = app[keys.METRICS]
    queue = app[keys.QUEUE]
    now = time.time()
    for worker_id in app.get(keys.WORKERS, {}):
        stats = await queue.stats(worker_id)
        labels = (worker_id,)
        registry.set("crossdock_queue_pending", labels, stats.pending)
        registry.set("crossdock_queue_retrying", labels, stats.retrying)
        registry.set("crossdock_queue_dead_letters", labels, stats.dead)
        lag = max(0.0, now - stats.oldest_at) if stats.oldest_at is not None else 0.0
        registry.set("crossdock_queue_lag_seconds", labels, lag)
    return web.Response(
        body=registry.render(),
        headers={"Content-Type": CONTENT_TYPE_LATEST, "X-Content-Type-Options": "nosniff"},
    )


def routes() -> list[web.RouteDef]:
    """The metrics route."""
    return [web.get("/metrics", metrics)]
