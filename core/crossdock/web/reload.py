"""Configuration reload (``SIGHUP``, ``POST /admin/reload``): re-read, check, apply.

The file is checked exactly like ``crossdock check`` (every config and plugin problem, then every
destination's transformer built), plus what cannot change while the daemon runs (``[queue]``,
``server.listen``, ``[server.limits]``, ``[log]``: a restart applies them). Any problem refuses
the whole reload and the running configuration stays. Otherwise everything new is built first
(ingestors, transformers, deliverers: a failure still changes nothing), then applied:

1. added destinations are registered in the queue (they start at its current end);
2. removed and changed destinations' workers stop: fetching ends, in-flight batches settle;
3. a changed destination's queue cursor is rewound (what its old worker fetched but did not
   settle is handed out again), and removed destinations are unregistered;
4. workers of added and changed destinations start, with the new settings;
5. the source routes are swapped whole (:mod:`crossdock.web.routing`).

Unchanged sources keep their ingestor and unchanged destinations their worker. Listening
sockets, connections and requests in progress are never touched. One reload runs at a time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from aiohttp import web
from attrs import field, frozen

from crossdock.errors import ConfigError, QueueError
from crossdock.ingest.handler import EventListener, make_ingest_handler
from crossdock.ingest.limits import IngestGate
from crossdock.metrics import drop_reasons, source_reject_reasons
from crossdock.web import keys
from crossdock.web.routing import SourceRoutes, new_router

if TYPE_CHECKING:
    from crossdock.config.load import Config
    from crossdock.deliver.worker import DestinationWorker
    from crossdock.plugins.registry import Registry
    from crossdock.types import Deliverer, Destination, Ingestor, Source, Transformer

log = logging.getLogger("crossdock.reload")


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=_HasId)


@frozen
class Diff:
    """Ids of the items added, removed, changed (same id, other settings) and unchanged."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, list[str]]:
        """JSON-able form for the admin answer and the log."""
        return {k: list(v) for k, v in (("added", self.added), ("removed", self.removed),
                                         ("changed", self.changed))}  # fmt: skip


def diff(old: Sequence[T], new: Sequence[T]) -> Diff:
    """Compare two configurations' sources (or destinations) by id, then by value."""
    before = {item.id: item for item in old}
    after = {item.id: item for item in new}
    return Diff(
        added=tuple(i for i in after if i not in before),
        removed=tuple(i for i in before if i not in after),
        changed=tuple(i for i in after if i in before and not _same(before[i], after[i])),
        unchanged=tuple(i for i in after if i in before and _same(before[i], after[i])),
    )


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # a plugin's settings class with an equality that fails: treat as changed
        return False


@frozen
class Outcome:
    """What a reload did: ``applied`` or not, the problems that refused it, the check's notes,
    and the source and destination changes."""

    applied: bool
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    sources: Diff = field(factory=Diff)
    destinations: Diff = field(factory=Diff)
    forwarded: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The admin API's answer body."""
        if not self.applied:
            return {
                "success": False,
                "code": "invalid_config",
                "message": f"{len(self.problems)} problem(s); the running configuration stays",
                "problems": list(self.problems),
            }
        body: dict[str, Any] = {"success": True, "notes": list(self.notes)}
        if self.forwarded:
            body["forwarded"] = True
        else:
            body["sources"] = self.sources.as_dict()
            body["destinations"] = self.destinations.as_dict()
        return body


def restart_problems(running: Config, new: Config) -> list[str]:
    """What ``new`` changes that only a restart can apply."""
    parts = {
        "queue": (running.queue, new.queue),
        "server.listen": (running.server.listen, new.server.listen),
        "server.limits": (running.server.limits, new.server.limits),
        "log": (running.log, new.log),
    }
    return [
        f"{name}: changed; this needs a restart (a reload cannot change {name})"
        for name, (before, after) in parts.items()
        if before != after
    ]


def check_config(
    path: str | os.PathLike[str], registry: Registry, running: Config
) -> tuple[Config | None, list[str], list[str]]:
    """Read and check ``path`` like ``crossdock check`` does, plus :func:`restart_problems`.

    Returns the new config (``None`` when it cannot be read), its problems and its notes.

    Unlike ``check``, a plugin that failed to load when the daemon started is not a problem of
    the file: ``run`` started with it (a warning), and plugins are loaded only at start, so it
    would refuse every reload until a restart. It is a note; a file that uses what the plugin
    would have provided is refused for that (unknown type), with the plugin's problem listed.
    """
    from crossdock.cli.main import transformer_problems
    from crossdock.config.load import load_config

    try:
        config = load_config(path, registry)
    except ConfigError as exc:
        return None, [*exc.problems, *registry.problems], []
    problems: list[str] = []
    notes = [f"{problem} (since start; a restart loads plugins again)"
             for problem in registry.problems]  # fmt: skip
    problems += transformer_problems(config, registry, notes=notes)
    problems += restart_problems(running, config)
    return config, problems, notes


def build_router(
    sources: Sequence[Source],
    ingestors: dict[str, Ingestor],
    app: web.Application,
    gate: IngestGate,
) -> web.UrlDispatcher:
    """A private router with every source's ingest routes (through the core handler) and its
    extra ``web_routes``."""
    router = new_router()
    listeners: list[EventListener] = [app[keys.TAIL]]
    # series at zero from the start, for sources a reload adds too (safe to repeat)
    app[keys.METRICS].declare(sources=[s.id for s in sources])
    for source in sources:
        app[keys.METRICS].declare_reasons(
            "crossdock_requests_rejected_total", source.id, source_reject_reasons(source.type)
        )
    for source in sources:
        ingestor = ingestors[source.id]
        handler = make_ingest_handler(
            source, ingestor, app[keys.QUEUE], app[keys.METRICS], listeners, gate
        )
        for route in ingestor.routes():
            router.add_route(route.method, route.path, handler)
        web_routes = getattr(ingestor, "web_routes", None)
        if web_routes is not None:
            router.add_routes(web_routes())
    return router


def build_worker(
    app: web.Application,
    config: Config,
    destination: Destination,
    transformer: Transformer,
    deliverer: Deliverer,
    idle_poll: float | None,
) -> DestinationWorker:
    """The delivery worker of ``destination`` (not started)."""
    from crossdock.deliver.worker import DestinationWorker

    app[keys.METRICS].declare(destinations=[destination.id])  # at zero, as at start
    app[keys.METRICS].declare_reasons(
        "crossdock_events_dropped_total", destination.id, drop_reasons(transformer)
    )
    extra = {} if idle_poll is None else {"idle_poll": idle_poll}
    return DestinationWorker(
        destination,
        transformer,
        deliverer,
        app[keys.QUEUE],
        app[keys.METRICS],
        not_sent=app[keys.TAIL].not_sent,
        secrets=config.secrets(),
        **extra,
    )


class Reloader:
    """Holds the running configuration of one application and reloads it.

    ``deliver`` and ``idle_poll`` are the process's (see :func:`crossdock.web.app.make_app`).
    ``forward`` (``crossdock run --workers N``): instead of applying a valid configuration
    itself, :meth:`reload` with ``forward=True`` calls it to have the supervisor signal every
    process (this one included).
    """

    def __init__(
        self,
        app: web.Application,
        config: Config,
        routes: SourceRoutes,
        ingestors: dict[str, Ingestor],
        *,
        deliver: bool = True,
        idle_poll: float | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.routes = routes
        self.ingestors = ingestors
        self.deliver = deliver
        self.idle_poll = idle_poll
        self.forward: Callable[[], None] | None = None
        self.lock = asyncio.Lock()

    async def reload(self, *, forward: bool = False) -> Outcome:
        """Re-read the config file; refuse it with every problem, or apply it."""
        async with self.lock:
            outcome = await self._reload(forward)
        if outcome.applied:
            log.info(
                "configuration reloaded",
                extra={"forwarded": outcome.forwarded, "sources": outcome.sources.as_dict(),
                       "destinations": outcome.destinations.as_dict()},
            )  # fmt: skip
        else:
            log.error(
                "configuration reload refused; the running configuration stays",
                extra={"problems": list(outcome.problems)},
            )
        return outcome

    async def _reload(self, forward: bool) -> Outcome:
        if self.app[keys.SHUTTING_DOWN][0]:
            return Outcome(False, ("server: shutting down",))
        path = self.config.path
        if path is None:
            return Outcome(False, ("config: the running configuration was not read from a file",))
        registry = self.app[keys.REGISTRY]
        loop = asyncio.get_running_loop()
        # Reading and checking is synchronous (file, TOML, JMESPath compiles): off the loop.
        new, problems, notes = await loop.run_in_executor(
            None, check_config, Path(path), registry, self.config
        )
        if problems or new is None:
            return Outcome(False, tuple(problems or ["config: cannot be read"]))
        if forward and self.forward is not None:
            self.forward()
            return Outcome(True, notes=tuple(notes), forwarded=True)
        try:
            return await self._apply(new, registry, notes)
        except _Refused as exc:
            return Outcome(False, (exc.problem,))

    async def _apply(self, new: Config, registry: Registry, notes: list[str]) -> Outcome:
        app = self.app
        old = self.config
        sources = diff(old.sources, new.sources)
        dests = diff(old.destinations, new.destinations)
        secrets = new.secrets()

        # 1. Build everything new; nothing running has changed yet.
        ingestors: dict[str, Ingestor] = {}
        for source in new.sources:
            if source.id in sources.unchanged:
                ingestors[source.id] = self.ingestors[source.id]
                continue
            try:
                ingestors[source.id] = registry.make_ingestor(source)
            except Exception as exc:
                raise _Refused(f"sources ({source.id}): {_masked(exc, secrets)}") from exc
        from crossdock.ingest.handler import INGEST_GATE

        router = build_router(new.sources, ingestors, app, app[INGEST_GATE])
        starting = await self._build_workers(new, registry, (*dests.added, *dests.changed))

        # 2. Register added destinations (removed ones stay registered until their worker is
        #    gone, or its last settle would find no cursor).
        queue = app[keys.QUEUE]
        both = [d.id for d in old.destinations] + [d.id for d in new.destinations]
        try:
            await queue.open(list(dict.fromkeys(both)))
        except QueueError as exc:
            await _close_all(w.deliverer for w in starting.values())
            raise _Refused(f"queue: cannot register the destinations: {exc}") from exc

        # 3. Stop removed and changed workers; their in-flight batches settle first.
        workers = app[keys.WORKERS]
        stopping = [workers[i] for i in (*dests.removed, *dests.changed) if i in workers]
        timeout = new.server.shutdown_timeout
        await asyncio.gather(*(w.stop(timeout) for w in stopping))
        await _close_all(w.deliverer for w in stopping)
        for destination_id in dests.removed:
            workers.pop(destination_id, None)
        for destination_id in dests.changed:
            await _queue_step(f"rewind {destination_id}", queue.rewind(destination_id))
        await _queue_step("unregister", queue.open([d.id for d in new.destinations]))

        # 4. Start the new workers; 5. serve the new source routes.
        for destination_id, worker in starting.items():
            workers[destination_id] = worker
            if self.deliver:
                await worker.start()
        self.routes.swap(router)
        self.ingestors = ingestors
        self.config = new
        return Outcome(True, notes=tuple(notes), sources=sources, destinations=dests)

    async def _build_workers(
        self, new: Config, registry: Registry, ids: Sequence[str]
    ) -> dict[str, DestinationWorker]:
        built: dict[str, DestinationWorker] = {}
        secrets = new.secrets()
        for destination_id in ids:
            destination = new.destination(destination_id)
            try:
                transformer = registry.make_transformer(destination)
                deliverer = registry.make_deliverer(destination, self.app[keys.HTTP])
            except Exception as exc:
                await _close_all(w.deliverer for w in built.values())
                problem = f"destinations ({destination_id}): {_masked(exc, secrets)}"
                raise _Refused(problem) from exc
            built[destination_id] = build_worker(
                self.app, new, destination, transformer, deliverer, self.idle_poll
            )
        return built


class _Refused(Exception):
    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _masked(exc: BaseException, secrets: Sequence[Any]) -> str:
    from crossdock.secrets import mask

    return mask(str(exc), secrets) or type(exc).__name__


async def _close_all(deliverers: Any) -> None:
    for deliverer in list(deliverers):
        try:
            await deliverer.close()
        except Exception:
            log.exception("deliverer close failed")


async def _queue_step(what: str, step: Any) -> None:
    # After the workers changed there is no going back: a failing step is logged, and what it
    # would have done happens at the next start (unsettled events come again then).
    try:
        await step
    except QueueError as exc:
        log.error("reload: queue step failed", extra={"step": what, "error": str(exc)})


def current_config(app: web.Application) -> Config:
    """The configuration ``app`` runs now (the last one reloaded, else the one it started with)."""
    reloader = app.get(keys.RELOADER)
    return reloader.config if reloader is not None else app[keys.CONFIG]


def install_sighup(app: web.Application) -> None:
    """Reload on ``SIGHUP`` (the daemon only: tests and tools building an app do not get it)."""

    async def on_startup(app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[Outcome]] = set()

        def on_hup() -> None:
            task = loop.create_task(app[keys.RELOADER].reload())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hup)

    app.on_startup.append(on_startup)


def signal_parent() -> None:
    """Ask the ``--workers`` supervisor to reload every process."""
    os.kill(os.getppid(), signal.SIGHUP)


__all__ = [
    "Diff",
    "Outcome",
    "Reloader",
    "build_router",
    "build_worker",
    "check_config",
    "current_config",
    "diff",
    "install_sighup",
    "restart_problems",
    "signal_parent",
]
