"""Pull requests on one JetStream consumer, and the names the NATS queue uses.

:class:`Puller` speaks the pull protocol directly (``$JS.API.CONSUMER.MSG.NEXT``) on its own
inbox instead of nats-py's ``fetch``: the queue needs two kinds of pull that ``fetch`` does not
give together — "whatever is there right now" (``no_wait``) for :meth:`~Queue.fetch`, and "wake
me when something arrives, but keep it for later" for :meth:`~Queue.wait` — and one puller per
consumer buffers what the server delivered until the worker takes it. At most one pull request
is open at a time, so terminal status messages (404/408/409) always end the request they
belong to.

With ``read_ahead``, a take that found a backlog (it got all it asked for) opens the next
pull at once, for twice as many messages as it took, so they stream in while the worker
sends what it took, and the next take waits only until enough of them are here. Without it,
each fetch waited for its own round trip, and while ingest keeps the event loop busy every
step of one (the request's flush, the answer's read, each waiter's wake-up) waits for a turn
of the loop behind a batch of requests: NATS delivery ran at 5.5 K events/s during ingest,
65-90 ms per pull of 500.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections import deque
from typing import Any

import orjson

__all__ = ["Puller", "decode_key", "decode_token", "encode_key", "encode_token"]

_NO_KEY = "-"
"""Subject token for "no hold key" (a base64url encoding of one or more bytes is 2+ chars)."""


def encode_token(name: str) -> str:
    """A destination id as one subject token and consumer name: ``_`` → ``__``, ``.`` → ``_d``.

    Ids may hold dots (``[A-Za-z0-9][A-Za-z0-9_.-]*``), which would split a subject.
    """
    return name.replace("_", "__").replace(".", "_d")


def decode_token(token: str) -> str:
    """The inverse of :func:`encode_token`."""
    out: list[str] = []
    i = 0
    while i < len(token):
        ch = token[i]
        if ch == "_" and i + 1 < len(token):
            out.append("_" if token[i + 1] == "_" else ".")
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def encode_key(key: str | None) -> str:
    """A per-user hold key as a subject token (base64url, no padding); ``-`` for none."""
    if key is None:
        return _NO_KEY
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_key(token: str) -> str | None:
    """The inverse of :func:`encode_key`."""
    if token == _NO_KEY:
        return None
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()


class _Request:
    __slots__ = ("done", "remaining")

    def __init__(self, batch: int) -> None:
        self.remaining = batch
        self.done = asyncio.Event()


class Puller:
    """Buffered pull requests on one durable consumer (see the module docstring).

    Messages the server delivered sit in :attr:`buffer` until :meth:`take` hands them out; they
    count as in flight for the server (the queue keeps them alive with ``+WPI``).
    """

    def __init__(
        self, nc: Any, prefix: str, stream: str, consumer: str, *, read_ahead: bool = False
    ) -> None:
        self._nc = nc
        self._read_ahead = read_ahead
        self._ahead: asyncio.Future[None] | None = None
        self._want = 0  # a take waits until the buffer holds this many (0: nobody waits)
        self._enough = asyncio.Event()
        self._next_subject = f"{prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._inbox = nc.new_inbox()
        self._sub: Any = None
        self.buffer: deque[Any] = deque()
        self._arrived = asyncio.Event()
        self._request: _Request | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Subscribe to the puller's inbox."""
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_msg)

    async def stop(self) -> None:
        """Unsubscribe (what is still buffered stays in :attr:`buffer` for the caller)."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        if self._request is not None:
            self._request.done.set()
        self._arrived.set()

    async def _on_msg(self, msg: Any) -> None:
        headers = msg.headers
        status = headers.get("Status") if headers else None
        request = self._request
        if status:
            # 100: idle heartbeat. 404/408/409 (and any other): the pull request is over.
            if status != "100" and request is not None:
                request.done.set()
            return
        self.buffer.append(msg)
        self._arrived.set()
        if self._want and len(self.buffer) >= self._want:
            self._enough.set()
        if request is not None:
            request.remaining -= 1
            if request.remaining <= 0:
                request.done.set()

    async def take(self, limit: int, timeout: float) -> list[Any]:
        """Up to ``limit`` messages: the buffer first, then what the server has right now."""
        async with self._lock:
            ahead = self._ahead
            if ahead is not None and not ahead.done() and len(self.buffer) < limit:
                await self._until_buffered(limit, ahead, timeout)
            if len(self.buffer) < limit and self._request is None:
                await self._pull(limit - len(self.buffer), None, timeout)
            out = []
            buffer = self.buffer
            while buffer and len(out) < limit:
                out.append(buffer.popleft())
            if not buffer:
                self._arrived.clear()
            if self._read_ahead and len(out) == limit and self._request is None:
                self._start_read_ahead(2 * limit - len(buffer), timeout)
            return out

    async def _until_buffered(
        self, count: int, ahead: asyncio.Future[None], timeout: float
    ) -> None:
        """Wait until the buffer holds ``count`` messages or the read-ahead is over."""
        self._want = count
        self._enough.clear()
        enough = asyncio.ensure_future(self._enough.wait())
        try:
            await asyncio.wait(
                {enough, ahead}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            enough.cancel()
            self._want = 0

    def _start_read_ahead(self, batch: int, timeout: float) -> None:
        """Open a ``no_wait`` pull of ``batch`` messages in the background (none if the
        buffer already holds that many)."""
        if batch <= 0:
            return
        # Registered before the task runs, so no other pull opens meanwhile.
        request = self._request = _Request(batch)

        async def pull() -> None:
            # A failed read-ahead only means the next take pulls for itself.
            with contextlib.suppress(Exception):
                await self._pull(batch, None, timeout, request=request)

        def over(task: asyncio.Future[None]) -> None:
            _BACKGROUND.discard(task)
            if self._request is request:  # cancelled before it ran: no pull is open
                self._request = None

        self._ahead = task = asyncio.ensure_future(pull())
        _BACKGROUND.add(task)
        task.add_done_callback(over)

    async def wait(self, batch: int, timeout: float) -> None:
        """Return once a message is buffered, or after ``timeout``; opens a lingering pull of up
        to ``batch`` messages when none is open (what it brings stays buffered)."""
        if self.buffer or timeout <= 0:
            return
        if self._request is None and not self._lock.locked():
            async with self._lock:
                if not self.buffer and self._request is None:
                    # The server ends the request a little before the caller stops waiting,
                    # so its 408 does not end a later request.
                    expires = max(0.05, timeout - 0.05)
                    with contextlib.suppress(TimeoutError):
                        await self._pull(batch, expires, timeout + 1.0, first_only=True)
                    return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), timeout)

    async def _pull(
        self,
        batch: int,
        expires: float | None,
        timeout: float,
        *,
        first_only: bool = False,
        request: _Request | None = None,
    ) -> None:
        if request is None:
            request = _Request(batch)
        self._request = request
        body: dict[str, Any] = {"batch": batch}
        if expires is None:
            body["no_wait"] = True
        else:
            body["expires"] = int(expires * 1e9)
        try:
            if not self.buffer:
                self._arrived.clear()
            await self._nc.publish(self._next_subject, orjson.dumps(body), reply=self._inbox)
            waits = [asyncio.ensure_future(request.done.wait())]
            if first_only:
                waits.append(asyncio.ensure_future(self._arrived.wait()))
            try:
                done, _ = await asyncio.wait(
                    waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for w in waits:
                    w.cancel()
            if not done:
                raise TimeoutError
        finally:
            if first_only and not request.done.is_set():
                # Still open on the server: later messages of it land in the buffer; keep it
                # as the open request until its own end arrives (bounded: after a reconnect
                # that end may never come).
                self._adopt(request, (expires or 0.0) + 5.0)
            elif self._request is request:
                self._request = None

    def _adopt(self, request: _Request, bound: float) -> None:
        async def finish() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(request.done.wait(), bound)
            if self._request is request:
                self._request = None

        task = asyncio.ensure_future(finish())
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)


_BACKGROUND: set[asyncio.Future[None]] = set()
