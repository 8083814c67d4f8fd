"""Memory under a backlog: the only destination down while 1 M events come in, then back.

One run (issue 12, "memory under a backlog"):

1. ``e2e``: the reference end-to-end rate of the same setup with the destination up: a fresh
   daemon, ``--e2e-events`` events, events/s from the first request to the last event at the
   sink (skip with ``--e2e-events 0``).
2. ``backlog``: a fresh daemon whose only destination (one batching ``webhook``, batch 1,000,
   concurrency 4) points at a sink answering 503 (``fault_sinks.py``); ``--events`` events
   (default 1,000,000) sent as ``/v1/batch`` of 100 with SDK-shaped random messageIds
   (``sdk_events.py``; 10 % of batches without ids, Crossdock makes them), then the sink
   answers 200 again and the run waits until every event arrived.

Throughout, the daemon's ``VmRSS`` (``/proc/PID/status``, the ``crossdock run`` process itself)
is sampled every ``--sample`` seconds; the JSON reports its maximum per phase (ingesting, down
and idle, draining) and ``VmHWM`` at the end. The drain is reported as events/s from the first
event the sink received after recovery to the last (and to 99 %), beside the wait for the
destination's next outage probe, and compared with the ``e2e`` rate of the same run. The sink
counts distinct messageIds, so the JSON says whether every event arrived exactly once.

With ``--ids N`` both daemons start on a queue file whose dedupe window already holds ``N``
ids (``dedupe_fill.py``, as ``production.py`` does; 5,000,000 is the default window full):
the steady state of a daemon that has run for a day, whose in-memory id index is at its
largest.

    .venv/bin/python bench/backlog.py [--events 1000000] [--e2e-events 200000]
                                      [--connections 16] [--sample 0.5] [--ids 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdk_events
from _common import AUTH, HERE, SOURCE, emit, free_port, sink_destination, wait_port
from dedupe_fill import fill
from loadgen import build_request, run_load

from crossdock.testing.daemon import Daemon

RSS_BOUND_MIB = 150
"""Issue 12: the daemon's RSS stays under this throughout."""


# -- the sink ---------------------------------------------------------------------------------


@contextlib.contextmanager
def fault_sink(status: int = 200) -> Iterator[int]:
    """Run ``fault_sinks.py`` answering ``status`` on a free port; yields the port."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "fault_sinks.py"), str(port), str(status)],
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(HERE)},
    )
    try:
        wait_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def sink_count(port: int) -> dict[str, Any]:
    """The sink's counters (see ``fault_sinks.py``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=10) as answer:
        return dict(orjson.loads(answer.read()))


def sink_mode(port: int, status: int) -> dict[str, Any]:
    """Make the sink answer ``status`` from now on; returns its counters."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/mode/{status}", method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return dict(orjson.loads(answer.read()))


# -- memory -----------------------------------------------------------------------------------


def proc_status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/PID/status`` (``VmRSS``, ``VmHWM``); 0 once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class RssSampler:
    """Samples a process's ``VmRSS`` every ``interval`` seconds in a thread, by phase."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.phase = "start"
        self.samples: list[tuple[float, str, int]] = []  # (seconds since start, phase, KiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._started = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            kib = proc_status_kib(self.pid, "VmRSS")
            if kib:
                self.samples.append((time.monotonic() - self._started, self.phase, kib))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def summary(self) -> dict[str, Any]:
        """Samples taken, the maximum overall and per phase (MiB), and the last."""
        per_phase: dict[str, float] = {}
        for _, phase, kib in self.samples:
            per_phase[phase] = max(per_phase.get(phase, 0.0), kib / 1024)
        values = [kib / 1024 for _, _, kib in self.samples]
        return {
            "samples": len(values),
            "interval_s": self.interval,
            "max_mib": round(max(values), 1) if values else None,
            "last_mib": round(values[-1], 1) if values else None,
            "max_mib_by_phase": {k: round(v, 1) for k, v in per_phase.items()},
        }


# -- load -------------------------------------------------------------------------------------


class SdkBatches:
    """``/v1/batch`` requests of 100 SDK-shaped events, each with fresh random ids, built on
    demand (a million events would be ~540 MB of bodies if built beforehand)."""

    def __init__(self, seed: int | None = None) -> None:
        self.templates = sdk_events.batch_templates(200, 100)
        self.rng = random.Random(seed)

    def __call__(self, index: int) -> bytes:
        kind, text = self.templates[index % len(self.templates)]
        return build_request("/v1/batch", sdk_events.fill(kind, text, self.rng), auth=AUTH)


def ingest(port: int, events: int, connections: int) -> dict[str, Any]:
    """Send ``events`` (a multiple of 100) as /v1/batch requests; the rate accepted."""
    requests = events // 100
    result = asyncio.run(run_load(port, SdkBatches(), total=requests, connections=connections))
    if result.errors:
        msg = f"{result.errors} of {requests} /v1/batch requests were not answered 200"
        raise RuntimeError(msg)
    return {
        "events": requests * 100,
        "seconds": round(result.seconds, 2),
        "events_per_s": round(requests * 100 / result.seconds, 1),
    }


def wait_delivered(
    port: int, events: int, timeout: float, on_poll: Any = None
) -> tuple[dict[str, Any], list[tuple[float, int]]]:
    """Poll the sink until it holds ``events`` distinct ids (or ``timeout``); the last count
    and the ``(time.time(), unique)`` timeline."""
    deadline = time.monotonic() + timeout
    timeline: list[tuple[float, int]] = []
    while True:
        count = sink_count(port)
        timeline.append((time.time(), count["unique"]))
        if on_poll is not None:
            on_poll(count)
        if count["unique"] >= events or time.monotonic() > deadline:
            return count, timeline
        time.sleep(0.25)


def _time_to(timeline: list[tuple[float, int]], target: int) -> float | None:
    return next((t for t, n in timeline if n >= target), None)


# -- the two phases ---------------------------------------------------------------------------


def start_daemon(workdir: Path, sink: int, prefilled: Path | None) -> Daemon:
    """A daemon delivering to the sink, on a copy of ``prefilled`` when given."""
    workdir.mkdir(parents=True)
    if prefilled is not None:
        shutil.copyfile(prefilled, workdir / "queue.db")
    return Daemon(SOURCE + sink_destination(sink), workdir).start(timeout=120)


def measure_e2e(
    tmp: Path, events: int, connections: int, prefilled: Path | None = None
) -> dict[str, Any]:
    """The end-to-end rate with the destination up, same setup: the reference for the drain."""
    with fault_sink(200) as sink:
        daemon = start_daemon(tmp / "e2e", sink, prefilled)
        try:
            started = time.time()
            load = ingest(daemon.port, events, connections)
            count, _ = wait_delivered(sink, load["events"], timeout=600)
        finally:
            daemon.stop()
    seconds = count["last_at"] - started
    return {
        "ingest": load,
        "delivered_unique": count["unique"],
        "duplicates": count["duplicates"],
        "end_to_end_events_per_s": round(count["unique"] / seconds, 1) if seconds > 0 else None,
    }


def measure_backlog(
    tmp: Path,
    events: int,
    connections: int,
    interval: float,
    drain_timeout: float = 900,
    prefilled: Path | None = None,
) -> dict[str, Any]:
    """Ingest ``events`` with the destination answering 503, then bring it back and drain."""
    with fault_sink(503) as sink:
        daemon = start_daemon(tmp / "backlog", sink, prefilled)
        assert daemon.process is not None
        pid = daemon.process.pid
        try:
            with RssSampler(pid, interval) as rss:
                time.sleep(2 * interval)
                rss.phase = "ingest"
                load = ingest(daemon.port, events, connections)
                rss.phase = "down_idle"
                time.sleep(3.0)
                before = sink_mode(sink, 200)
                up_at = time.time()
                rss.phase = "drain"
                count, timeline = wait_delivered(sink, load["events"], drain_timeout)
                rss.phase = "after"
                time.sleep(2 * interval)
            hwm = proc_status_kib(pid, "VmHWM")
            children = _children(pid)
        finally:
            daemon.stop()
    first, last = count["first_at"], count["last_at"]
    t99 = _time_to(timeline, int(load["events"] * 0.99))
    delivered = count["unique"]
    return {
        "ingest": load,
        "refused_while_down": before["refused"],
        "delivered_unique": delivered,
        "duplicates": count["duplicates"],
        "events_received": count["events"],
        "exactly_once": delivered == load["events"] and count["events"] == delivered,
        "first_event_after_recovery_s": round(first - up_at, 2) if first else None,
        "drain_seconds": round(last - first, 2) if first else None,
        "drain_events_per_s": round(delivered / (last - first), 1) if last > first else None,
        "drain_to_99pct_events_per_s": (
            round(0.99 * load["events"] / (t99 - first), 1) if t99 and t99 > first else None
        ),
        "rss": rss.summary(),
        "vm_hwm_mib": round(hwm / 1024, 1),
        "daemon_child_processes": children,
    }


def _children(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return 0
    return len(text.split())


def run(
    events: int, e2e_events: int, connections: int, interval: float, ids: int = 0
) -> dict[str, Any]:
    """Both phases in one temporary directory; the JSON document."""
    result: dict[str, Any] = {"benchmark": "backlog", "load": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        prefilled = None
        if ids:
            prefilled = Path(tmp) / "full.db"
            result["dedupe_prefill"] = {"ids": ids, "seconds": round(fill(prefilled, ids), 1)}
        if e2e_events:
            result["e2e"] = measure_e2e(Path(tmp), e2e_events, connections, prefilled)
        result["backlog"] = measure_backlog(
            Path(tmp), events, connections, interval, prefilled=prefilled
        )
    result["load_after"] = os.getloadavg()
    backlog = result["backlog"]
    summary: dict[str, Any] = {
        "rss_max_mib": backlog["rss"]["max_mib"],
        "rss_under_bound": (backlog["rss"]["max_mib"] or 0) < RSS_BOUND_MIB,
        "exactly_once": backlog["exactly_once"],
        "drain_events_per_s": backlog["drain_events_per_s"],
    }
    if e2e_events and result["e2e"]["end_to_end_events_per_s"]:
        e2e = result["e2e"]["end_to_end_events_per_s"]
        summary["end_to_end_events_per_s"] = e2e
        if backlog["drain_events_per_s"]:
            summary["drain_vs_end_to_end"] = round(backlog["drain_events_per_s"] / e2e, 3)
    result["summary"] = summary
    result["targets"] = {"rss_max_mib": f"< {RSS_BOUND_MIB}", "drain_vs_end_to_end": ">= 1.0"}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--e2e-events", type=int, default=200_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--sample", type=float, default=0.5, help="seconds between RSS samples")
    parser.add_argument("--ids", type=int, default=0, help="pre-fill the dedupe window")
    args = parser.parse_args()
    emit(run(args.events, args.e2e_events, args.connections, args.sample, args.ids))


if __name__ == "__main__":
    main()
