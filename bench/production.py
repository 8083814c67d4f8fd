"""Ingest as production sees it: SDK messageIds, a full dedupe window, wrk, delivery running.

One run measures, each against the same wrk load generator and the same Lua body generator
(``wrk/sdk_bodies.lua``: fresh random ids per request, ``sdk_events.py``):

1. ``bare``: the bare aiohttp+orjson handler (``servers.py baseline``): /v1/batch with a
   static body and with generated bodies (their ratio shows whether generating bodies limits
   wrk), and /v1/track.
2. ``empty`` / ``full``: ``crossdock run`` (SQLite, synchronous=FULL, no destination) on an
   empty dedupe table, then on one pre-filled with ``--ids`` (default 5 M: the default window)
   by ``dedupe_fill.py``: /v1/batch in ``--segments`` back-to-back wrk runs (the first and the
   last show any change as the run goes on), then /v1/track.
3. ``delivering``: ``full`` again with a batching ``webhook`` destination to a counting sink
   (``servers.py sink``): ingest under delivery, and end to end (events at the sink over the
   time from the first request to the last event delivered). The webhook's default mapping
   is the identity, whose events go out as stored; ``delivering_mapped`` repeats the phase
   with a five-field mapping (:data:`MAPPED`), the cost of a vendor destination.
4. ``workers2``: ``full`` with ``crossdock run --workers 2``, /v1/batch; then
   ``delivering_workers2``: the ``delivering`` phase on ``--workers 2`` (process 0 stores and
   delivers, process 1 takes the connections).
5. ``latency``: p50/p99 of /v1/batch at half of ``full``'s /v1/batch rate, open loop from the
   Python generator in ``constant_rate.py`` (wrk2 is not packaged by Debian).

With ``--profile DIR``, separate /v1/batch wrk runs on a full window, solo and delivering, are
sampled with py-spy (``DIR/solo.*``, ``DIR/delivering.*``: ``record --format speedscope`` and
a raw collapsed-stack file), not counted in the figures; ``profile_summary.py`` reads the raw
files. ``--profile-only`` does just that (after the pre-fill).

    .venv/bin/python bench/production.py [--seconds 10] [--segments 2] [--connections 32]
                                         [--ids 5000000] [--profile DIR [--profile-only]]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdk_events
from _common import AUTH, SOURCE, emit, reference_server, sink_destination
from constant_rate import run_constant
from dedupe_fill import fill
from loadgen import build_request
from wrk_runner import run_wrk, wrk_path

from crossdock.testing.daemon import Daemon


class Bench:
    """One run's inputs: template files, the pre-filled queue file, the options."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        batch = sdk_events.batch_templates(200, 100)
        track = sdk_events.track_templates(2000)
        self.batch_events = sdk_events.mean_events(batch)
        self.batch_templates = batch
        self.batch_file = sdk_events.write_templates(tmp / "batch.txt", batch)
        self.track_file = sdk_events.write_templates(tmp / "track.txt", track)
        self.full_db = tmp / "full.db"
        self.fill_seconds = 0.0

    def wrk(self, port: int, kind: str, *, seconds: float | None = None, **kw: object) -> dict:
        """One wrk run of ``batch`` or ``track`` bodies."""
        batch = kind == "batch"
        return run_wrk(
            port,
            "/v1/batch" if batch else "/v1/track",
            self.batch_file if batch else self.track_file,
            seconds=seconds or self.args.seconds,
            connections=self.args.connections,
            events_per_request=self.batch_events if batch else 1.0,
            **kw,  # type: ignore[arg-type]
        )

    def prefill(self) -> None:
        """Build the full-window queue file once; each daemon gets a copy."""
        self.fill_seconds = fill(self.full_db, self.args.ids)

    def daemon(self, name: str, *, full: bool, config: str = SOURCE, workers: int = 1) -> Daemon:
        """A started daemon in its own directory, on a copy of the full file if ``full``."""
        workdir = self.tmp / name
        workdir.mkdir()
        if full:
            shutil.copyfile(self.full_db, workdir / "queue.db")
        extra = ("--workers", str(workers)) if workers > 1 else ()
        daemon = Daemon(config, workdir, extra_args=extra).start(timeout=60)
        if workers > 1:
            daemon.wait_processes_serving(workers)
        return daemon


def _segments(bench: Bench, port: int) -> list[dict]:
    bench.wrk(port, "batch", seconds=2)  # warm-up
    return [bench.wrk(port, "batch") for _ in range(bench.args.segments)]


def measure_bare(bench: Bench) -> dict:
    """The bare handler: static vs generated bodies, and /v1/track."""
    with reference_server("baseline") as port:
        bench.wrk(port, "batch", seconds=2)
        static = bench.wrk(port, "batch", static=True)
        generated = bench.wrk(port, "batch")
        track = bench.wrk(port, "track")
    return {
        "batch_static_body": static,
        "batch": generated,
        "track": track,
        "generated_vs_static": round(generated["requests_per_s"] / static["requests_per_s"], 3),
    }


def measure_daemon(bench: Bench, name: str, *, full: bool, workers: int = 1) -> dict:
    """/v1/batch segments then /v1/track against a daemon with no destination."""
    daemon = bench.daemon(name, full=full, workers=workers)
    try:
        segments = _segments(bench, daemon.port)
        out: dict = {"batch_segments": segments}
        if workers == 1:
            out["track"] = bench.wrk(daemon.port, "track")
            out["dedupe_rows_after"] = _dedupe_rows(daemon.workdir / "queue.db")
    finally:
        daemon.stop()
    return out


def _dedupe_rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        low, high = conn.execute(
            "SELECT (SELECT min(id) FROM dedupe), (SELECT max(id) FROM dedupe)"
        ).fetchone()
    return 0 if low is None else int(high - low + 1)


def _sink_count(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=5) as answer:
        return int(orjson.loads(answer.read())["count"])


def _settled_count(port: int, quiet: float = 0.5) -> int:
    """The sink's count once it stopped changing for ``quiet`` seconds."""
    last = _sink_count(port)
    while True:
        time.sleep(quiet)
        now = _sink_count(port)
        if now == last:
            return now
        last = now


MAPPED = """
[destinations.mapping]
"." = ""
event_name = "event"
user = "userId"
id = "messageId"
product = "properties.product_id"
price = "properties.price"
"""
"""A small vendor-like mapping for the sink destination: the events are decoded, mapped and
serialized again (the identity mapping sends the stored bytes as they are)."""


def measure_delivering(bench: Bench, *, mapped: bool = False, workers: int = 1) -> dict:
    """Ingest with a batching webhook destination running, and the end-to-end rate; with
    ``mapped``, the destination maps each event (:data:`MAPPED`) instead of sending it whole;
    with ``workers`` > 1, ``crossdock run --workers N`` (process 0 stores and delivers)."""
    with reference_server("sink") as sink_port:
        config = SOURCE + sink_destination(sink_port) + (MAPPED if mapped else "")
        name = "delivering-mapped" if mapped else "delivering"
        if workers > 1:
            name += f"-workers{workers}"
        daemon = bench.daemon(name, full=True, config=config, workers=workers)
        try:
            bench.wrk(daemon.port, "batch", seconds=2)
            deadline = time.monotonic() + 120
            while _sink_count(sink_port) < 1000 and time.monotonic() < deadline:
                time.sleep(0.05)
            base = _settled_count(sink_port)  # the warm-up drained: the window starts level
            started = time.perf_counter()
            segments = [bench.wrk(daemon.port, "batch") for _ in range(bench.args.segments)]
            ingest_done = time.perf_counter()
            accepted = sum(s["ok_requests"] for s in segments) * bench.batch_events
            deadline = time.monotonic() + 600
            while _sink_count(sink_port) - base < accepted and time.monotonic() < deadline:
                time.sleep(0.02)
            finished = time.perf_counter()
            delivered = _sink_count(sink_port) - base
        finally:
            daemon.stop()
    return {
        "batch_segments": segments,
        "events_accepted": int(accepted),
        "events_delivered": delivered,
        "ingest_seconds": round(ingest_done - started, 2),
        "drain_after_ingest_seconds": round(finished - ingest_done, 2),
        "end_to_end_events_per_s": round(delivered / (finished - started), 1),
    }


def measure_latency(bench: Bench, batch_rate: float) -> dict:
    """Open-loop /v1/batch at half of ``batch_rate`` requests/s on a full window."""
    rate = max(1.0, batch_rate / 2)
    rng = random.Random()
    count = int(rate * bench.args.latency_seconds)
    templates = bench.batch_templates
    requests = []
    for i in range(count):
        kind, text = templates[i % len(templates)]
        body = sdk_events.fill(kind, text, rng)
        requests.append(build_request("/v1/batch", body, auth=AUTH))
    daemon = bench.daemon("latency", full=True)
    try:
        bench.wrk(daemon.port, "batch", seconds=2)
        return asyncio.run(run_constant(daemon.port, requests, rate))
    finally:
        daemon.stop()


def profile(bench: Bench, out_dir: Path) -> dict:
    """py-spy on a daemon during a /v1/batch wrk run on a full window, solo and delivering to
    the sink (figures not counted: sampling costs the daemon a little)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    daemon = bench.daemon("profile", full=True)
    try:
        solo = _profiled_run(bench, daemon, out_dir / "solo")
    finally:
        daemon.stop()
    with reference_server("sink") as sink_port:
        config = SOURCE + sink_destination(sink_port)
        daemon = bench.daemon("profile-delivering", full=True, config=config)
        try:
            delivering = _profiled_run(bench, daemon, out_dir / "delivering")
        finally:
            daemon.stop()
    return {
        "batch_while_profiled": solo,
        "batch_delivering_while_profiled": delivering,
        "files": sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*.*")),
    }


def _profiled_run(bench: Bench, daemon: Daemon, prefix: Path) -> dict:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    bench.wrk(daemon.port, "batch", seconds=2)
    assert daemon.process is not None
    pid = str(daemon.process.pid)
    secs = str(int(bench.args.seconds))
    procs = []
    for fmt, suffix in (("raw", ".collapsed"), ("speedscope", ".speedscope.json")):
        command = [spy, "record", "--pid", pid, "--duration", secs, "--rate", "100", "--threads"]
        command += ["--nonblocking", "--format", fmt, "-o", f"{prefix}{suffix}"]
        procs.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
    run = bench.wrk(daemon.port, "batch")
    for proc in procs:
        proc.wait(60)
    return run


def _rate(segment: dict) -> float:
    return float(segment["events_per_s"])


def summarize(r: dict) -> dict:
    """The figures the issue's targets speak of, as ratios from this run."""
    bare = r["bare"]["batch"]["events_per_s"]
    empty = [_rate(s) for s in r["empty"]["batch_segments"]]
    full = [_rate(s) for s in r["full"]["batch_segments"]]
    under = [_rate(s) for s in r["delivering"]["batch_segments"]]
    under_mapped = [_rate(s) for s in r["delivering_mapped"]["batch_segments"]]
    w2 = [_rate(s) for s in r["workers2"]["batch_segments"]]
    under_w2 = [_rate(s) for s in r["delivering_workers2"]["batch_segments"]]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {
        "batch_full_vs_bare": round(mean(full) / bare, 3),
        "batch_full_vs_bare_static_body": round(
            mean(full) / r["bare"]["batch_static_body"]["events_per_s"], 3
        ),
        "batch_empty_vs_bare": round(mean(empty) / bare, 3),
        "batch_full_vs_empty": round(mean(full) / mean(empty), 3),
        "batch_full_last_vs_first_segment": round(full[-1] / full[0], 3),
        "track_full_requests_per_s": r["full"]["track"]["requests_per_s"],
        "track_full_vs_bare": round(
            r["full"]["track"]["requests_per_s"] / r["bare"]["track"]["requests_per_s"], 3
        ),
        "end_to_end_events_per_s": r["delivering"]["end_to_end_events_per_s"],
        "ingest_under_delivery_vs_solo": round(mean(under) / mean(full), 3),
        "end_to_end_mapped_events_per_s": r["delivering_mapped"]["end_to_end_events_per_s"],
        "ingest_under_mapped_delivery_vs_solo": round(mean(under_mapped) / mean(full), 3),
        "workers2_vs_one": round(mean(w2) / mean(full), 3),
        "workers2_end_to_end_events_per_s": r["delivering_workers2"]["end_to_end_events_per_s"],
        "workers2_ingest_under_delivery_vs_solo": round(mean(under_w2) / mean(w2), 3),
        "p99_ms_at_half_rate": r["latency"]["latency_ms"]["p99"],
        "wrk_generated_vs_static_on_bare": r["bare"]["generated_vs_static"],
    }


TARGETS = {
    "batch_full_vs_bare": ">= 0.25",
    "batch_full_vs_empty": ">= 0.90",
    "track_full_requests_per_s": ">= 8000",
    "end_to_end_events_per_s": ">= 45000",
    "ingest_under_delivery_vs_solo": ">= 0.85",
    "workers2_vs_one": ">= 1.6",
    "p99_ms_at_half_rate": "<= 25",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="per wrk run")
    parser.add_argument("--segments", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--ids", type=int, default=5_000_000)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument(
        "--profile-only", action="store_true", help="pre-fill, profile (needs --profile), stop"
    )
    args = parser.parse_args()
    if args.profile_only:
        if args.profile is None:
            parser.error("--profile-only needs --profile DIR")
        with tempfile.TemporaryDirectory() as tmp:
            bench = Bench(args, Path(tmp))
            bench.prefill()
            emit({"benchmark": "production-profile", "profile": profile(bench, args.profile)})
        return
    wrk_path()  # exits with a clear message when wrk is missing
    results: dict = {"benchmark": "production", "load": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args, Path(tmp))
        results["events_per_batch"] = bench.batch_events
        results["bare"] = measure_bare(bench)
        results["empty"] = measure_daemon(bench, "empty", full=False)
        bench.prefill()
        results["dedupe_prefill"] = {"ids": args.ids, "seconds": round(bench.fill_seconds, 1)}
        results["full"] = measure_daemon(bench, "full", full=True)
        results["delivering"] = measure_delivering(bench)
        results["delivering_mapped"] = measure_delivering(bench, mapped=True)
        results["workers2"] = measure_daemon(bench, "workers2", full=True, workers=2)
        results["delivering_workers2"] = measure_delivering(bench, workers=2)
        full_rate = sum(s["requests_per_s"] for s in results["full"]["batch_segments"])
        results["latency"] = measure_latency(
            bench, full_rate / len(results["full"]["batch_segments"])
        )
        if args.profile is not None:
            results["profile"] = profile(bench, args.profile)
    results["load_after"] = os.getloadavg()
    results["summary"] = summarize(results)
    results["targets"] = TARGETS
    emit(results)


if __name__ == "__main__":
    main()
