"""The internal application each ``crossdock run --workers N`` process serves on its Unix
socket for the others' consoles (:mod:`.peers`): what only this process knows, unmasked (the
asking process masks its answer to the browser), to holders of the run's token only."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from aiohttp import web

from crossdock.web import keys
from crossdock.web.console import api
from crossdock.web.console.peers import Peers, serve_ndjson
from crossdock.web.console.state import ConsoleState

__all__ = ["DeliveringProcess", "make_internal_app", "start_peers"]

STATE: web.AppKey[ConsoleState] = web.AppKey("console_state", ConsoleState)
PEERS: web.AppKey[Peers] = web.AppKey("console_peers", Peers)
ROOT: web.AppKey[web.Application] = web.AppKey("root_app", web.Application)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    if not request.app[PEERS].authorised(request):
        return _json({"code": "forbidden"}, 403)
    try:
        return await handler(request)
    except api.BadRequest as exc:
        return _json({"code": exc.code, "message": exc.message}, exc.status)


async def _recent(request: web.Request) -> web.Response:
    limit = api._limit(request, "limit", 200, api.RECENT_LIMIT)
    source = request.query.get("source") or None
    return _json({"events": api.local_recent(request.app[STATE], limit, source)})


async def _stream(request: web.Request) -> web.StreamResponse:
    source = request.query.get("source") or None
    return await serve_ndjson(request, request.app[STATE].hub, source)


async def _journey(request: web.Request) -> web.Response:
    state = request.app[STATE]
    message_id = request.match_info["message_id"]
    event, rows = await api.local_journey(state, message_id)
    accepted = state.hub.find(message_id) is not None
    return _json({"event": event, "destinations": rows, "accepted": accepted})


async def _cards(request: web.Request) -> web.Response:
    return _json({"destinations": await api.local_cards(request.app[STATE])})


async def _job(request: web.Request) -> web.Response:
    found = request.app[STATE].jobs.get(request.match_info["job"])
    if found is None:
        return _json({"code": "not_found"}, 404)
    return _json(found.as_dict())


async def _status(request: web.Request) -> web.Response:
    from crossdock.web.admin import status_rows

    return _json({"destinations": await status_rows(request.app[ROOT])})


async def _tail(request: web.Request) -> web.StreamResponse:
    from crossdock.web.admin import not_sent_tail

    root = request.app[ROOT]
    destination_id = request.match_info["id"]
    if destination_id not in root[keys.WORKERS]:
        return _json({"code": "not_found"}, 404)
    return await not_sent_tail(request, root[keys.TAIL], destination_id)


async def _action(request: web.Request) -> web.Response:
    action = request.match_info["action"]
    if action not in ("pause", "resume", "probe"):
        return _json({"code": "not_found"}, 404)
    state = request.app[STATE]
    return _json(await api.local_action(state, request.match_info["id"], action))


async def _forget(request: web.Request) -> web.Response:
    doc = await api.read_object(request)
    worker = request.app[STATE].workers.get(str(doc.get("destination")))
    ids = doc.get("messageIds")
    if worker is not None and isinstance(ids, list):
        worker.journal.forget([i for i in ids if isinstance(i, str)])
    return _json({})


def make_internal_app(state: ConsoleState, peers: Peers, root: web.Application) -> web.Application:
    """The application of this process's peer socket (``root``: the process's own app)."""
    app = web.Application(middlewares=[_guard])
    app[STATE] = state
    app[PEERS] = peers
    app[ROOT] = root
    app.router.add_get("/peer/status", _status)
    app.router.add_get("/peer/tail/{id}", _tail)
    app.router.add_get("/peer/recent", _recent)
    app.router.add_get("/peer/stream", _stream)
    app.router.add_get("/peer/journey/{message_id}", _journey)
    app.router.add_get("/peer/cards", _cards)
    app.router.add_get("/peer/jobs/{job}", _job)
    app.router.add_post("/peer/destinations/{id}/{action}", _action)
    app.router.add_post("/peer/forget", _forget)
    return app


def start_peers(root: web.Application, index: int, count: int) -> Peers | None:
    """Under ``crossdock run --workers N`` (the supervisor's :data:`~.peers.DIR_ENV` set):
    serve this process's peer socket while ``root`` runs and let its console ask the other
    processes. Returns ``None`` (and does nothing) otherwise."""
    peers = Peers.from_env(index, count)
    if peers is None:
        return None
    state: ConsoleState = root[keys.CONSOLE]
    state.peers = peers
    state.jobs.prefix = f"{index}-"

    async def start(_app: web.Application) -> None:
        await peers.start(make_internal_app(state, peers, root))

    async def stop(_app: web.Application) -> None:
        state.hub.close()  # the peers' streams from this process end now
        await peers.stop()

    root.on_startup.append(start)
    root.on_shutdown.append(stop)
    return peers


class DeliveringProcess:
    """The delivering process (index ``index``) as seen from one that does not deliver."""

    def __init__(self, peers: Peers, index: int) -> None:
        self._peers = peers
        self._index = index

    async def status_rows(self) -> list[dict[str, Any]] | None:
        """Its admin status rows; ``None`` when it did not answer in time."""
        doc = await self._peers.ask_one(self._index, "GET", "/peer/status")
        return None if doc is None else doc.get("destinations")

    @contextlib.asynccontextmanager
    async def not_sent(self, destination_id: str) -> AsyncIterator[aiohttp.StreamReader | None]:
        """Its NDJSON tail of ``destination_id``'s not-sent records, open while the block runs;
        ``None`` when it did not answer."""
        path = f"/peer/tail/{quote(destination_id, safe='')}"
        async with self._peers.stream_from(self._index, path) as response:
            yield None if response is None else response.content
