"""Queue/process variants shared by ``bench/ingest.py`` and ``bench/e2e.py``.

A variant is ``<queue>`` or ``<queue>-w<N>``: ``sqlite`` (the default file queue), ``nats`` (a
local ``nats-server -js``, started once per run with a temporary store), and ``-w2`` for
``crossdock run --workers 2``. Each variant gets its own ``[queue]`` section (a fresh SQLite
file or a fresh stream) so runs never see each other's events.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from crossdock.queue.nats_server import NatsServer, nats_unavailable

DEFAULT_VARIANTS = "sqlite,sqlite-w2,nats,nats-w2"


def parse(variant: str) -> tuple[str, int]:
    """``"nats-w2"`` → ``("nats", 2)``."""
    queue, _, workers = variant.partition("-w")
    if queue not in ("sqlite", "nats"):
        msg = f"unknown variant {variant!r}: use sqlite or nats, optionally with -wN"
        raise SystemExit(msg)
    return queue, int(workers or 1)


def queue_section(queue: str, nats_url: str | None) -> str:
    """The ``[queue]`` TOML of a variant (empty: the daemon's default SQLite file)."""
    if queue == "sqlite":
        return ""
    stream = "bench" + uuid.uuid4().hex[:8]
    return f'[queue]\nbackend = "nats"\nurl = "{nats_url}"\nstream = "{stream}"\n\n'


def extra_args(workers: int) -> tuple[str, ...]:
    """``crossdock run`` arguments of a variant."""
    return ("--workers", str(workers)) if workers > 1 else ()


@contextlib.contextmanager
def nats_for(variants: list[str]) -> Iterator[str | None]:
    """A local JetStream server when a variant needs one (else ``None``)."""
    if not any(parse(v)[0] == "nats" for v in variants):
        yield None
        return
    reason = nats_unavailable()
    if reason:
        raise SystemExit(f"nats variants need a server: {reason}")
    server = NatsServer().start()
    try:
        yield server.url
    finally:
        server.stop()
