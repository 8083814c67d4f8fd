"""Constant-rate (open-loop) load for latency percentiles, in Python (wrk2 is not in Debian).

Request ``i`` is due at ``start + i / rate`` whatever happened to earlier ones; its latency is
measured from that due time, not from when a connection became free, so a stalled server shows
up in the percentiles instead of slowing the generator down (the "coordinated omission" wrk2
corrects for). Keep-alive connections come from a pool that grows when every one is busy.
Bodies are built before the clock starts (fresh random ids each, ``sdk_events.fill``), so the
generator's own work per request is one socket write and one response read; at the rates used
here (a few hundred requests/s) that is far from its limit.
"""

from __future__ import annotations

import asyncio
import time

from attrs import define


@define
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


async def _exchange(conn: _Conn, request: bytes) -> bool:
    conn.writer.write(request)
    status = await conn.reader.readline()
    length = 0
    while True:
        line = await conn.reader.readline()
        if line in (b"\r\n", b""):
            break
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await conn.reader.readexactly(length)
    return status.startswith(b"HTTP/1.1 200")


def percentile(sorted_values: list[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of an ascending list."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


async def run_constant(port: int, requests: list[bytes], rate: float, max_conns: int = 512) -> dict:
    """Send ``requests`` at ``rate`` per second; latency percentiles (ms) from due times."""
    idle: asyncio.Queue[_Conn] = asyncio.Queue()
    opened = [0]
    latencies: list[float] = []
    errors = [0]

    async def one(index: int, due: float) -> None:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if idle.empty() and opened[0] < max_conns:
            opened[0] += 1
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            conn = _Conn(reader, writer)
        else:
            conn = await idle.get()
        try:
            ok = await _exchange(conn, requests[index])
        except (OSError, asyncio.IncompleteReadError):
            errors[0] += 1
            opened[0] -= 1
            return
        latencies.append(time.perf_counter() - due)
        if not ok:
            errors[0] += 1
        idle.put_nowait(conn)

    start = time.perf_counter() + 0.2
    await asyncio.gather(*(one(i, start + i / rate) for i in range(len(requests))))
    seconds = time.perf_counter() - start
    while not idle.empty():
        idle.get_nowait().writer.close()
    latencies.sort()
    return {
        "target_requests_per_s": rate,
        "achieved_requests_per_s": round(len(latencies) / seconds, 1),
        "requests": len(requests),
        "errors": errors[0],
        "connections_opened": opened[0],
        "latency_ms": {
            "p50": round(percentile(latencies, 50) * 1000, 2),
            "p90": round(percentile(latencies, 90) * 1000, 2),
            "p99": round(percentile(latencies, 99) * 1000, 2),
            "max": round(latencies[-1] * 1000, 2) if latencies else 0.0,
        },
    }
