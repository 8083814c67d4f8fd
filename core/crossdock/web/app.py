"""The aiohttp application: ``make_app(config, registry)`` and ``run_app`` for the daemon.

State lives on the app (``crossdock.web.keys``); the queue, the HTTP client session and the
delivery workers are opened and closed in cleanup contexts, so tests and the daemon start and
stop exactly the same way. Stage factories run here, once per configured component; the hot
path then calls the objects they returned.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from crossdock import metrics as metrics_store
from crossdock.config.load import Config
from crossdock.deliver.session import outbound_session
from crossdock.ingest.handler import INGEST_GATE
from crossdock.ingest.limits import IngestGate
from crossdock.metrics import Metrics
from crossdock.plugins.registry import Registry
from crossdock.queue import make_queue
from crossdock.types import Transformer
from crossdock.web import admin, console, health, keys, metrics
from crossdock.web.reload import (
    Reloader,
    build_router,
    build_worker,
    install_sighup,
    signal_parent,
)
from crossdock.web.routing import SourceRoutes

log = logging.getLogger("crossdock.app")

# Bodies are limited per source while reading (Segment's limits are far below this); this only
# stops aiohttp from refusing a request before the source can answer with its own message.
CLIENT_MAX_SIZE = 16 * 1024 * 1024


def make_app(
    config: Config, registry: Registry, *, deliver: bool = True, idle_poll: float | None = None
) -> web.Application:
    """Build the application for ``config``: routes, queue, workers (started on startup).

    ``deliver=False`` makes an ingest-only process (``crossdock run --workers N`` with the
    ``sqlite`` queue, every process but the first): it stores events and answers the admin API,
    but starts no delivery worker. ``idle_poll``
    overrides how often an idle worker looks for new events (other processes' appends do not
    wake it).
    """
    # Bodies are inflated by crossdock.read_body, with each source's cap; aiohttp's own decoding
    # would go on inflating a refused gzip bomb while it discards the unread rest (lingering
    # close), costing seconds of the event loop per request.
    app = web.Application(
        client_max_size=CLIENT_MAX_SIZE,
        middlewares=[admin.admin_auth],
        handler_args={"auto_decompress": False},
    )
    app[keys.CONFIG] = config
    app[keys.REGISTRY] = registry
    app[keys.METRICS] = Metrics(
        sources=[s.id for s in config.sources],
        destinations=[d.id for d in config.destinations],
    )
    app[keys.QUEUE] = make_queue(config.queue)
    app[keys.TAIL] = admin.EventTail()
    app[keys.WORKERS] = {}
    app[keys.SHUTTING_DOWN] = [False]

    app[INGEST_GATE] = IngestGate(config.server.limits)

    transformers = {d.id: registry.make_transformer(d) for d in config.destinations}
    ingestors = {s.id: registry.make_ingestor(s) for s in config.sources}
    # Source routes sit behind one catch-all route (registered last, after the fixed ones), so
    # a reload can swap them although aiohttp freezes its router (crossdock.web.routing).
    routes = SourceRoutes()
    routes.swap(build_router(config.sources, ingestors, app, app[INGEST_GATE]))
    app[keys.RELOADER] = Reloader(
        app, config, routes, ingestors, deliver=deliver, idle_poll=idle_poll
    )
    app.router.add_routes(health.routes())
    app.router.add_routes(metrics.routes())
    app.router.add_routes(admin.routes())
    console.mount(app)
    routes.mount(app)

    app.cleanup_ctx.append(_queue_context)
    app.cleanup_ctx.append(_http_context)
    app.cleanup_ctx.append(_workers_context(transformers, deliver, idle_poll))
    app.on_shutdown.append(_mark_shutting_down)
    return app


async def _mark_shutting_down(app: web.Application) -> None:
    app[keys.SHUTTING_DOWN][0] = True
    app[keys.TAIL].close()  # open tails end now: shutdown never waits for a reader


async def _queue_context(app: web.Application) -> AsyncIterator[None]:
    # Every process registers the destinations, the ingest-only ones too: whichever starts
    # first does it before it accepts anything, so a new destination's start ("the current end
    # of the queue") never skips events another process accepted meanwhile. Registering
    # hands nothing out: only fetch does, and only delivering processes fetch.
    queue = app[keys.QUEUE]
    await queue.open([d.id for d in app[keys.CONFIG].destinations])
    log.info("queue open", extra=queue.info())
    yield
    await queue.close()


async def _http_context(app: web.Application) -> AsyncIterator[None]:
    timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=60)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=64, ttl_dns_cache=300)
    session = outbound_session(timeout=timeout, connector=connector)
    app[keys.HTTP] = session
    yield
    await session.close()


def _workers_context(transformers: dict[str, Transformer], deliver: bool, idle_poll: float | None):
    async def context(app: web.Application) -> AsyncIterator[None]:
        config = app[keys.CONFIG]
        registry = app[keys.REGISTRY]
        workers = app[keys.WORKERS]
        for destination in config.destinations:
            deliverer = registry.make_deliverer(destination, app[keys.HTTP])
            transformer = transformers[destination.id]
            workers[destination.id] = build_worker(
                app, config, destination, transformer, deliverer, idle_poll
            )
        if deliver:
            for worker in workers.values():
                await worker.start()
        yield
        # A reload in progress finishes first; the workers are then those it left running.
        reloader = app[keys.RELOADER]
        async with reloader.lock:
            timeout = reloader.config.server.shutdown_timeout
            for worker in workers.values():
                await worker.stop(timeout)
            for worker in workers.values():
                await worker.deliverer.close()

    return context


def split_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:8088"`` → ``("127.0.0.1", 8088)``; ``"[::1]:8088"`` works too."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def delivers(config: Config, worker_index: int) -> bool:
    """Whether process ``worker_index`` of ``crossdock run --workers N`` delivers.

    ``nats``: every process (the server hands each message to one consumer at a time).
    ``sqlite``: only process 0. Its delivery progress lives in the process (in-flight events,
    the durable position, garbage collection), so two delivering processes on one file would
    hand out the same events twice; the others only ingest (process 0 stores their events, see
    :func:`share_sqlite_writer`) and their admin DLQ changes go through the file,
    where process 0 picks them up like changes made by ``crossdock dlq``.
    """
    return config.queue.backend == "nats" or worker_index == 0


SQLITE_SHARED_IDLE_POLL = 0.1
"""Idle poll of the delivering process when other processes append to the same SQLite file
(their appends do not wake it)."""


SHARED_WRITER_SOCKET = "queue_writer.sock"
"""Process 0's SQLite writer socket, in the supervisor's private directory
(:data:`crossdock.web.console.peers.DIR_ENV`)."""


STORE_PROCESS_SOCKET = "store_http.sock"
"""Where process 0 of ``--workers N`` on ``sqlite`` serves its HTTP application (it takes no
connections on the port), in the supervisor's private directory."""


def store_process_socket() -> str | None:
    """Process 0's private HTTP socket (see :data:`STORE_PROCESS_SOCKET`), ``None`` outside a
    supervisor's run."""
    import os
    import stat

    from crossdock.web.console import peers

    directory = os.environ.get(peers.DIR_ENV)
    if not directory:
        return None
    path = os.path.join(directory, STORE_PROCESS_SOCKET)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # a restarted process's predecessor left it
    return path


def _private_unix_socket(path: str) -> socket.socket:
    """A listening Unix socket at ``path``, readable and writable by this user only."""
    import os

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock


def share_sqlite_writer(app: web.Application, worker_index: int) -> bool:
    """``crossdock run --workers N`` on ``sqlite``: process 0 stores the other processes' rows
    in its own group commits (``crossdock.queue._sqlite_shared``); the others send them there.
    Does nothing (returns False) outside a supervisor's run."""
    import os

    from crossdock.queue._sqlite_shared import AppendClient, AppendServer
    from crossdock.web.console import peers

    directory, token = os.environ.get(peers.DIR_ENV), os.environ.get(peers.TOKEN_ENV)
    if not directory or not token:
        return False
    path = os.path.join(directory, SHARED_WRITER_SOCKET)

    queue = app[keys.QUEUE]
    client = None
    if worker_index > 0:
        # Before the queue opens: it then builds no dedupe index (process 0 has the one).
        client = AppendClient(path, token)
        queue.send_appends_to(client)

    async def context(app: web.Application) -> AsyncIterator[None]:
        if client is None:
            server = AppendServer(path, token, queue.append_encoded)
            await server.start()
            yield
            await server.stop()
        else:
            yield
            await client.close()

    app.cleanup_ctx.append(context)
    return True


def run_app(
    config: Config,
    registry: Registry,
    *,
    sock: socket.socket | None = None,
    worker_index: int = 0,
    workers: int = 1,
) -> None:
    """Run the daemon until SIGTERM/SIGINT, then shut down gracefully.

    On a signal: stop accepting connections, let in-flight requests finish (up to
    ``server.shutdown_timeout``), stop the workers (in-flight batches finish, the rest stays
    queued), close the queue, exit 0. With ``workers > 1`` this is one of N processes sharing
    the port (``SO_REUSEPORT``: the kernel spreads connections over them). On ``sqlite``,
    process 0 stores and delivers for the others and takes no connections on the port: with a
    single GIL per process, parsing half the requests on top of that made it the bottleneck
    (``bench/production.py``'s ``workers2``).
    """
    from crossdock.logs import setup_logging

    setup_logging(config.log.level, config.log.format, config.secrets())
    host, port = split_listen(config.server.listen)
    deliver = delivers(config, worker_index)
    idle_poll = None
    if workers > 1 and config.queue.backend == "sqlite":
        idle_poll = SQLITE_SHARED_IDLE_POLL
    # Until the loop's own SIGHUP handler is in place (start-up), a SIGHUP must not kill us.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    app = make_app(config, registry, deliver=deliver, idle_poll=idle_poll)
    install_sighup(app)
    # ``--workers`` on sqlite: process 0 stores and delivers for all and takes no connections
    # on the port (the others parse every request), listening on a private socket instead.
    private_path = None
    shared = workers > 1 and config.queue.backend == "sqlite"
    if shared and share_sqlite_writer(app, worker_index) and worker_index == 0 and sock is None:
        private_path = store_process_socket()
        if private_path is not None:
            sock = _private_unix_socket(private_path)
    if workers > 1:
        # POST /admin/reload reaches one process: the supervisor signals them all.
        app[keys.RELOADER].forward = signal_parent
        # The console of any process shows them all: each serves the others on a Unix socket.
        from crossdock.web.console.internal import DeliveringProcess, start_peers

        peers = start_peers(app, worker_index, workers)
        if peers is not None and not deliver:
            # Only the delivering process knows its workers' state.
            app[keys.DELIVERING_PROCESS] = DeliveringProcess(peers, 0)
    metrics_store.register_worker_process(worker_index)
    log.info(
        "crossdock starting",
        extra={"listen": private_path or config.server.listen, "sources": len(config.sources),
               "destinations": len(config.destinations), "worker": worker_index,
               "workers": workers, "delivers": deliver, "ingests": private_path is None},
    )  # fmt: skip
    web.run_app(
        app,
        host=None if sock else host,
        port=None if sock else port,
        sock=sock,
        reuse_port=True if workers > 1 and sock is None else None,
        shutdown_timeout=config.server.shutdown_timeout,
        access_log=None,
        print=lambda message: log.info(message.strip()),
        handle_signals=True,
    )
    log.info("crossdock stopped")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGTERM when the supervisor dies (even by SIGKILL). SIGHUP is
    ignored (kept across exec) until the child's loop handles it: a reload forwarded while a
    process starts must not kill it."""
    import contextlib
    import ctypes
    import signal

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_workers(config: Config, config_path: str, workers: int) -> int:
    """``crossdock run --workers N``: start N ``crossdock run`` processes sharing the port and
    the queue (on ``sqlite``, process 0 stores and delivers and the N - 1 others take the
    connections), restart one that dies, and stop them all on SIGTERM/SIGINT. Returns the exit
    code (1 when a process fails right at start-up, e.g. the port is taken)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from crossdock.logs import setup_logging

    setup_logging(config.log.level, config.log.format, config.secrets())
    children: dict[int, tuple[subprocess.Popen[bytes], float]] = {}
    stopping = False
    # Every process keeps its metrics in files here; any of them answers a scrape with the sum.
    metrics_dir, made_metrics_dir = metrics_store.prepare_multiprocess_dir()
    env = {**os.environ, metrics_store.MULTIPROC_ENV: metrics_dir}
    # The processes' console peer sockets (mode 0700, a per-run token: defence in depth).
    from crossdock.web.console import peers

    peers_dir, peers_token = peers.prepare_dir()
    env[peers.DIR_ENV] = peers_dir
    env[peers.TOKEN_ENV] = peers_token

    def spawn(index: int) -> None:
        argv = [sys.executable, "-m", "crossdock", "run", "-c", config_path,
                "--workers", str(workers), "--worker-index", str(index)]  # fmt: skip
        children[index] = (
            subprocess.Popen(argv, preexec_fn=_die_with_parent, env=env),
            time.monotonic(),
        )

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process, _ in children.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def on_hup(_signum: int, _frame: object) -> None:
        # Each process re-reads and checks the file itself (a restarted one reads it anyway).
        for process, _ in children.values():
            if process.poll() is None:
                process.send_signal(signal.SIGHUP)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hup)
    log.info("crossdock supervisor starting", extra={"workers": workers})
    for index in range(workers):
        spawn(index)
    code = 0
    while not stopping:
        for index, (process, started) in list(children.items()):
            status = process.poll()
            if status is None or stopping:
                continue
            metrics_store.process_exited(metrics_dir, process.pid)
            # Exiting by itself right after start (status > 0: bad config, port taken, queue
            # unreachable) would only fail again; a signal (status < 0) is a crash: restart.
            if time.monotonic() - started < 5.0 and status > 0:
                log.error(
                    "worker process failed at start-up; stopping",
                    extra={"worker": index, "exit_code": status},
                )
                on_signal(signal.SIGTERM, None)
                code = 1
                break
            log.warning(
                "worker process exited; restarting it", extra={"worker": index, "exit_code": status}
            )
            spawn(index)
        time.sleep(0.2)
    deadline = time.monotonic() + config.server.shutdown_timeout + 15
    for process, _ in children.values():
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if made_metrics_dir:
        metrics_store.remove_multiprocess_dir(metrics_dir)
    metrics_store.remove_multiprocess_dir(peers_dir)
    log.info("crossdock supervisor stopped")
    return code
