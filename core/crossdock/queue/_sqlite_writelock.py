"""Taking turns at writing when several processes share one SQLite queue file.

``crossdock run --workers N`` runs N processes on one file, and each has a writer thread.
SQLite serialises them with its write lock, but a writer that finds the lock taken waits in
SQLite's busy handler, which sleeps 1, 2, 5, 10, … up to 100 ms between tries whatever the
holder does: measured on the queue alone, two processes together appended 27 K events/s where
one alone appended 65 K. Here each writer job first takes an exclusive ``flock`` on a file
beside the queue (``<queue>.writelock``): the kernel hands it over the moment the holder lets
go, so SQLite's own lock is always free when a transaction begins.

A holder that never lets go (a process stopped mid-commit) makes the others wait as long as
SQLite's busy timeout would have, then they fail the same way ("database is locked").
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from pathlib import Path
from types import TracebackType

__all__ = ["WriteLock"]

_FIRST_SLEEP = 0.00005
_MAX_SLEEP = 0.001


class WriteLock:
    """An exclusive cross-process lock on ``<queue file>.writelock``, held by one writer job at
    a time (a context manager; used from the queue's single writer thread only)."""

    def __init__(self, queue_path: Path, timeout: float) -> None:
        self.path = queue_path.with_name(queue_path.name + ".writelock")
        self.timeout = timeout
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> None:
        fd = self._fd
        if fd is None:
            raise sqlite3.OperationalError("queue closed")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        # Polled rather than blocking, so a holder that never lets go ends in an error after
        # the busy timeout instead of a writer thread blocked for ever; the sleeps stay short
        # (at most 1 ms) so the turn passes at once.
        deadline = time.monotonic() + self.timeout
        delay = _FIRST_SLEEP
        while True:
            time.sleep(delay)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise sqlite3.OperationalError("database is locked") from None
                delay = min(delay * 2, _MAX_SLEEP)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Release the file descriptor (the lock file stays: another process may use it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
