"""A lean HTTP/1.1 load generator on raw asyncio streams (keep-alive, no client library).

aiohttp's client costs more CPU per request than the servers we measure, so the benchmarks
drive load with pre-built request bytes over persistent connections instead. Every response is
read completely (status line, headers, ``Content-Length`` body) and non-200 answers are counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from attrs import define


@define
class LoadResult:
    """Requests sent, non-200 answers, and wall-clock seconds."""

    requests: int
    errors: int
    seconds: float

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def build_request(
    path: str, body: bytes, *, host: str = "127.0.0.1", auth: str | None = None
) -> bytes:
    """One POST request with a JSON body, as bytes."""
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if auth:
        head.append(f"Authorization: {auth}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _connection(
    port: int,
    make_request: Callable[[int], bytes],
    counter: list[int],
    total: int,
    errors: list[int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            index = counter[0]
            if index >= total:
                return
            counter[0] += 1
            writer.write(make_request(index))
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if not status_line.startswith(b"HTTP/1.1 200"):
                errors[0] += 1
    finally:
        writer.close()


async def run_load(
    port: int, make_request: Callable[[int], bytes], *, total: int, connections: int
) -> LoadResult:
    """Send ``total`` requests over ``connections`` keep-alive connections."""
    counter, errors = [0], [0]
    started = time.perf_counter()
    await asyncio.gather(
        *(_connection(port, make_request, counter, total, errors) for _ in range(connections))
    )
    return LoadResult(total, errors[0], time.perf_counter() - started)
