"""``SourceHarness``: one source plugin's ingestor served in-process through the core's handler.

The source is built from a ``[[sources]]`` TOML table by the real config loader (settings,
``[sources.mapping]`` overrides and ``[sources.tables.*]`` merged as in production), its
ingestor is made by the plugin's hook, and requests go through the core's ingest handler:
Spec validation and normalisation, the 200-only-after-append rule and the error bodies. The
queue is an in-memory list (``stored``) that deduplicates by ``messageId`` like the real one::

    async with SourceHarness(crossdock_hardal, SOURCE_TOML) as harness:
        status, body = await harness.post({"event_name": "purchase"}, token="t")
        assert harness.stored[0]["event"] == "Order Completed"
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType, TracebackType
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from crossdock.config.load import parse_config
from crossdock.ingest.handler import add_source_routes
from crossdock.metrics import Metrics
from crossdock.plugins.registry import load_registry
from crossdock.queue import AppendResult
from crossdock.types import Source

__all__ = ["MemoryQueue", "SourceHarness"]


class MemoryQueue:
    """The part of the queue the ingest handler uses: ``append`` keeps events in ``events``,
    skipping a ``messageId`` already stored (the real queue's deduplication)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._seen: set[str] = set()

    async def append(self, events: Sequence[dict[str, Any]]) -> AppendResult:
        """Store the new events; count the duplicates."""
        stored = 0
        for event in events:
            message_id = event["messageId"]
            if message_id in self._seen:
                continue
            self._seen.add(message_id)
            self.events.append(event)
            stored += 1
        return AppendResult(stored=stored, duplicates=len(events) - stored)


class SourceHarness:
    """Serve the source of ``source_toml`` (one ``[[sources]]`` table, TOML text) from
    ``plugin`` on 127.0.0.1; see the module docstring. ``env`` fills ``${VAR}`` references."""

    def __init__(
        self, plugin: ModuleType, source_toml: str, env: dict[str, str] | None = None
    ) -> None:
        registry = load_registry(entrypoints=False, extra_plugins=[(plugin.__name__, plugin)])
        config = parse_config(source_toml, registry, env or {})
        if len(config.sources) != 1:
            msg = "source_toml must hold exactly one [[sources]] table"
            raise ValueError(msg)
        self.source: Source = config.sources[0]
        self.ingestor = registry.make_ingestor(self.source)
        self.queue = MemoryQueue()
        self.metrics = Metrics()
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def stored(self) -> list[dict[str, Any]]:
        """Every event stored so far, normalised, in order."""
        return self.queue.events

    async def __aenter__(self) -> SourceHarness:
        app = web.Application(handler_args={"auto_decompress": False})  # as the daemon serves
        add_source_routes(app, self.source, self.ingestor, self.queue, self.metrics)  # type: ignore[arg-type]
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def post(
        self,
        body: Any,
        *,
        path: str | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """POST ``body`` (JSON-serialized unless bytes or str) to the source's path (or
        ``path``), with ``Authorization: Bearer <token>`` when ``token`` is given; returns the
        status and the parsed JSON answer (``None`` if it is not JSON)."""
        assert self._session is not None, "use 'async with SourceHarness(...)'"
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = orjson.dumps(body)
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        url = self.url + (path or self.source.path or "/")
        async with self._session.post(url, data=data, headers=all_headers) as response:
            text = await response.read()
            try:
                parsed = orjson.loads(text)
            except orjson.JSONDecodeError:
                parsed = None
            return response.status, parsed
