"""Built-in destination ``file``: append one JSON payload per line (NDJSON) to a file.

For the quickstart, debugging and tests. Each batch is written, flushed and fsynced in a worker
thread (never on the event loop) before its events count as delivered. Default mapping: the
whole event.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import aiohttp
from attrs import frozen

import crossdock
from crossdock import (
    DELIVERED,
    BatchItem,
    Destination,
    DestinationType,
    Limits,
    Outcome,
    RetryLater,
)

NAME = "file"


@frozen
class FileSettings:
    """``[destinations.settings]`` of a ``file`` destination (the config resolves ``path``
    against the config file's directory)."""

    path: str


class FileDeliverer:
    """Appends batches to an NDJSON file, one write + flush + fsync per batch."""

    def __init__(self, settings: FileSettings) -> None:
        self.path = Path(settings.path)
        self._file: IO[bytes] | None = None
        self._lock = asyncio.Lock()

    async def deliver(self, batch: Sequence[BatchItem]) -> Sequence[Outcome]:
        """Append ``batch``; an I/O error means retry later for the whole batch."""
        if not batch:
            return []
        data = b"\n".join(item.data for item in batch) + b"\n"
        async with self._lock:
            try:
                await asyncio.to_thread(self._write, data)
            except OSError as exc:
                return [
                    RetryLater(f"connection: cannot write {self.path.name}: {exc.strerror}")
                ] * len(batch)
        return [DELIVERED] * len(batch)

    def _write(self, data: bytes) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")  # noqa: SIM115 (kept open across batches)
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())

    async def close(self) -> None:
        """Close the file."""
        async with self._lock:
            if self._file is not None:
                await asyncio.to_thread(self._file.close)
                self._file = None


DESTINATION_TYPE = DestinationType(
    name=NAME,
    settings=FileSettings,
    description="Append events as NDJSON to a local file (quickstart, debugging, tests)",
    mapping={".": "@"},
    limits=Limits(max_batch_count=1000, max_batch_bytes=16 * 1024 * 1024, concurrency=1),
)


@crossdock.hookimpl
def crossdock_destination_types() -> list[DestinationType]:
    """Declare the ``file`` destination."""
    return [DESTINATION_TYPE]


@crossdock.hookimpl
def crossdock_make_deliverer(
    destination: Destination, http: aiohttp.ClientSession
) -> FileDeliverer | None:
    """Build the deliverer of a ``file`` destination."""
    return FileDeliverer(destination.settings)
