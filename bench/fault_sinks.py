"""A counting HTTP sink that can fail on command, for the backlog and isolation benchmarks.

Run as its own process: ``fault_sinks.py PORT [STATUS]``. Every ``POST`` other than ``/mode``
is answered ``STATUS`` (default 200). While the status is 2xx the JSON body is counted: an
array counts its items, anything else counts as one event, and each ``messageId`` is kept so
the sink can tell how many distinct events it received and how many arrived more than once.

- ``POST /mode/{status}``: answer later requests with ``status`` (e.g. 503 while "down", 200
  when it comes back); the answer holds the counters at that moment.
- ``GET /count``: ``{"events", "unique", "duplicates", "refused", "first_at", "last_at"}``:
  events received while answering 2xx, distinct messageIds among them, repeats, requests
  answered with an error status, and the wall-clock times (``time.time()``) of the first and the
  last 2xx request that carried events.

:class:`FaultSink` is the same server inside a caller's event loop (tests).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson
from aiohttp import web


class SinkState:
    """What the sink has seen, and how it answers now."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.events = 0
        self.ids: set[str] = set()
        self.duplicates = 0
        self.refused = 0
        self.first_at = 0.0
        self.last_at = 0.0

    def count(self) -> dict[str, Any]:
        """The counters as JSON-able values."""
        return {
            "status": self.status,
            "events": self.events,
            "unique": len(self.ids),
            "duplicates": self.duplicates,
            "refused": self.refused,
            "first_at": self.first_at,
            "last_at": self.last_at,
        }

    def take(self, body: bytes) -> None:
        """Count the events of one accepted body."""
        doc = orjson.loads(body)
        events = doc if isinstance(doc, list) else [doc]
        ids = self.ids
        for event in events:
            mid = event.get("messageId") if isinstance(event, dict) else None
            if isinstance(mid, str):
                if mid in ids:
                    self.duplicates += 1
                else:
                    ids.add(mid)
        if events:
            now = time.time()
            self.first_at = self.first_at or now
            self.last_at = now
        self.events += len(events)


def sink_app(state: SinkState) -> web.Application:
    """The sink's routes over ``state``."""

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        if not 200 <= state.status < 300:
            state.refused += 1
            return web.json_response({"error": "down"}, status=state.status)
        state.take(body)
        return web.Response(text="ok")

    async def mode(request: web.Request) -> web.Response:
        state.status = int(request.match_info["status"])
        return web.json_response(state.count())

    async def report(request: web.Request) -> web.Response:
        return web.json_response(state.count())

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/mode/{status:\\d+}", mode)
    app.router.add_get("/count", report)
    app.router.add_post("/{tail:.*}", receive)
    return app


class FaultSink:
    """The sink in the caller's event loop on a free port (``async with``)."""

    def __init__(self, status: int = 200) -> None:
        self.state = SinkState(status)
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Base URL, no trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FaultSink:
        self._runner = web.AppRunner(sink_app(self.state), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


if __name__ == "__main__":
    port = int(sys.argv[1])
    status = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    web.run_app(
        sink_app(SinkState(status)), host="127.0.0.1", port=port, access_log=None, print=None
    )
