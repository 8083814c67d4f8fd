"""One SQLite writer for ``crossdock run --workers N``: the other processes hand it their rows.

Each process used to commit its own appends to the shared file, taking turns at the write lock
(``_sqlite_writelock``). A commit holds the turn through its WAL fsync, so the processes'
commits ran one after the other and each paid its own fsync: two processes stored about as much
as one (``bench/production.py``, 1.0-1.1x), with a third of the machine idle. Now process 0
serves :class:`AppendServer` on a Unix socket in the supervisor's private directory, and the
others send it their serialized rows (:class:`AppendClient`). Process 0 adds them to its own
group commit, so one fsync covers every process's requests, and answers only once the group
is committed: the HTTP answer still comes after the event is durable.

The other processes keep no dedupe index (process 0 has the one). When process 0 cannot be
reached (it is restarting after a crash), a process builds its index (outside the write turn:
seconds at a full window, during which its requests wait) and stores its rows itself, under
the write turn. A request whose answer was lost may then be stored twice; the dedupe window
turns the second copy into a duplicate, as for a client's retry.

The wire format, per request: ``u32 token length, u32 header length, u32 body length``, then
the per-run token, then the header (JSON: ``[message ids, row lengths]``), then the rows'
bytes back to back. The answer: ``u32 stored, u32 duplicates``, or ``0xFFFFFFFF`` and a u32
length followed by an error message (a :class:`~crossdock.errors.QueueError` on the sender).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from crossdock.errors import QueueError
from crossdock.queue import AppendResult, EncodedEvent

__all__ = ["AppendClient", "AppendServer", "RemoteUnavailable"]

log = logging.getLogger("crossdock.queue")

_HEAD = struct.Struct("<III")
_ANSWER = struct.Struct("<II")
_FAILED = 0xFFFFFFFF
_MAX_HEADER = 4 * 1024 * 1024
_MAX_BODY = 256 * 1024 * 1024
_IDLE_CONNECTIONS = 64
_RETRY_AFTER = 1.0  # after process 0 could not be reached, store locally this long
_STOP_WAIT = 10.0  # seconds a stop waits for requests being read or stored

Rows = list[EncodedEvent]
AppendRows = Callable[[Rows], Awaitable[AppendResult]]


class RemoteUnavailable(Exception):
    """Process 0's writer could not be reached, or the connection broke before its answer."""


def encode_request(token: bytes, rows: Rows) -> list[bytes]:
    """The request's frames (written with one ``writelines``)."""
    header = orjson.dumps([[mid for mid, _ in rows], [len(data) for _, data in rows]])
    body = b"".join([data for _, data in rows])
    return [_HEAD.pack(len(token), len(header), len(body)), token, header, body]


def decode_rows(header: bytes, body: bytes) -> Rows:
    """The rows of one request; raises ``ValueError`` when header and body disagree."""
    mids, lengths = orjson.loads(header)
    if len(mids) != len(lengths) or sum(lengths) != len(body):
        raise ValueError("header and body disagree")
    rows: Rows = []
    start = 0
    view = memoryview(body)
    for mid, length in zip(mids, lengths, strict=True):
        if mid is not None and not isinstance(mid, str):
            raise ValueError("message id is not a string")
        if type(length) is not int or length < 0:
            raise ValueError("row length is not a count of bytes")
        end = start + length
        rows.append((mid, bytes(view[start:end])))
        start = end
    return rows


class AppendServer:
    """Process 0's end: stores other processes' rows with ``append`` (the queue's own
    ``append_encoded``) and answers each request once its group commit is durable."""

    def __init__(self, path: str, token: str, append: AppendRows) -> None:
        self.path = path
        self._token = token.encode()
        self._append = append
        self._server: asyncio.AbstractServer | None = None
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._busy: set[asyncio.Task[Any]] = set()  # between reading a request and answering
        self._stopping = False

    async def start(self) -> None:
        """Listen on :attr:`path` (a stale socket file from a crashed run is replaced)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        """Stop listening and end the connections: a request being stored is answered
        first, idle connections close at once (their processes then store locally)."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
            self._server = None
        for task, writer in self._connections.items():
            if task not in self._busy:
                writer.close()  # its read of the next request ends
        if self._connections:
            # A sender stopped halfway through a request must not hold the shutdown.
            await asyncio.wait(set(self._connections), timeout=_STOP_WAIT)
            for writer in self._connections.values():
                writer.close()
            await asyncio.gather(*self._connections, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while not self._stopping:
                try:
                    head = await reader.readexactly(_HEAD.size)
                except asyncio.IncompleteReadError:
                    return  # the client closed between requests
                self._busy.add(task)
                token_len, header_len, body_len = _HEAD.unpack(head)
                if header_len > _MAX_HEADER or body_len > _MAX_BODY or token_len > 256:
                    return
                token = await reader.readexactly(token_len)
                if not hmac.compare_digest(token, self._token):
                    return
                header = await reader.readexactly(header_len)
                body = await reader.readexactly(body_len)
                try:
                    rows = decode_rows(header, body)
                except (ValueError, TypeError, orjson.JSONDecodeError):
                    return
                try:
                    result = await self._append(rows)
                except QueueError as exc:
                    message = str(exc).encode()
                    writer.writelines([_ANSWER.pack(_FAILED, len(message)), message])
                else:
                    writer.write(_ANSWER.pack(result.stored, result.duplicates))
                await writer.drain()
                self._busy.discard(task)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self._busy.discard(task)
            self._connections.pop(task, None)
            writer.close()


class AppendClient:
    """The other processes' end: sends rows to process 0 over pooled connections."""

    def __init__(self, path: str, token: str) -> None:
        self.path = path
        self._token = token.encode()
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._down_until = 0.0
        self.sent = 0  # requests process 0 stored (for tests and the benchmark)

    @property
    def reachable(self) -> bool:
        """False for a moment after process 0 could not be reached (then rows go local)."""
        return time.monotonic() >= self._down_until

    async def append(self, rows: Rows) -> AppendResult:
        """Store ``rows`` through process 0; raises :class:`RemoteUnavailable` when it cannot
        be reached or the connection breaks before its answer, :class:`QueueError` when it
        answers that storing failed."""
        try:
            reader, writer = self._idle.pop() if self._idle else await self._connect()
        except OSError as exc:
            self._down_until = time.monotonic() + _RETRY_AFTER
            raise RemoteUnavailable(str(exc)) from exc
        try:
            writer.writelines(encode_request(self._token, rows))
            await writer.drain()
            stored, duplicates = _ANSWER.unpack(await reader.readexactly(_ANSWER.size))
            failure = None
            if stored == _FAILED:
                failure = (await reader.readexactly(duplicates)).decode(errors="replace")
        except (OSError, asyncio.IncompleteReadError) as exc:
            writer.close()
            self._down_until = time.monotonic() + _RETRY_AFTER
            raise RemoteUnavailable(str(exc) or type(exc).__name__) from exc
        except BaseException:
            writer.close()  # cancelled mid-request: the stream's state is unknown
            raise
        self._keep(reader, writer)
        if failure is not None:
            raise QueueError(failure)
        self.sent += 1
        return AppendResult(stored, duplicates)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_unix_connection(self.path)

    def _keep(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._idle) < _IDLE_CONNECTIONS:
            self._idle.append((reader, writer))
        else:
            writer.close()

    async def close(self) -> None:
        """Close the idle connections."""
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()
