"""Reference servers for the benchmarks, each run as its own process.

- ``baseline PORT``: a bare aiohttp handler that parses the JSON body with orjson and answers
  200 ``{"success": true}`` (what ingest costs with no validation and no storage).
- ``sink PORT``: a bare HTTP sink for end-to-end runs: counts the events in each JSON body
  (an array counts its items) and reports the count at ``GET /count``.
"""

from __future__ import annotations

import sys

import orjson
from aiohttp import web


def baseline_app() -> web.Application:
    """The bare ingest handler."""

    async def handle(request: web.Request) -> web.Response:
        orjson.loads(await request.read())
        return web.Response(body=b'{"success":true}', content_type="application/json")

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/{kind}", handle)
    return app


def sink_app() -> web.Application:
    """The counting sink."""
    count = [0]

    async def receive(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        count[0] += len(body) if isinstance(body, list) else 1
        return web.Response(text="ok")

    async def report(request: web.Request) -> web.Response:
        return web.json_response({"count": count[0]})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/{tail:.*}", receive)
    app.router.add_get("/count", report)
    return app


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    factory = {"baseline": baseline_app, "sink": sink_app}[kind]
    web.run_app(factory(), host="127.0.0.1", port=port, access_log=None, print=None)
