"""Dead-letter replay and purge jobs of the console: run in the background, in chunks of 500,
with progress the page polls (``GET /console/api/jobs/{job}``); kept 10 minutes after they
finish. Per process; with ``--workers`` a job's id starts with its process's index, and the
other processes ask that one for its progress."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from attrs import define, field

__all__ = ["CHUNK", "Job", "Jobs"]

log = logging.getLogger("crossdock.console")

CHUNK = 500
KEEP_SECONDS = 600.0


@define
class Job:
    """One replay or purge: how far it got."""

    id: str
    kind: str
    total: int
    done: int = 0
    finished: bool = False
    error: str | None = None
    finished_at: float | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The JSON answer of ``GET /console/api/jobs/{job}``."""
        return {"job": self.id, "kind": self.kind, "done": self.done, "total": self.total,
                "finished": self.finished, "error": self.error}  # fmt: skip


class Jobs:
    """The jobs of one process."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        """Starts every job id (``"<process index>-"`` under ``--workers``)."""
        self.jobs: dict[str, Job] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def start(
        self,
        kind: str,
        ids: Sequence[int],
        step: Callable[[Sequence[int]], Awaitable[Any]],
    ) -> Job:
        """Run ``step`` over ``ids`` in chunks of :data:`CHUNK` in the background."""
        self.prune()
        job = Job(self.prefix + secrets.token_hex(8), kind, len(ids))
        self.jobs[job.id] = job
        task = asyncio.create_task(self._run(job, list(ids), step), name=f"console-{kind}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return job

    async def _run(
        self, job: Job, ids: list[int], step: Callable[[Sequence[int]], Awaitable[Any]]
    ) -> None:
        try:
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start : start + CHUNK]
                await step(chunk)
                job.done += len(chunk)
        except asyncio.CancelledError:
            job.error = "stopped: the daemon is shutting down"
            raise
        except Exception as exc:
            job.error = f"{type(exc).__name__}: the queue refused the change; try again"
            log.warning("console job failed", extra={"job": job.id, "kind": job.kind,
                                                     "error": type(exc).__name__})  # fmt: skip
        finally:
            job.finished = True
            job.finished_at = time.monotonic()

    def get(self, job_id: str) -> Job | None:
        """The job ``job_id`` (``None`` when unknown or forgotten)."""
        self.prune()
        return self.jobs.get(job_id)

    def prune(self) -> None:
        """Forget jobs finished more than 10 minutes ago."""
        now = time.monotonic()
        for job_id, job in list(self.jobs.items()):
            if job.finished_at is not None and now - job.finished_at > KEEP_SECONDS:
                del self.jobs[job_id]

    async def close(self) -> None:
        """Cancel the running jobs (shutdown)."""
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
