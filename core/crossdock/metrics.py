"""In-process metrics rendered in the Prometheus text format (``GET /metrics``).

Counters, gauges and histograms keyed by a tuple of label values. Updating one is a dict
operation, cheap enough for the hot path; nothing here does I/O. Every family the daemon
exports is declared in :data:`FAMILIES`, so ``/metrics`` lists them all from the start and
"why is my data not arriving?" always has an answer (a zero is an answer too).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from attrs import define, field, frozen

LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
)  # fmt: skip


@frozen
class Family:
    """One metric family: its name, kind (counter, gauge, histogram), help text and labels."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = LATENCY_BUCKETS


FAMILIES: tuple[Family, ...] = (
    Family("crossdock_events_received_total", "counter",
           "Events accepted and stored by a source.", ("source",)),
    Family("crossdock_requests_rejected_total", "counter",
           "Ingest requests refused, by reason (nothing was stored).", ("source", "reason")),
    Family("crossdock_ingest_in_flight", "gauge",
           "Ingest requests in progress (at most [server.limits] max_concurrent).", ()),
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
           "Delivery attempts that will be retried, by reason.", ("destination", "reason")),
    Family("crossdock_events_dead_lettered_total", "counter",
           "Events moved to the dead-letter queue, by reason.", ("destination", "reason")),
    Family("crossdock_delivery_requests_total", "counter",
           "Requests sent to vendors, by outcome (delivered, partial, rejected, batch_rejected, "
           "retry, credentials_rejected, timeout, error, plugin_error).",
           ("destination", "outcome")),
    Family("crossdock_queue_pending", "gauge",
           "Events waiting for a destination (not yet delivered).", ("destination",)),
    Family("crossdock_queue_retrying", "gauge",
           "Events of a destination waiting for their next attempt.", ("destination",)),
    Family("crossdock_queue_dead_letters", "gauge",
           "Events in a destination's dead-letter queue.", ("destination",)),
    Family("crossdock_queue_lag_seconds", "gauge",
           "Age of the oldest event a destination has not settled.", ("destination",)),
    Family("crossdock_destination_paused", "gauge",
           "1 while a destination is paused (credentials rejected).", ("destination",)),
    Family("crossdock_destination_down", "gauge",
           "1 while a destination is down (a whole batch answered retry later) and probed.",
           ("destination",)),
    Family("crossdock_queue_write_retries_total", "counter",
           "Queue writes (settle, release) that failed and are retried until they succeed.",
           ("destination", "operation")),
    Family("crossdock_ingest_duration_seconds", "histogram",
           "Time from request received to durable answer.", ("source",)),
    Family("crossdock_delivery_duration_seconds", "histogram",
           "Duration of vendor requests.", ("destination",)),
    Family("crossdock_end_to_end_latency_seconds", "histogram",
           "Time from an event's receipt to its delivery.", ("destination",)),
)  # fmt: skip


@define
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int]
    total: float = 0.0
    count: int = 0


@define
class Metrics:
    """The daemon's metrics; one instance per application."""

    families: dict[str, Family] = field(factory=lambda: {f.name: f for f in FAMILIES})
    _values: dict[str, dict[tuple[str, ...], float]] = field(init=False)
    _histograms: dict[str, dict[tuple[str, ...], _Histogram]] = field(init=False)

    def __attrs_post_init__(self) -> None:
        self._values = {name: {} for name, f in self.families.items() if f.kind != "histogram"}
        self._histograms = {name: {} for name, f in self.families.items() if f.kind == "histogram"}

    def inc(self, name: str, labels: tuple[str, ...], value: float = 1.0) -> None:
        """Add ``value`` to a counter."""
        series = self._values[name]
        series[labels] = series.get(labels, 0.0) + value

    def set(self, name: str, labels: tuple[str, ...], value: float) -> None:
        """Set a gauge."""
        self._values[name][labels] = value

    def observe(self, name: str, labels: tuple[str, ...], value: float, count: int = 1) -> None:
        """Record ``count`` observations of ``value`` in a histogram."""
        series = self._histograms[name]
        hist = series.get(labels)
        if hist is None:
            buckets = self.families[name].buckets
            hist = series[labels] = _Histogram(buckets, [0] * (len(buckets) + 1))
        hist.counts[bisect.bisect_left(hist.buckets, value)] += count
        hist.total += value * count
        hist.count += count

    def get(self, name: str, labels: tuple[str, ...]) -> float:
        """The current value of a counter or gauge (0 if never set); for tests and status."""
        return self._values[name].get(labels, 0.0)

    def total(self, name: str) -> float:
        """The sum of a counter over all its label sets."""
        return sum(self._values[name].values())

    def render(self) -> str:
        """The Prometheus text exposition of every family."""
        lines: list[str] = []
        for family in self.families.values():
            lines.append(f"# HELP {family.name} {family.help}")
            lines.append(f"# TYPE {family.name} {family.kind}")
            if family.kind == "histogram":
                for labels, hist in sorted(self._histograms[family.name].items()):
                    _render_histogram(lines, family, labels, hist)
            else:
                for labels, value in sorted(self._values[family.name].items()):
                    lines.append(f"{family.name}{_labels(family.labels, labels)} {_num(value)}")
        return "\n".join(lines) + "\n"


def _render_histogram(
    lines: list[str], family: Family, labels: tuple[str, ...], hist: _Histogram
) -> None:
    cumulative = 0
    for bound, count in zip((*hist.buckets, float("inf")), hist.counts, strict=True):
        cumulative += count
        le = "+Inf" if bound == float("inf") else _num(bound)
        label_text = _labels((*family.labels, "le"), (*labels, le))
        lines.append(f"{family.name}_bucket{label_text} {cumulative}")
    lines.append(f"{family.name}_sum{_labels(family.labels, labels)} {_num(hist.total)}")
    lines.append(f"{family.name}_count{_labels(family.labels, labels)} {hist.count}")


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + pairs + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
