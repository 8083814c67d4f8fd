"""The aiohttp application: ``make_app(config, registry)`` and ``run_app`` for the daemon.

State lives on the app (``crossdock.keys``); the queue, the HTTP client session and the
delivery workers are opened and closed in cleanup contexts, so tests and the daemon start and
stop exactly the same way. Stage factories run here, once per configured component; the hot
path then calls the objects they returned.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from crossdock import keys
from crossdock.config import Config
from crossdock.delivery import DestinationWorker
from crossdock.ingest import add_source_routes
from crossdock.metrics import Metrics
from crossdock.queue import make_queue
from crossdock.registry import Registry
from crossdock.types import Transformer
from crossdock.web import admin, health, metrics

log = logging.getLogger("crossdock.app")

# Bodies are limited per source while reading (Segment's limits are far below this); this only
# stops aiohttp from refusing a request before the source can answer with its own message.
CLIENT_MAX_SIZE = 16 * 1024 * 1024


def make_app(config: Config, registry: Registry) -> web.Application:
    """Build the application for ``config``: routes, queue, workers (started on startup)."""
    app = web.Application(client_max_size=CLIENT_MAX_SIZE, middlewares=[admin.admin_auth])
    app[keys.CONFIG] = config
    app[keys.REGISTRY] = registry
    app[keys.METRICS] = Metrics()
    app[keys.QUEUE] = make_queue(config.queue)
    app[keys.TAIL] = admin.EventTail()
    app[keys.WORKERS] = {}
    app[keys.SHUTTING_DOWN] = [False]

    transformers = {d.id: registry.make_transformer(d) for d in config.destinations}
    for source in config.sources:
        ingestor = registry.make_ingestor(source)
        add_source_routes(
            app, source, ingestor, app[keys.QUEUE], app[keys.METRICS], [app[keys.TAIL]]
        )
    app.router.add_routes(health.routes())
    app.router.add_routes(metrics.routes())
    app.router.add_routes(admin.routes())

    app.cleanup_ctx.append(_queue_context)
    app.cleanup_ctx.append(_http_context)
    app.cleanup_ctx.append(_workers_context(transformers))
    app.on_shutdown.append(_mark_shutting_down)
    return app


async def _mark_shutting_down(app: web.Application) -> None:
    app[keys.SHUTTING_DOWN][0] = True


async def _queue_context(app: web.Application) -> AsyncIterator[None]:
    queue = app[keys.QUEUE]
    await queue.open([d.id for d in app[keys.CONFIG].destinations])
    log.info("queue open", extra=queue.info())
    yield
    await queue.close()


async def _http_context(app: web.Application) -> AsyncIterator[None]:
    timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=60)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=64, ttl_dns_cache=300)
    session = aiohttp.ClientSession(timeout=timeout, connector=connector)
    app[keys.HTTP] = session
    yield
    await session.close()


def _workers_context(transformers: dict[str, Transformer]):
    async def context(app: web.Application) -> AsyncIterator[None]:
        config = app[keys.CONFIG]
        registry = app[keys.REGISTRY]
        workers = app[keys.WORKERS]
        for destination in config.destinations:
            deliverer = registry.make_deliverer(destination, app[keys.HTTP])
            workers[destination.id] = DestinationWorker(
                destination,
                transformers[destination.id],
                deliverer,
                app[keys.QUEUE],
                app[keys.METRICS],
            )
        for worker in workers.values():
            await worker.start()
        yield
        timeout = config.server.shutdown_timeout
        for worker in workers.values():
            await worker.stop(timeout)
        for worker in workers.values():
            await worker.deliverer.close()

    return context


def split_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:8088"`` → ``("127.0.0.1", 8088)``; ``"[::1]:8088"`` works too."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def run_app(config: Config, registry: Registry, *, sock: socket.socket | None = None) -> None:
    """Run the daemon until SIGTERM/SIGINT, then shut down gracefully.

    On a signal: stop accepting connections, let in-flight requests finish (up to
    ``server.shutdown_timeout``), stop the workers (in-flight batches finish, the rest stays
    queued), close the queue, exit 0.
    """
    from crossdock.logs import setup_logging

    setup_logging(config.log.level, config.log.format, config.secrets())
    host, port = split_listen(config.server.listen)
    app = make_app(config, registry)
    log.info(
        "crossdock starting",
        extra={"listen": config.server.listen, "sources": len(config.sources),
               "destinations": len(config.destinations)},
    )  # fmt: skip
    web.run_app(
        app,
        host=None if sock else host,
        port=None if sock else port,
        sock=sock,
        shutdown_timeout=config.server.shutdown_timeout,
        access_log=None,
        print=lambda message: log.info(message.strip()),
        handle_signals=True,
    )
    log.info("crossdock stopped")
