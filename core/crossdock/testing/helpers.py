"""Small async helpers for tests: poll for a condition, read NDJSON, post to a source."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson


def basic_auth(write_key: str) -> str:
    """The ``Authorization`` value Segment clients send for ``write_key``."""
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


async def wait_until(
    predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns a truthy value and return it.

    Raises ``AssertionError`` after ``timeout`` seconds, naming ``what``.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            msg = f"condition not met within {timeout}s" + (f": {what}" if what else "")
            raise AssertionError(msg)
        await asyncio.sleep(interval)


def read_ndjson(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a file (none if it does not exist)."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: Any,
    *,
    auth: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """POST ``body`` (serialized unless it is bytes); returns the status and the parsed answer."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if auth:
        all_headers["Authorization"] = auth
    async with session.post(url, data=data, headers=all_headers) as response:
        raw = await response.read()
        try:
            return response.status, orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return response.status, raw.decode(errors="replace")
