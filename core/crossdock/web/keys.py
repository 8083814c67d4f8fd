"""Every ``web.AppKey`` of the application, in one place (no module globals elsewhere)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    import aiohttp

    from crossdock.config.load import Config
    from crossdock.deliver.worker import DestinationWorker
    from crossdock.metrics import Metrics
    from crossdock.plugins.registry import Registry
    from crossdock.queue import Queue
    from crossdock.web.reload import Reloader

CONFIG: web.AppKey[Config] = web.AppKey("config")
REGISTRY: web.AppKey[Registry] = web.AppKey("registry")
QUEUE: web.AppKey[Queue] = web.AppKey("queue")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
HTTP: web.AppKey[aiohttp.ClientSession] = web.AppKey("http")
WORKERS: web.AppKey[dict[str, DestinationWorker]] = web.AppKey("workers")
TAIL: web.AppKey[Any] = web.AppKey("tail")
SHUTTING_DOWN: web.AppKey[list[bool]] = web.AppKey("shutting_down")
RELOADER: web.AppKey[Reloader] = web.AppKey("reloader")
CONSOLE: web.AppKey[Any] = web.AppKey("console")
"""The console's per-process state (:class:`crossdock.web.console.state.ConsoleState`)."""
DELIVERING_PROCESS: web.AppKey[Any] = web.AppKey("delivering_process")
"""Set in a process that does not deliver while another one does (``crossdock run --workers N``
on ``sqlite``): :class:`crossdock.web.console.internal.DeliveringProcess`, through which the
admin API's destination status and destination tail come from the delivering process (only
it knows its workers' state and builds their records)."""
