"""Live events for the console: a ring of the last accepted events and server-sent events.

:class:`ConsoleHub` is one more listener of the admin API's :class:`~crossdock.web.admin.EventTail`
(called by the ingest handler after each successful append). Per call it costs a few appends
to the ring and, per open stream, a bounded append: nothing is serialized on the ingest path.
A stream's buffer keeps the newest :data:`MAX_BUFFER` events; what it pushes out is counted.
Its writer writes at most once per :data:`FLUSH_INTERVAL` under load: it serializes what the
buffer holds, masks the configuration's secrets in it, writes it, and sends the count of what
was left out as ``event: dropped``. So a stream costs a bounded amount at any ingest rate (it
writes at most :data:`MAX_BUFFER` events a second, and keeps no more than that many events
alive: they would otherwise age into the garbage collector's older generations), a browser
(fast, slow or gone) holds no memory beyond its buffer, and it is released within
:data:`DISCONNECT_POLL` seconds of leaving, and at once at shutdown.

With ``crossdock run --workers N`` the process a browser reaches also follows the other
processes' accepted events (:mod:`.peers`) into the same stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web

from crossdock.queue import EncodedEvent
from crossdock.secrets import mask
from crossdock.web.admin import EventTail, write_or_let_go

__all__ = ["ConsoleHub", "StreamSubscriber", "offer"]

RING_SIZE = 500
MAX_BUFFER = 250
"""Events a stream's buffer keeps between writes, the newest (a page keeps 500 anyway)."""
FLUSH_INTERVAL = 1.0
"""Seconds between two writes of one stream under load (an event after a quiet spell is
written at once)."""
PING_INTERVAL = 15.0
DISCONNECT_POLL = 0.5
"""Seconds between checks that a stream's reader is still connected."""


class StreamSubscriber:
    """One open stream: its source filter, its bounded buffer and what it lost."""

    __slots__ = ("buffer", "dropped", "source", "wake")

    def __init__(self, source: str | None, max_buffer: int = MAX_BUFFER) -> None:
        self.source = source
        # events as dicts, or as the stored bytes (decoded when written)
        self.buffer: deque[tuple[str, float, dict[str, Any] | bytes]] = deque(maxlen=max_buffer)
        self.dropped = 0
        self.wake = asyncio.Event()


def offer(
    subscriber: StreamSubscriber,
    rows: list[tuple[str, float, dict[str, Any] | bytes]],
    total: int | None = None,
) -> None:
    """Add ``rows`` to ``subscriber``'s bounded buffer; what it pushes out is counted as
    dropped. ``total``: how many events ``rows`` are the newest of (default: all of them)."""
    buffer = subscriber.buffer
    size = buffer.maxlen or 0
    over = len(buffer) + (len(rows) if total is None else total) - size
    if over > 0:
        subscriber.dropped += over  # the oldest go: the deque pushes them out
    buffer.extend(rows if len(rows) <= size else rows[-size:])
    subscriber.wake.set()


class ConsoleHub:
    """The ring of recent accepted events and the open console streams (one per process)."""

    def __init__(self, ring_size: int = RING_SIZE, max_buffer: int = MAX_BUFFER) -> None:
        # An event is kept as the handler's stored bytes when no stream wanted it parsed
        # (bytes cost the garbage collector nothing); it is decoded when asked for.
        self.ring: deque[tuple[str, float, dict[str, Any] | bytes]] = deque(maxlen=ring_size)
        self.max_buffer = max_buffer
        self.subscribers: set[StreamSubscriber] = set()
        self.closed = False
        self.closing = asyncio.Event()

    def __call__(self, source_id: str, events: list[dict[str, Any]]) -> None:
        """Ingest listener (parsed events, when another listener wanted them): remember them
        and hand them to the open streams."""
        self._remember(source_id, events[-RING_SIZE:], len(events))

    def wants_events(self, source_id: str) -> bool:
        """Never: the ring and the streams keep the stored bytes (:meth:`accept_encoded`) and
        decode only what they show, at most :data:`MAX_BUFFER` events a second per stream.
        Asking for parsed events would keep every request's batch alive across its commit,
        which the garbage collector then scans again and again (+20 % daemon CPU per event
        with a stream open, ``bench/console_cost.py``)."""
        return False

    def accept_encoded(self, source_id: str, rows: list[EncodedEvent]) -> None:
        """Ingest listener: remember the stored bytes and hand them to the open streams."""
        self._remember(source_id, [raw for _, raw in rows[-RING_SIZE:]], len(rows))

    def _remember(
        self, source_id: str, newest: list[dict[str, Any]] | list[bytes], total: int
    ) -> None:
        """The ``newest`` of ``total`` events of ``source_id`` into the ring and the streams."""
        now = time.time()
        rows = [(source_id, now, event) for event in newest]
        self.ring.extend(rows)
        for subscriber in self.subscribers:
            if subscriber.source is None or subscriber.source == source_id:
                offer(subscriber, rows, total)

    def subscribe(self, source: str | None) -> StreamSubscriber:
        """A new stream's subscriber (``source``: only that source's events)."""
        subscriber = StreamSubscriber(source, self.max_buffer)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: StreamSubscriber) -> None:
        """Forget ``subscriber`` (its buffer goes with it)."""
        self.subscribers.discard(subscriber)

    def close(self) -> None:
        """Shutdown: every stream ends now."""
        self.closed = True
        self.closing.set()
        for subscriber in self.subscribers:
            subscriber.wake.set()

    def recent(
        self, limit: int, source: str | None = None
    ) -> list[tuple[str, float, dict[str, Any]]]:
        """Up to ``limit`` remembered events, newest first (``source``: only that source's)."""
        rows = []
        for row in reversed(self.ring):
            if source is None or row[0] == source:
                rows.append(parsed(row))
                if len(rows) >= limit:
                    break
        return rows

    def find(self, message_id: str) -> tuple[str, float, dict[str, Any]] | None:
        """The remembered event with ``message_id`` (the newest), or ``None``."""
        needle = orjson.dumps(message_id)  # as the stored JSON spells it
        for row in reversed(self.ring):
            event = row[2]
            if isinstance(event, bytes):
                if needle not in event:  # cheap test before decoding
                    continue
                row = parsed(row)
                event = row[2]
            if event.get("messageId") == message_id:
                return row  # type: ignore[return-value]
        return None


def parsed(row: tuple[str, float, dict[str, Any] | bytes]) -> tuple[str, float, dict[str, Any]]:
    """``row`` with its event decoded when it is the stored bytes."""
    source_id, at, event = row
    return (source_id, at, orjson.loads(event) if isinstance(event, bytes) else event)


def _received_at(row: tuple[str, float, dict[str, Any] | bytes]) -> float:
    return row[1]


def record(row: tuple[str, float, dict[str, Any]]) -> dict[str, Any]:
    """The JSON shape of one remembered event."""
    source, received_at, event = row
    return {"source": source, "received_at": round(received_at, 3), "event": event}


def masked_json(value: Any, secrets: Iterable[Any]) -> bytes:
    """``value`` as JSON with every secret masked (``***`` replaces text inside strings, so the
    answer stays valid JSON)."""
    text = mask(orjson.dumps(value).decode(), secrets)
    return text.encode()


def sse_chunk(
    rows: list[tuple[str, float, dict[str, Any] | bytes]], secrets: Iterable[Any]
) -> bytes:
    """``event: accepted`` messages for ``rows`` (one JSON line each), secrets masked."""
    dumps = orjson.dumps
    text = b"".join(
        b"event: accepted\ndata: " + dumps(record(parsed(row))) + b"\n\n" for row in rows
    ).decode()
    return mask(text, secrets).encode()


def gone(request: web.Request) -> bool:
    """Whether the client of ``request`` left (aiohttp does not cancel its handler)."""
    transport = request.transport
    return transport is None or transport.is_closing()


async def serve_stream(
    request: web.Request,
    hub: ConsoleHub,
    source: str | None,
    secrets_of: Any,
    tail: EventTail,
    peers: Any = None,
) -> web.StreamResponse:
    """Write ``hub``'s events for ``source`` to ``request`` as server-sent events until the
    client leaves or the daemon shuts down. ``secrets_of()`` gives the secrets to mask now;
    the connection counts among ``tail``'s open streams (closed at shutdown if it stalls), and
    a reader that takes nothing for :data:`~crossdock.web.admin.WRITE_TIMEOUT` seconds is let
    go. ``peers`` (:class:`~crossdock.web.console.peers.Peers`): the other ``--workers``
    processes' events come into the same stream, and their connections end with it."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    subscriber = hub.subscribe(source)
    followers: list[asyncio.Task[None]] = []
    if peers is not None:
        followers = [
            asyncio.create_task(peers.follow(index, source, subscriber), name="console-peer")
            for index in peers.others
        ]
    try:
        await response.prepare(request)
        # A first line, so the browser's EventSource opens now rather than at the first event.
        await response.write(b": connected\n\n")
        with tail.stream(request):
            await _pump(request, response, hub, subscriber, secrets_of)
    except ConnectionResetError:
        pass
    finally:
        hub.unsubscribe(subscriber)
        for task in followers:
            task.cancel()
        if followers:
            await asyncio.gather(*followers, return_exceptions=True)
    return response


async def _pump(
    request: web.Request,
    response: web.StreamResponse,
    hub: ConsoleHub,
    subscriber: StreamSubscriber,
    secrets_of: Any,
) -> None:
    loop = asyncio.get_running_loop()
    last_write = loop.time()
    while not hub.closed and not gone(request):
        wait = min(DISCONNECT_POLL, max(0.0, last_write + PING_INTERVAL - loop.time()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(subscriber.wake.wait(), wait)
        if hub.closed or gone(request):
            break
        subscriber.wake.clear()
        rows = list(subscriber.buffer)
        subscriber.buffer.clear()
        dropped, subscriber.dropped = subscriber.dropped, 0
        rows.sort(key=_received_at)  # other processes' events come in their own order
        if rows:
            await write_or_let_go(request, response, sse_chunk(rows, secrets_of()))
        if dropped:
            data = b"event: dropped\ndata: " + orjson.dumps({"count": dropped}) + b"\n\n"
            await write_or_let_go(request, response, data)
        if rows or dropped:
            last_write = loop.time()
            # bounded cost at full rate: what arrives meanwhile waits in the buffer
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hub.closing.wait(), FLUSH_INTERVAL)
        elif loop.time() - last_write >= PING_INTERVAL:
            await write_or_let_go(request, response, b": ping\n\n")
            last_write = loop.time()
