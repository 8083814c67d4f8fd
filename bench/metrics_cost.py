"""What metrics cost: one update on the hot path and one ``/metrics`` render, old vs new.

In one run, per variant: a counter ``inc`` and a histogram ``observe`` (the calls ingest and
delivery make per request/batch), and a full render of a daemon-sized set of series (4 sources,
8 destinations, every family populated). Variants:

- ``dict``: a bare dict increment (the floor any in-process counter pays);
- ``old``: the hand-written exposition this replaced, loaded from git (``--old-commit``);
- ``prometheus``: prometheus_client, one process (``crossdock run``);
- ``prometheus-mp``: prometheus_client's multiprocess mode (``--workers N``), in a child process
  started with ``PROMETHEUS_MULTIPROC_DIR``; its render reads the files of ``--processes``
  processes, as any worker answering a scrape does.

    .venv/bin/python bench/metrics_cost.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [f"source{i}" for i in range(4)]
DESTINATIONS = [f"dest{i}" for i in range(8)]


def per_call_ns(fn: Callable[[], Any], calls: int) -> float:
    """Best of 5 runs of ``calls`` calls, in ns per call."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter_ns() - started) / calls)
    return round(best, 1)


def populate(metrics: Any) -> None:
    """Every family with daemon-like label sets: each source and destination, a few reasons."""
    for source in SOURCES:
        metrics.inc("crossdock_events_received_total", (source,), 100)
        metrics.inc("crossdock_requests_rejected_total", (source, "invalid_json"))
        metrics.observe("crossdock_ingest_duration_seconds", (source,), 0.004)
    for dest in DESTINATIONS:
        metrics.inc("crossdock_events_delivered_total", (dest,), 100)
        for outcome in ("delivered", "retry", "timeout"):
            metrics.inc("crossdock_delivery_requests_total", (dest, outcome))
        for reason in ("http_503", "timeout", "connection"):
            metrics.inc("crossdock_events_retried_total", (dest, reason))
        metrics.set("crossdock_queue_pending", (dest,), 10)
        metrics.set("crossdock_queue_lag_seconds", (dest,), 1.5)
        metrics.set("crossdock_destination_paused", (dest,), 0)
        metrics.observe("crossdock_delivery_duration_seconds", (dest,), 0.05)
        metrics.observe("crossdock_end_to_end_latency_seconds", (dest,), 0.2, 20)


def measure(metrics: Any, calls: int, renders: int) -> dict[str, float]:
    """ns per counter inc and per observe; µs per render; the render's size."""
    populate(metrics)
    inc = per_call_ns(lambda: metrics.inc("crossdock_events_received_total", ("source0",), 20),
                      calls)  # fmt: skip
    observe = per_call_ns(
        lambda: metrics.observe("crossdock_ingest_duration_seconds", ("source0",), 0.004), calls
    )
    render = per_call_ns(metrics.render, renders) / 1000
    return {"inc_ns": inc, "observe_ns": observe, "render_us": round(render, 1),
            "render_bytes": len(metrics.render())}  # fmt: skip


def old_metrics(commit: str) -> Any | None:
    """The hand-written ``Metrics`` as of ``commit`` (None without git or that commit)."""
    try:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{commit}:core/crossdock/metrics.py"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("crossdock_old_metrics")
    sys.modules[module.__name__] = module  # attrs resolves annotations through sys.modules
    exec(compile(source, f"{commit}:metrics.py", "exec"), module.__dict__)
    return module.Metrics()


class DictCounter:
    """The floor: a dict increment per update, no rendering."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, tuple[str, ...]], float] = {}

    def inc(self, name: str, labels: tuple[str, ...], value: float = 1.0) -> None:
        key = (name, labels)
        self.values[key] = self.values.get(key, 0.0) + value


def multiprocess_child(calls: int, renders: int, processes: int) -> dict[str, float]:
    """Run in a child with PROMETHEUS_MULTIPROC_DIR set: fill ``processes - 1`` other processes'
    files first (each a short child), then measure this one's updates and renders."""
    from crossdock.metrics import Metrics

    for _ in range(processes - 1):
        subprocess.run([sys.executable, __file__, "--fill"], check=True)
    return measure(Metrics(sources=SOURCES, destinations=DESTINATIONS), calls, renders)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--renders", type=int, default=200)
    parser.add_argument("--processes", type=int, default=2, help="for prometheus-mp")
    parser.add_argument("--old-commit", default="6148ebe")
    parser.add_argument("--fill", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fill:
        from crossdock.metrics import Metrics

        populate(Metrics(sources=SOURCES, destinations=DESTINATIONS))
        return
    if args.child:
        print(json.dumps(multiprocess_child(args.calls, args.renders, args.processes)))
        return

    from crossdock.metrics import Metrics

    result: dict[str, Any] = {"calls": args.calls, "renders": args.renders,
                              "series": "4 sources, 8 destinations, every family"}  # fmt: skip
    floor = DictCounter()

    def floor_inc() -> None:
        floor.inc("crossdock_events_received_total", ("s",), 20)

    result["dict"] = {"inc_ns": per_call_ns(floor_inc, args.calls)}
    old = old_metrics(args.old_commit)
    if old is not None:
        result["old"] = measure(old, args.calls, args.renders)
    result["prometheus"] = measure(
        Metrics(sources=SOURCES, destinations=DESTINATIONS), args.calls, args.renders
    )
    with tempfile.TemporaryDirectory(prefix="crossdock-metrics-bench-") as path:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": path}
        out = subprocess.run(
            [sys.executable, __file__, "--child", "--calls", str(args.calls),
             "--renders", str(args.renders), "--processes", str(args.processes)],
            env=env, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        result["prometheus-mp"] = {"processes": args.processes, **json.loads(out)}
    emit(result)


if __name__ == "__main__":
    main()
