"""The production-like benchmark on the ``nats`` queue beside ``sqlite``, in the same run.

The same load as ``production.py`` (wrk with ``wrk/sdk_bodies.lua``: ``/v1/batch`` of 100
SDK-shaped events with fresh random messageIds per request, 10 % of batches without ids), on
one process (no ``--workers``), for each queue:

- ``solo``: ``crossdock run`` with no destination: /v1/batch events/s over ``--seconds``;
- ``delivering``: with one batching ``webhook`` destination (batch 1,000, concurrency 4) to a
  counting sink (``fault_sinks.py``, which also counts distinct messageIds): ingest under
  delivery, and end to end (events at the sink over the time from the first request to the
  last event delivered).

``nats`` is a local ``nats-server -js`` (file storage in a temporary directory, started once
for the run, a fresh stream per daemon); ``sqlite`` is the default queue file
(``synchronous = FULL``), with an empty dedupe window unless ``--ids N`` pre-fills it like
``production.py`` (the NATS stream's duplicate window starts empty either way). With
``--rounds 2`` the queues alternate order. The CPU the nats-server process used during each
nats measurement is reported (it shares the two cores).

    .venv/bin/python bench/nats_production.py [--seconds 10] [--rounds 1] [--ids 0]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdk_events
from _common import SOURCE, emit, sink_destination
from backlog import fault_sink, sink_count
from dedupe_fill import fill
from wrk_runner import run_wrk, wrk_path

from crossdock.queue.nats_server import NatsServer, nats_unavailable
from crossdock.testing.daemon import Daemon

QUEUES = ("sqlite", "nats")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Run:
    """One invocation's inputs: templates, the NATS server, the optional pre-filled file."""

    def __init__(self, args: argparse.Namespace, tmp: Path, nats: NatsServer) -> None:
        self.args = args
        self.tmp = tmp
        self.nats = nats
        templates = sdk_events.batch_templates(200, 100)
        self.events_per_batch = sdk_events.mean_events(templates)
        self.batch_file = sdk_events.write_templates(tmp / "batch.txt", templates)
        self.full_db: Path | None = None
        if args.ids:
            self.full_db = tmp / "full.db"
            fill(self.full_db, args.ids)

    def queue_section(self, queue: str) -> str:
        """``[queue]`` of a daemon: a fresh NATS stream, or nothing (the SQLite file)."""
        if queue == "sqlite":
            return ""
        stream = "bench" + uuid.uuid4().hex[:8]
        return f'[queue]\nbackend = "nats"\nurl = "{self.nats.url}"\nstream = "{stream}"\n\n'

    def daemon(self, name: str, queue: str, body: str) -> Daemon:
        """A started daemon in its own directory (on a copy of the full file for sqlite)."""
        workdir = self.tmp / name
        workdir.mkdir()
        if queue == "sqlite" and self.full_db is not None:
            shutil.copyfile(self.full_db, workdir / "queue.db")
        return Daemon(self.queue_section(queue) + body, workdir).start(timeout=60)

    def wrk(self, port: int, seconds: float | None = None) -> dict[str, Any]:
        """One wrk run of /v1/batch."""
        return run_wrk(
            port,
            "/v1/batch",
            self.batch_file,
            seconds=seconds or self.args.seconds,
            connections=self.args.connections,
            events_per_request=self.events_per_batch,
        )

    def nats_cpu(self) -> float:
        """The nats-server's CPU seconds so far."""
        assert self.nats.process is not None
        return cpu_seconds(self.nats.process.pid)


def measure_solo(run: Run, queue: str, tag: str) -> dict[str, Any]:
    """/v1/batch with no destination."""
    daemon = run.daemon(f"{queue}-solo-{tag}", queue, SOURCE)
    try:
        run.wrk(daemon.port, seconds=2)  # warm-up
        cpu = run.nats_cpu()
        result = run.wrk(daemon.port)
        result["nats_server_cpu_cores"] = round((run.nats_cpu() - cpu) / result["seconds"], 2)
    finally:
        daemon.stop()
    return result


def measure_delivering(run: Run, queue: str, tag: str) -> dict[str, Any]:
    """/v1/batch with the sink destination running, and the end-to-end rate."""
    with fault_sink(200) as sink:
        daemon = run.daemon(f"{queue}-delivering-{tag}", queue, SOURCE + sink_destination(sink))
        try:
            run.wrk(daemon.port, seconds=2)  # warm-up, then let it drain
            base = _settled(sink)
            cpu = run.nats_cpu()
            started = time.time()
            load = run.wrk(daemon.port)
            ingest_done = time.time()
            accepted = int(load["ok_requests"] * run.events_per_batch)
            deadline = time.monotonic() + 600
            count = sink_count(sink)
            while count["unique"] - base["unique"] < accepted and time.monotonic() < deadline:
                time.sleep(0.05)
                count = sink_count(sink)
            nats_cpu = run.nats_cpu() - cpu
        finally:
            daemon.stop()
    delivered = count["unique"] - base["unique"]
    seconds = count["last_at"] - started
    return {
        "ingest": load,
        "events_accepted": accepted,
        "events_delivered_unique": delivered,
        "duplicates": count["duplicates"],
        "drain_after_ingest_seconds": round(count["last_at"] - ingest_done, 2),
        "end_to_end_events_per_s": round(delivered / seconds, 1),
        "nats_server_cpu_cores": round(nats_cpu / seconds, 2),
    }


def _settled(port: int, quiet: float = 0.5) -> dict[str, Any]:
    """The sink's counters once they stopped changing for ``quiet`` seconds (after a warm-up
    that delivered something)."""
    deadline = time.monotonic() + 120
    while sink_count(port)["unique"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    last = sink_count(port)
    while True:
        time.sleep(quiet)
        now = sink_count(port)
        if now["unique"] == last["unique"]:
            return now
        last = now


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def summarize(results: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """nats / sqlite ratios (means over rounds) and the rates they come from."""

    def rates(queue: str, case: str, key: str) -> list[float]:
        rows = results[queue][case]
        if case == "solo":
            return [r["events_per_s"] for r in rows]
        if key == "ingest":
            return [r["ingest"]["events_per_s"] for r in rows]
        return [r["end_to_end_events_per_s"] for r in rows]

    out: dict[str, Any] = {}
    for queue in QUEUES:
        out[queue] = {
            "solo_ingest_events_per_s": rates(queue, "solo", "ingest"),
            "ingest_under_delivery_events_per_s": rates(queue, "delivering", "ingest"),
            "end_to_end_events_per_s": rates(queue, "delivering", "e2e"),
        }
    for key in ("solo_ingest_events_per_s", "end_to_end_events_per_s"):
        ratio = _mean(out["nats"][key]) / _mean(out["sqlite"][key])
        out[f"nats_vs_sqlite_{key.removesuffix('_events_per_s')}"] = round(ratio, 3)
    for queue in QUEUES:
        under = _mean(out[queue]["ingest_under_delivery_events_per_s"])
        out[queue]["ingest_under_delivery_vs_solo"] = round(
            under / _mean(out[queue]["solo_ingest_events_per_s"]), 3
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--ids", type=int, default=0, help="pre-fill sqlite's dedupe window")
    args = parser.parse_args()
    wrk_path()
    reason = nats_unavailable()
    if reason:
        raise SystemExit(reason)
    result: dict[str, Any] = {"benchmark": "nats_production", "load": os.getloadavg()}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        q: {"solo": [], "delivering": []} for q in QUEUES
    }
    nats = NatsServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run = Run(args, Path(tmp), nats)
            result["events_per_batch"] = run.events_per_batch
            result["sqlite_dedupe_prefill_ids"] = args.ids
            for r in range(args.rounds):
                order = QUEUES if r % 2 == 0 else QUEUES[::-1]
                for queue in order:
                    results[queue]["solo"].append(measure_solo(run, queue, str(r)))
                    results[queue]["delivering"].append(measure_delivering(run, queue, str(r)))
    finally:
        nats.stop()
    result["queues"] = results
    result["load_after"] = os.getloadavg()
    result["summary"] = summarize(results)
    result["targets"] = {"nats_vs_sqlite_end_to_end": ">= 0.7"}
    emit(result)


if __name__ == "__main__":
    main()
