"""Source routes that can change while the server runs.

aiohttp freezes an application's router when the server starts, so the sources' routes do not
live in it. The application has one catch-all route, added after every fixed route (health,
metrics, admin); its handler, :meth:`SourceRoutes.dispatch`, resolves the request against a
private router holding the running configuration's source routes. A reload builds a new private
router and swaps it in with one assignment: a request already being handled keeps the handler
it was given, every request resolved after the swap sees only the new table.
"""

from __future__ import annotations

from aiohttp import web

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

    @property
    def router(self) -> web.UrlDispatcher:
        """The table in use (frozen)."""
        return self._router

    def swap(self, router: web.UrlDispatcher) -> None:
        """Serve ``router``'s routes from now on (it is frozen here)."""
        router.freeze()
        self._router = router

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        """The catch-all handler: resolve ``request`` in the current table and call its handler
        (404 or 405 as aiohttp would answer them)."""
        match = await self._router.resolve(request)
        if match.http_exception is not None:
            raise match.http_exception
        match.add_app(request.app)
        match.freeze()
        # What aiohttp's own dispatch does (web_app._handle): the handler reads the path
        # parameters of *its* route (``request.match_info``), not the catch-all's.
        request._match_info = match
        # ``request.match_info`` is computed once and cached; when a middleware read it before
        # this dispatch, the cached value is the catch-all's: give it this route's parameters.
        request.match_info.update(match)
        return await match.handler(request)

    def mount(self, app: web.Application) -> None:
        """Add the catch-all route to ``app`` (after every fixed route)."""
        app.router.add_route("*", CATCH_ALL, self.dispatch)
