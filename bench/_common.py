"""Shared pieces of the benchmarks: event bodies, process helpers, JSON output."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
WRITE_KEY = "bench-write-key"
AUTH = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()

SOURCE = f"""
[[sources]]
id = "bench"
type = "segment"
write_keys = ["{WRITE_KEY}"]
"""
"""The benchmarks' one source: the Segment tracking API with :data:`WRITE_KEY`."""


def sink_destination(port: int, *, batch_size: int = 1000, concurrency: int = 4) -> str:
    """A batching ``webhook`` destination posting to the local sink on ``port``."""
    return f"""
[[destinations]]
id = "sink"
plugin = "webhook"
[destinations.settings]
url = "http://127.0.0.1:{port}/events"
batch = true
[destinations.delivery]
batch_size = {batch_size}
max_wait_ms = 20
concurrency = {concurrency}
"""


def event(index: int, run: str) -> dict:
    """A realistic track event (~600 bytes) with a unique messageId."""
    return {
        "type": "track",
        "event": "Product Viewed",
        "userId": f"user-{index % 5000}",
        "anonymousId": f"anon-{index % 7919}",
        "messageId": f"{run}-{index}",
        "timestamp": "2026-11-22T12:00:00.000Z",
        "properties": {
            "product_id": f"sku-{index % 1000}",
            "name": "Running Shoes",
            "price": 89.0,
            "currency": "USD",
            "category": "Shoes",
            "url": "https://shop.example.com/p/1002",
        },
        "context": {
            "ip": "203.0.113.7",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/124.0",
            "page": {
                "url": "https://shop.example.com/p/1002",
                "referrer": "https://shop.example.com/",
            },
            "library": {"name": "analytics-python", "version": "2.3.4"},
        },
    }


def batch_bodies(requests: int, per_request: int, run: str) -> list[bytes]:
    """``requests`` /v1/batch bodies of ``per_request`` events each."""
    return [
        orjson.dumps(
            {
                "batch": [event(r * per_request + i, run) for i in range(per_request)],
                "sentAt": "2026-11-22T12:00:01.000Z",
            }
        )
        for r in range(requests)
    ]


def track_bodies(requests: int, run: str) -> list[bytes]:
    """``requests`` single-event /v1/track bodies."""
    bodies = []
    for i in range(requests):
        doc = event(i, run)
        del doc["type"]
        bodies.append(orjson.dumps(doc))
    return bodies


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    """Wait until something accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    msg = f"nothing listens on {port}"
    raise TimeoutError(msg)


@contextlib.contextmanager
def reference_server(kind: str) -> Iterator[int]:
    """Run ``servers.py kind`` on a free port; yields the port."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "servers.py"), kind, str(port)],
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(HERE)},
    )
    try:
        wait_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def emit(result: dict) -> None:
    """Print the result as JSON (the benchmarks' only output on stdout)."""
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
