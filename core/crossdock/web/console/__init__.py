"""The Crossdock console: a web page served by the daemon under ``/console`` (issue 13).

A sub-application, so its middleware and response headers cost nothing to the other routes
(ingest above all). :func:`mount` adds it to the daemon's application and makes its ring of
recent events a listener of the admin API's event tail.

- ``GET /console``: the page (``static/index.html``); 403 and ``static/off.html`` when
  ``server.admin_token`` is not set. ``GET /console/`` redirects to ``/console``.
- ``GET /console/static/{path}``: the page's files.
- ``/console/api/*``: the JSON API (:mod:`.api`), authorised by a signed session cookie
  (:mod:`.auth`) or ``Authorization: Bearer <admin token>``.

The cookie is stateless, so it works on every process of ``crossdock run --workers N``; the
ring, streams, journals and jobs are each process's own, and under ``--workers`` the process a
request reaches asks the others over their Unix sockets (:mod:`.peers`, :mod:`.internal`).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from crossdock.web import keys
from crossdock.web.console import api, pages
from crossdock.web.console.auth import check_request, error
from crossdock.web.console.state import ConsoleState, state_of

__all__ = ["ConsoleState", "mount"]

_OPEN_PATHS = ("/console/api/session",)


@web.middleware
async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every ``/console/api`` request but the session's is authorised (see :mod:`.auth`)."""
    path = request.path
    if not path.startswith("/console/api/") and path != "/console/api":
        return await handler(request)
    state = state_of(request)
    config = state.config
    token = config.server.admin_token
    signer = state.signer()
    if token is None or signer is None:
        return error(403, "console_disabled", "the console is off: set server.admin_token")
    if path in _OPEN_PATHS:
        return await handler(request)
    public_url = str(config.server.public_url) if config.server.public_url else None
    refused = check_request(request, token, signer, public_url, time.time())
    if refused is not None:
        return refused
    return await handler(request)


async def _index(request: web.Request) -> web.StreamResponse:
    enabled = state_of(request).config.server.admin_token is not None
    return await pages.index(request, enabled)


async def _slash(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console")


def make_console_app(root: web.Application) -> web.Application:
    """The ``/console`` sub-application of ``root`` (the daemon's application)."""
    state = ConsoleState(root)
    root[keys.CONSOLE] = state
    console = web.Application(middlewares=[api.bad_requests, guard])
    console.on_response_prepare.append(pages.add_security_headers)
    console.router.add_get("", _index)
    console.router.add_get("/", _slash)
    console.router.add_get("/static/{path:.+}", pages.static_file)
    console.router.add_routes(api.routes())
    console.router.add_route("*", "/api/{rest:.*}", api.not_found)

    async def close_streams(_app: web.Application) -> None:
        state.hub.close()
        await state.jobs.close()

    console.on_shutdown.append(close_streams)
    return console


def mount(app: web.Application) -> ConsoleState:
    """Add the console to ``app`` (before the catch-all source routes) and feed its ring from
    the admin event tail; returns the console's state."""
    console = make_console_app(app)
    app.add_subapp("/console", console)
    state: ConsoleState = app[keys.CONSOLE]
    app[keys.TAIL].listeners.append(state.hub)
    return state
