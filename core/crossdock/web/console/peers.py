"""The console across ``crossdock run --workers N``: each process asks the others (issue 13).

The supervisor makes a private directory (mode 0700, removed at exit) and hands it to its
processes in :data:`DIR_ENV`, with a random per-run token in :data:`TOKEN_ENV`. Each process
then serves a small internal application on the Unix socket ``<dir>/worker_<i>.sock`` (never
over TCP; every request must carry the token, checked in constant time) with what only that
process knows: its ring of recent events, a stream of the events it accepts (NDJSON), its
journal's rows for an event, its destination cards, its console jobs, and the operator's
pause/resume/probe. The console API of whichever process a browser reaches asks the others
(:class:`Peers`) and merges their answers with its own; a process that does not answer within
:data:`TIMEOUT` seconds is left out and the answer says ``"partial": true``.

Without ``--workers`` (or with one process) nothing here runs: no socket, no cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from crossdock.web.admin import write_or_let_go
from crossdock.web.console.stream import (
    DISCONNECT_POLL,
    FLUSH_INTERVAL,
    StreamSubscriber,
    gone,
    offer,
    parsed,
)

__all__ = ["DIR_ENV", "TOKEN_ENV", "Peers", "prepare_dir"]

log = logging.getLogger("crossdock.console")

DIR_ENV = "CROSSDOCK_PEERS_DIR"
TOKEN_ENV = "CROSSDOCK_PEER_TOKEN"
TOKEN_HEADER = "X-Crossdock-Peer"
TIMEOUT = 2.0
"""Seconds a peer has to answer a read (a probe waits longer: the caller says how long)."""
STREAM_RETRY = 1.0
"""Seconds before a console stream asks a peer's stream again after it ended."""


def prepare_dir() -> tuple[str, str]:
    """The supervisor's peers directory (new, mode 0700) and a fresh token."""
    import tempfile

    path = tempfile.mkdtemp(prefix="crossdock-peers-")  # mkdtemp makes it 0700
    return path, secrets.token_urlsafe(32)


def socket_path(directory: str, index: int) -> str:
    """The Unix socket of process ``index``."""
    return os.path.join(directory, f"worker_{index}.sock")


def _unlink(path: str) -> None:
    # a local directory entry: no I/O worth a thread
    with contextlib.suppress(FileNotFoundError):
        Path(path).unlink()


class Peers:
    """This process's place among the ``--workers`` processes: its internal socket and clients
    to the others."""

    def __init__(self, directory: str, token: str, index: int, count: int) -> None:
        self.directory = directory
        self.token = token
        self.index = index
        self.count = count
        self._sessions: dict[int, aiohttp.ClientSession] = {}
        self._runner: web.AppRunner | None = None
        self.closed = False

    @classmethod
    def from_env(cls, index: int, count: int) -> Peers | None:
        """The peers of process ``index`` of ``count`` when the supervisor set them up."""
        directory = os.environ.get(DIR_ENV)
        token = os.environ.get(TOKEN_ENV)
        if count <= 1 or not directory or not token:
            return None
        return cls(directory, token, index, count)

    @property
    def others(self) -> list[int]:
        """The other processes' indexes."""
        return [i for i in range(self.count) if i != self.index]

    # -- the internal application --------------------------------------------------------------

    async def start(self, app: web.Application) -> None:
        """Serve ``app`` on this process's socket."""
        path = socket_path(self.directory, self.index)
        _unlink(path)  # a restarted process's predecessor left it
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.UnixSite(runner, path)
        await site.start()
        os.chmod(path, 0o600)
        self._runner = runner

    async def stop(self) -> None:
        """Stop serving and close the clients (shutdown)."""
        self.closed = True
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
            _unlink(socket_path(self.directory, self.index))
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            await session.close()

    def authorised(self, request: web.Request) -> bool:
        """Whether ``request`` carries this run's token."""
        given = request.headers.get(TOKEN_HEADER, "")
        return hmac.compare_digest(given.encode(), self.token.encode())

    # -- asking the others ---------------------------------------------------------------------

    def _session(self, index: int) -> aiohttp.ClientSession:
        session = self._sessions.get(index)
        if session is None or session.closed:
            connector = aiohttp.UnixConnector(path=socket_path(self.directory, index))
            session = aiohttp.ClientSession(connector=connector, headers={TOKEN_HEADER: self.token})
            self._sessions[index] = session
        return session

    async def ask(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        timeout: float = TIMEOUT,
    ) -> tuple[dict[int, Any], list[int]]:
        """Ask every other process ``method path``; (index → JSON answer of those that answered
        200, indexes that answered with another status). A process that does not answer in
        time is in neither."""

        async def one(index: int) -> tuple[int, int, Any]:
            status, doc = await self._answer(index, method, path, params, body, timeout)
            return index, status, doc

        answers: dict[int, Any] = {}
        refused: list[int] = []
        if self.closed:
            return answers, refused
        results = await asyncio.gather(*(one(i) for i in self.others), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                continue
            index, status, doc = result
            if status == 200:
                answers[index] = doc
            else:
                refused.append(index)
        return answers, refused

    async def ask_one(
        self, index: int, method: str, path: str, *, timeout: float = TIMEOUT
    ) -> Any | None:
        """Ask process ``index`` ``method path``: its JSON answer when it answered 200 in
        time, else ``None``."""
        if self.closed:
            return None
        try:
            status, doc = await self._answer(index, method, path, None, None, timeout)
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
            return None
        return doc if status == 200 else None

    async def _answer(
        self,
        index: int,
        method: str,
        path: str,
        params: dict[str, str] | None,
        body: Any,
        timeout: float,
    ) -> tuple[int, Any]:
        """Process ``index``'s status and JSON answer to ``method path``."""
        data = orjson.dumps(body) if body is not None else None
        async with self._session(index).request(
            method,
            "http://peer" + path,
            params=params,
            data=data,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            return response.status, orjson.loads(await response.read())

    @contextlib.asynccontextmanager
    async def stream_from(
        self, index: int, path: str, *, timeout: float = TIMEOUT
    ) -> AsyncIterator[aiohttp.ClientResponse | None]:
        """``GET path`` of process ``index`` as a stream open while the block runs (``timeout``
        bounds only the answer's headers); ``None`` unless it answered 200 in time."""
        if self.closed:
            yield None
            return
        try:
            response = await asyncio.wait_for(
                self._session(index).get(
                    "http://peer" + path, timeout=aiohttp.ClientTimeout(total=None)
                ),
                timeout,
            )
        except (aiohttp.ClientError, TimeoutError):
            yield None
            return
        try:
            yield response if response.status == 200 else None
        finally:
            response.release()
            response.close()

    def coverage(self, answered: list[int] | set[int]) -> dict[str, Any]:
        """``process`` (this one's index), ``processes`` (the indexes that answered, this one
        included) and ``partial`` (whether one is missing)."""
        processes = sorted({self.index, *answered})
        return {
            "process": self.index,
            "processes": processes,
            "partial": len(processes) < self.count,
        }

    async def follow(self, index: int, source: str | None, subscriber: StreamSubscriber) -> None:
        """Feed peer ``index``'s accepted events into ``subscriber`` until cancelled (the
        console stream ended); a peer that goes away is asked again a moment later."""
        params = {"source": source} if source else {}
        timeout = aiohttp.ClientTimeout(total=None, connect=TIMEOUT, sock_read=None)
        while not self.closed:
            try:
                session = self._session(index)
                async with session.get(
                    "http://peer/peer/stream", params=params, timeout=timeout
                ) as response:
                    if response.status != 200:
                        raise aiohttp.ClientError(f"peer stream: {response.status}")
                    pending = b""
                    # chunks, not readline: an event may be longer than aiohttp's line limit
                    async for chunk in response.content.iter_any():
                        *lines, pending = (pending + chunk).split(b"\n")
                        rows = []
                        lost = 0
                        for line in lines:
                            if not line.strip():
                                continue  # the peer's keep-alive
                            doc = orjson.loads(line)
                            if "dropped" in doc:
                                lost += int(doc["dropped"])
                                continue
                            rows.append((doc["source"], doc["received_at"], doc["event"]))
                        subscriber.dropped += lost
                        if rows:
                            offer(subscriber, rows)
                        elif lost:
                            subscriber.wake.set()
            except (aiohttp.ClientError, OSError, ValueError, KeyError):
                pass
            await asyncio.sleep(STREAM_RETRY)


async def serve_ndjson(request: web.Request, hub: Any, source: str | None) -> web.StreamResponse:
    """A peer's side of a console stream: this process's accepted events as NDJSON lines
    (``{"source", "received_at", "event"}``; ``{"dropped": n}`` for what its buffer lost),
    until the asking process hangs up or this one shuts down. Bounded like a browser's stream:
    the newest :data:`~.stream.MAX_BUFFER` events, at most one write a second under load."""
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    subscriber = hub.subscribe(source)
    try:
        await response.prepare(request)
        await response.write(b"\n")
        while not hub.closed and not gone(request):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(subscriber.wake.wait(), DISCONNECT_POLL)
            if hub.closed or gone(request):
                break
            subscriber.wake.clear()
            rows = list(subscriber.buffer)
            subscriber.buffer.clear()
            dropped, subscriber.dropped = subscriber.dropped, 0
            lines = [
                orjson.dumps({"source": s, "received_at": at, "event": e})
                for s, at, e in map(parsed, rows)
            ]
            if dropped:
                lines.append(orjson.dumps({"dropped": dropped}))
            if lines:
                await write_or_let_go(request, response, b"\n".join(lines) + b"\n")
                # as a browser's stream: at most one write a second under load
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(hub.closing.wait(), FLUSH_INTERVAL)
            else:
                await write_or_let_go(request, response, b"\n")  # notices a gone reader
    except ConnectionResetError:
        pass
    finally:
        hub.unsubscribe(subscriber)
    return response
