"""Source routes that can change while the server runs.

aiohttp freezes an application's router when the server starts, so the sources' routes do not
live in it. The application has one catch-all route, added after every fixed route (health,
metrics, admin); its handler, :meth:`SourceRoutes.dispatch`, resolves the request against a
private router holding the running configuration's source routes. A reload builds a new private
router and swaps it in with one assignment: a request already being handled keeps the handler
it was given, every request resolved after the swap sees only the new table.

Because every path reaches the catch-all, aiohttp's own "405 Method Not Allowed" for a fixed
route (``POST /ready``) would never happen: :meth:`SourceRoutes.dispatch` answers it itself, from
the fixed routes and the source routes together. Both refusals carry the API's JSON error body.
"""

from __future__ import annotations

from aiohttp import web

from crossdock.ingest.handler import error_body, json_response

CATCH_ALL = "/{crossdock_source_path:.*}"
"""The application route whose handler dispatches to the source routes (registered last)."""


def new_router() -> web.UrlDispatcher:
    """An empty private router for one generation of source routes."""
    return web.UrlDispatcher()


class SourceRoutes:
    """The source routes of the running configuration, swapped whole on reload."""

    def __init__(self) -> None:
        self._router = new_router()
        self._router.freeze()
        self._catch_all: web.AbstractResource | None = None

    @property
    def router(self) -> web.UrlDispatcher:
        """The table in use (frozen)."""
        return self._router

    def swap(self, router: web.UrlDispatcher) -> None:
        """Serve ``router``'s routes from now on (it is frozen here)."""
        router.freeze()
        self._router = router

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        """The catch-all handler: resolve ``request`` in the current table and call its handler;
        a path no route has answers 404, a known path with another method 405 (see
        :meth:`refusal`)."""
        match = await self._router.resolve(request)
        if match.http_exception is not None:
            return await self.refusal(request, match.http_exception)
        match.add_app(request.app)
        match.freeze()
        # What aiohttp's own dispatch does (web_app._handle): the handler reads the path
        # parameters of *its* route (``request.match_info``), not the catch-all's.
        request._match_info = match
        # ``request.match_info`` is computed once and cached; when a middleware read it before
        # this dispatch, the cached value is the catch-all's: give it this route's parameters.
        request.match_info.update(match)
        return await match.handler(request)

    async def refusal(self, request: web.Request, error: web.HTTPException) -> web.Response:
        """404 ``not_found`` or 405 ``method_not_allowed`` (with ``Allow``), as JSON.

        The methods allowed are those of the source route matching the path (``error`` says
        them) and of the application's fixed routes matching it. Neither the path nor the
        method is echoed: a path may hold a write key (``/v1/projects/{writeKey}/settings``).
        """
        allowed: set[str] = set()
        if isinstance(error, web.HTTPMethodNotAllowed):
            allowed |= error.allowed_methods
        for resource in request.app.router.resources():
            if resource is not self._catch_all:
                _, methods = await resource.resolve(request)
                allowed |= methods
        if not allowed:
            return json_response(404, error_body("not_found", "no such path"))
        methods = ", ".join(sorted(allowed))
        body = error_body("method_not_allowed", f"method not allowed on this path; use {methods}")
        return json_response(405, body, {"Allow": methods})

    def mount(self, app: web.Application) -> None:
        """Add the catch-all route to ``app`` (after every fixed route)."""
        self._catch_all = app.router.add_route("*", CATCH_ALL, self.dispatch).resource
