"""The daemon's metrics, kept by ``prometheus_client`` and rendered for ``GET /metrics``.

Every family the daemon exports is declared in :data:`FAMILIES`; :class:`Metrics` is the facade
the rest of the code calls (``inc``, ``set``, ``observe``, ``get``) with a tuple of label values,
so callers never touch the library. Each instance has its own registry (tests build many), and
every configured source's and destination's series exist at zero from the start: a ``rate()``
alert sees a destination that never delivered.

Under ``crossdock run --workers N`` the supervisor points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
directory (:func:`prepare_multiprocess_dir`) before it starts the processes; each then keeps its
values in memory-mapped files there and a scrape, whichever process answers, adds up all of them
(prometheus_client's multiprocess mode). How a gauge combines over processes is its
``multiprocess_mode``, chosen per meaning in :data:`FAMILIES`.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import prometheus_client
from attrs import frozen
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""Set by the supervisor of ``--workers N`` for its processes (prometheus_client reads it)."""

# ``*_created`` series would double the series count for a timestamp nobody graphs.
prometheus_client.disable_created_metrics()

LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
)  # fmt: skip

DELIVERY_OUTCOMES: tuple[str, ...] = (
    "delivered", "partial", "rejected", "batch_rejected", "retry", "credentials_rejected",
    "timeout", "error", "plugin_error",
)  # fmt: skip
"""Every ``outcome`` of ``crossdock_delivery_requests_total``, each present at zero."""

# The closed sets of reasons the core emits, each present at zero for every source or
# destination so a rate() or increase() alert sees a series before its first event.
# tests/test_metrics.py reads the code that emits them and fails when one is missing here.
DEAD_LETTER_REASONS: tuple[str, ...] = (
    "vendor_rejected", "max_attempts", "unsendable", "transform_failed", "too_large",
)  # fmt: skip
"""``reason`` of ``crossdock_events_dead_lettered_total`` (the worker's words)."""

RETRY_REASONS: tuple[str, ...] = ("timeout", "connection", "plugin_error")
"""The words of ``crossdock_events_retried_total{reason}``. Open besides these: ``http_<status>``,
whatever status a vendor answers (declared when first seen)."""

QUEUE_WRITE_OPERATIONS: tuple[str, ...] = ("settle", "release")
"""``operation`` of ``crossdock_queue_write_retries_total``."""

REJECT_REASONS: tuple[str, ...] = (
    # the ingest handler and its limits
    "overloaded", "queue_unavailable", "too_many_events", "too_deep", "integer_out_of_range",
    # every event's validation (crossdock.ingest.normalize), whatever the source
    "invalid_event", "type_required", "unsupported_type", "id_required", "id_not_string",
    "previous_id_required", "event_not_defined", "event_not_string", "name_not_string",
    "category_not_string", "group_id_required", "properties_not_object", "traits_not_object",
    "context_not_object", "integrations_not_object", "message_id_invalid", "invalid_timestamp",
)  # fmt: skip
"""``reason`` of ``crossdock_requests_rejected_total`` that any source can be refused with."""

_BODY_REASONS = ("too_large", "invalid_encoding", "invalid_json")  # crossdock.read_body/parse_json
SOURCE_REJECT_REASONS: dict[str, tuple[str, ...]] = {
    "segment": (*_BODY_REASONS, "invalid_body", "unauthorized", "empty_batch"),
    "segment-webhook": (*_BODY_REASONS, "invalid_body", "unauthorized", "empty_batch",
                        "replay_refused"),
    "webhook": (*_BODY_REASONS, "invalid_body", "unauthorized", "empty_batch", "mapping_failed"),
}  # fmt: skip
"""Besides :data:`REJECT_REASONS`, the reasons of each built-in source type. A plugin's source
type has its own codes, an open set: each series appears with its first refusal."""


@frozen
class Family:
    """One metric family: its name, kind (counter, gauge, histogram), help text and labels.

    ``multiprocess_mode`` says how a gauge's values of several processes combine
    (prometheus_client's names; ``live*`` forget a process once it exits). ``zero`` lists values
    of the second label whose series start at zero next to each source or destination.
    """

    name: str
    kind: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    multiprocess_mode: str = "livesum"
    zero: tuple[str, ...] = ()


# Gauge modes: in-flight requests add up over processes (livesum); queue readings describe the
# one shared queue, so the freshest reading wins (livemostrecent: the process answering a scrape
# reads the queue first); paused/down are 1 if any delivering process has the destination
# paused/down (livemax).
FAMILIES: tuple[Family, ...] = (
    Family("crossdock_events_received_total", "counter",
           "Events accepted and stored by a source.", ("source",)),
    Family("crossdock_requests_rejected_total", "counter",
           "Ingest requests refused, by reason (nothing was stored).", ("source", "reason"),
           zero=REJECT_REASONS),
    Family("crossdock_ingest_in_flight", "gauge",
           "Ingest requests in progress (at most [server.limits] max_concurrent).", (),
           multiprocess_mode="livesum"),
    Family("crossdock_events_deduplicated_total", "counter",
           "Events skipped at ingest because their messageId was already seen.", ("source",)),
    Family("crossdock_events_looped_total", "counter",
           "Events dropped at ingest because they had already passed this source (loop).",
           ("source",)),
    Family("crossdock_events_filtered_total", "counter",
           "Events a destination skipped: its sources or where condition did not match.",
           ("destination",)),
    Family("crossdock_events_dropped_total", "counter",
           "Events a destination's mapping dropped (no payload), by reason (the section rule, "
           "or 'mapping').", ("destination", "reason")),
    Family("crossdock_events_delivered_total", "counter",
           "Events the vendor accepted.", ("destination",)),
    Family("crossdock_events_retried_total", "counter",
           "Delivery attempts that will be retried, by reason.", ("destination", "reason"),
           zero=RETRY_REASONS),
    Family("crossdock_events_dead_lettered_total", "counter",
           "Events moved to the dead-letter queue, by reason.", ("destination", "reason"),
           zero=DEAD_LETTER_REASONS),
    Family("crossdock_delivery_requests_total", "counter",
           "Requests sent to vendors, by outcome (delivered, partial, rejected, batch_rejected, "
           "retry, credentials_rejected, timeout, error, plugin_error).",
           ("destination", "outcome"), zero=DELIVERY_OUTCOMES),
    Family("crossdock_queue_pending", "gauge",
           "Events waiting for a destination (not yet delivered).", ("destination",),
           multiprocess_mode="livemostrecent"),
    Family("crossdock_queue_retrying", "gauge",
           "Events of a destination waiting for their next attempt.", ("destination",),
           multiprocess_mode="livemostrecent"),
    Family("crossdock_queue_dead_letters", "gauge",
           "Events in a destination's dead-letter queue.", ("destination",),
           multiprocess_mode="livemostrecent"),
    Family("crossdock_queue_lag_seconds", "gauge",
           "Age of the oldest event a destination has not settled.", ("destination",),
           multiprocess_mode="livemostrecent"),
    Family("crossdock_destination_paused", "gauge",
           "1 while a destination is paused (credentials rejected).", ("destination",),
           multiprocess_mode="livemax"),
    Family("crossdock_destination_down", "gauge",
           "1 while a destination is down (a whole batch answered retry later) and probed.",
           ("destination",), multiprocess_mode="livemax"),
    Family("crossdock_queue_write_retries_total", "counter",
           "Queue writes (settle, release) that failed and are retried until they succeed.",
           ("destination", "operation"), zero=QUEUE_WRITE_OPERATIONS),
    Family("crossdock_ingest_duration_seconds", "histogram",
           "Time from request received to durable answer.", ("source",)),
    Family("crossdock_delivery_duration_seconds", "histogram",
           "Duration of vendor requests.", ("destination",)),
    Family("crossdock_end_to_end_latency_seconds", "histogram",
           "Time from an event's receipt to its delivery.", ("destination",)),
)  # fmt: skip


def _make(family: Family, registry: CollectorRegistry) -> Any:
    if family.kind == "counter":
        return Counter(family.name, family.help, family.labels, registry=registry)
    if family.kind == "gauge":
        return Gauge(
            family.name, family.help, family.labels, registry=registry,
            multiprocess_mode=family.multiprocess_mode,  # type: ignore[arg-type]
        )  # fmt: skip
    return Histogram(
        family.name, family.help, family.labels, registry=registry, buckets=family.buckets
    )


class Metrics:
    """The daemon's metrics; one instance per application (per process under ``--workers``).

    ``sources`` and ``destinations`` are the configured ids: their series start at zero.
    """

    def __init__(
        self,
        *,
        sources: Iterable[str] = (),
        destinations: Iterable[str] = (),
        families: Iterable[Family] = FAMILIES,
    ) -> None:
        self.families = {f.name: f for f in families}
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        self.registry = CollectorRegistry()
        self._metrics = {name: _make(f, self.registry) for name, f in self.families.items()}
        # Label values → child, so the hot path skips the library's label validation.
        self._children: dict[str, dict[tuple[str, ...], Any]] = {n: {} for n in self.families}
        if self.multiprocess_dir is None:
            prometheus_client.ProcessCollector(registry=self.registry)
            prometheus_client.PlatformCollector(registry=self.registry)
            self.registry.register(BuildInfo())
        self.declare(sources=sources, destinations=destinations)

    def declare(self, *, sources: Iterable[str] = (), destinations: Iterable[str] = ()) -> None:
        """Create the series of these sources and destinations at zero."""
        ids = {"source": tuple(sources), "destination": tuple(destinations)}
        for family in self.families.values():
            owners = ids.get(family.labels[0], ()) if family.labels else ()
            if len(family.labels) == 1:
                for owner in owners:
                    self._child(family.name, (owner,))
            elif family.zero:
                for owner in owners:
                    for value in family.zero:
                        self._child(family.name, (owner, value))
        if "crossdock_ingest_in_flight" in self.families:
            self._child("crossdock_ingest_in_flight", ())

    def declare_reasons(self, name: str, owner: str, reasons: Iterable[str]) -> None:
        """Create ``name``'s series of ``owner`` (a source or destination id) at zero for each
        of ``reasons`` (the second label): the reasons known only from the owner's type or
        mapping (:func:`source_reject_reasons`, :func:`drop_reasons`)."""
        if name in self.families:
            for reason in reasons:
                self._child(name, (owner, reason))

    def _child(self, name: str, labels: tuple[str, ...]) -> Any:
        children = self._children[name]
        child = children.get(labels)
        if child is None:
            metric = self._metrics[name]
            child = children[labels] = metric.labels(*labels) if labels else metric
        return child

    def inc(self, name: str, labels: tuple[str, ...], value: float = 1.0) -> None:
        """Add ``value`` to a counter."""
        self._child(name, labels).inc(value)

    def set(self, name: str, labels: tuple[str, ...], value: float) -> None:
        """Set a gauge."""
        self._child(name, labels).set(value)

    def observe(self, name: str, labels: tuple[str, ...], value: float, count: int = 1) -> None:
        """Record ``count`` observations of ``value`` in a histogram."""
        child = self._child(name, labels)
        if count == 1:
            child.observe(value)
            return
        # A batch's events share a receipt time: one bucket update for all of them instead of
        # ``count`` calls. Relies on Histogram's value holders (pinned below 1.0; tested).
        for bound, bucket in zip(child._upper_bounds, child._buckets, strict=True):
            if value <= bound:
                bucket.inc(count)
                break
        child._sum.inc(value * count)

    def get(self, name: str, labels: tuple[str, ...]) -> float:
        """The current value of this process's counter or gauge (0 if never set); for tests."""
        sample = name if self.families[name].kind != "counter" else _total(name)
        value = self.registry.get_sample_value(
            sample, dict(zip(self.families[name].labels, labels, strict=True))
        )
        return value or 0.0

    def total(self, name: str) -> float:
        """The sum of this process's counter over all its label sets."""
        sample = _total(name)
        return sum(
            s.value
            for metric in self.registry.collect()
            for s in metric.samples
            if s.name == sample
        )

    def render(self) -> bytes:
        """The Prometheus text exposition: every family, of every process under ``--workers``."""
        if self.multiprocess_dir is None:
            return prometheus_client.generate_latest(self.registry)
        registry = CollectorRegistry()
        registry.register(_AllFamilies(self.multiprocess_dir, self.families))
        registry.register(WorkerProcesses(self.multiprocess_dir))
        registry.register(BuildInfo())
        return prometheus_client.generate_latest(registry)


def source_reject_reasons(source_type: str) -> tuple[str, ...]:
    """The refusal reasons of a source of ``source_type`` beyond :data:`REJECT_REASONS` (empty
    for a plugin's type: its codes are its own)."""
    return SOURCE_REJECT_REASONS.get(source_type, ())


def drop_reasons(transformer: object) -> tuple[str, ...]:
    """Every ``reason`` of ``crossdock_events_dropped_total`` that ``transformer`` can give.

    Closed for the core's transformers: ``mapping`` for one that cannot say why, ``null payload``
    for a plain JMESPath mapping, and for a sectioned one each section's ``null payload``, plus
    with ``select`` each section's ``where false`` and an unknown section for each Spec type.
    Empty for a plugin's transformer that names its own reasons (an open set)."""
    from crossdock.transform.mapping import CompiledMapping
    from crossdock.transform.sections import SPEC_TYPES, SectionedMapping

    if getattr(transformer, "drop_reason", None) is None:
        return ("mapping",)
    if isinstance(transformer, CompiledMapping):
        return ("null payload",)
    if not isinstance(transformer, SectionedMapping):
        return ()
    sections = transformer.spec.sections
    reasons = [f"section {name}: null payload" for name, s in sections.items() if not s.drop]
    if transformer.spec.select is not None:
        reasons += [f"section {name}: where false" for name, s in sections.items() if s.where]
        reasons += [f"unknown section (type {kind})" for kind in (*sorted(SPEC_TYPES), "other")]
    return tuple(reasons)


def _total(name: str) -> str:
    return name if name.endswith("_total") else name + "_total"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("crossdock")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


class BuildInfo(Collector):
    """``crossdock_build_info{version, python_version} 1``: what runs, for dashboards."""

    def __init__(self) -> None:
        self._labels = {"version": _version(), "python_version": platform.python_version()}

    def collect(self) -> Iterator[Metric]:
        """One sample, always 1."""
        metric = Metric("crossdock_build_info", "Crossdock's version and Python's; always 1.",
                        "gauge")  # fmt: skip
        metric.add_sample("crossdock_build_info", self._labels, 1.0)
        yield metric


class _AllFamilies(Collector):
    """Every process's samples from the multiprocess directory, plus the declared families no
    process has a sample of yet (so ``/metrics`` always lists every family)."""

    def __init__(self, path: str, families: dict[str, Family]) -> None:
        self._collector = multiprocess.MultiProcessCollector(None, path=path)
        self._families = families

    def collect(self) -> Iterator[Metric]:
        seen: set[str] = set()
        for metric in self._collector.collect():
            seen.add(metric.name)
            yield metric
        for family in self._families.values():
            name = family.name.removesuffix("_total") if family.kind == "counter" else family.name
            if name not in seen:
                yield Metric(name, family.help, family.kind)


class WorkerProcesses(Collector):
    """``process_*`` of every live ``--workers`` process, labelled ``worker`` (its index).

    Each process writes its pid to ``worker_<index>.pid`` in the multiprocess directory at start
    (:func:`register_worker_process`); a restarted process overwrites its predecessor's.
    """

    def __init__(self, path: str) -> None:
        self._path = Path(path)

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for pid_file in sorted(self._path.glob("worker_*.pid")):
            worker = pid_file.stem.removeprefix("worker_")
            try:
                pid = int(pid_file.read_text())
            except (OSError, ValueError):
                continue
            collector = prometheus_client.ProcessCollector(pid=lambda pid=pid: pid, registry=None)
            for metric in collector.collect():
                target = merged.setdefault(
                    metric.name, Metric(metric.name, metric.documentation, metric.type)
                )
                for sample in metric.samples:
                    target.add_sample(sample.name, {**sample.labels, "worker": worker},
                                      sample.value)  # fmt: skip
        yield from merged.values()


def register_worker_process(worker_index: int) -> None:
    """Under ``--workers``: record this process's pid so scrapes report its ``process_*``."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        Path(path, f"worker_{worker_index}.pid").write_text(str(os.getpid()))


def prepare_multiprocess_dir() -> tuple[str, bool]:
    """The supervisor's multiprocess directory, emptied; and whether it was made here (then the
    supervisor removes it at exit). An operator's ``PROMETHEUS_MULTIPROC_DIR`` is used if set."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return tempfile.mkdtemp(prefix="crossdock-metrics-"), True
    Path(path).mkdir(parents=True, exist_ok=True)
    for stale in (*Path(path).glob("*.db"), *Path(path).glob("worker_*.pid")):
        stale.unlink(missing_ok=True)
    return path, False


def process_exited(path: str, pid: int) -> None:
    """A ``--workers`` process exited: its live gauges (``live*`` modes) no longer count."""
    multiprocess.mark_process_dead(pid, path)


def remove_multiprocess_dir(path: str) -> None:
    """Remove a multiprocess directory made by :func:`prepare_multiprocess_dir`."""
    shutil.rmtree(path, ignore_errors=True)
