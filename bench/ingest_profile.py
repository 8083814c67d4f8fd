"""Event-loop CPU per event of durable ingest, by stage, before and after (issue 12).

The production benchmark (``production.py``) shows the event loop bounds durable ``/v1/batch``
once the dedupe log took the SQLite writer off the critical path. This one measures what the
process spends per event, as CPU time, so it stays comparable on a machine other work shares
(throughput there is not):

- ``batch_wrk`` / ``track_wrk``: the core's real handler (``add_source_routes``, the
  ``segment`` source) served by aiohttp in this process, appending to a real
  :class:`SqliteQueue` (``synchronous=full``), driven by wrk with ``wrk/sdk_bodies.lua``
  (realistic SDK bodies, fresh random ids, as ``production.py``) for ``--seconds``. Reported:
  CPU µs per event of the **event loop** (the main thread: ``time.thread_time``), of the
  **SQLite writer** thread, and of the whole process; events/s is only indicative.
  ``--ids N`` runs both on a copy of a queue file whose dedupe window holds ``N`` ids
  (``dedupe_fill.py``; 5,000,000 is the default window).
- ``batch_stages_us_per_event``: the stages the handler runs for a ``/v1/batch`` body, timed
  one after the other in a loop (``parse``: ``crossdock.parse_json``; ``unpack``: the segment
  ingestor's batch unpacking with its size check; ``normalize``; ``depth``: ``check_depth``;
  ``encode``: the serialization for storage (with the depth check where the code under test
  does both in one pass: ``depth`` is then ``null``); ``respond``: the 200 answer).

``--ref REF`` (default ``ebd7adf``, before this work) runs the same measurement in a child
process on ``git archive REF core`` in a temporary directory, so both figures come from the
same run on the same machine; ``--ref none`` skips it. Output: one JSON document.

    PYTHONPATH=core .venv/bin/python bench/ingest_profile.py [--seconds 5] [--ids 5000000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sdk_events  # noqa: E402
from _common import free_port  # noqa: E402
from wrk_runner import run_wrk  # noqa: E402

WRITE_KEY = "bench-write-key"
AUTH = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
PER_REQUEST = 100
DEFAULT_REF = "ebd7adf"


def bodies(count: int, kind: str, seed: int = 7) -> list[bytes]:
    """``count`` request bodies with fresh random ids: ``batch`` (100 events) or ``track``."""
    rng = random.Random(seed)
    if kind == "batch":
        templates = sdk_events.batch_templates(20, PER_REQUEST)
    else:
        templates = sdk_events.track_templates(200)
    return [sdk_events.fill(*templates[i % len(templates)], rng) for i in range(count)]


def _source() -> Any:
    from crossdock.ingest.sources.segment import SegmentSourceSettings
    from crossdock.secrets import Secret
    from crossdock.types import Source

    settings = SegmentSourceSettings(write_keys=[Secret(WRITE_KEY)])
    return Source(id="bench", type="segment", path=None, settings=settings)


async def handler_cpu(
    kind: str, seconds: float, templates: Path, workdir: Path, prefilled: Path | None = None
) -> dict[str, Any]:
    """The event loop's CPU per event serving wrk: the core's handler in this process, on a
    copy of ``prefilled`` (a queue file with a full dedupe window) when given."""
    from aiohttp import web

    from crossdock.ingest.handler import add_source_routes
    from crossdock.ingest.sources.segment import SegmentIngestor
    from crossdock.metrics import Metrics
    from crossdock.queue.sqlite import SqliteQueue

    source = _source()
    if prefilled is not None:
        shutil.copyfile(prefilled, workdir / f"{kind}.db")
    queue = SqliteQueue(workdir / f"{kind}.db", synchronous="full")
    await queue.open([])
    app = web.Application(client_max_size=4 * 1024 * 1024)
    add_source_routes(app, source, SegmentIngestor(source), queue, Metrics(sources=["bench"]))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    path = "/v1/batch" if kind == "batch" else "/v1/track"
    per = PER_REQUEST if kind == "batch" else 1
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, lambda: run_wrk(port, path, templates, seconds=1))
        gc.collect()
        commits0 = queue.commits
        writer = _thread_clock("crossdock-sqlite-writer")
        cpu0, all0, w0 = time.thread_time(), time.process_time(), _clock(writer)
        result = await loop.run_in_executor(
            None, lambda: run_wrk(port, path, templates, seconds=seconds, events_per_request=per)
        )
        cpu = time.thread_time() - cpu0
        process_cpu, writer_cpu = time.process_time() - all0, _clock(writer) - w0
        commits = queue.commits - commits0
    finally:
        await runner.cleanup()
        await queue.close()
    events = result["ok_requests"] * per
    return {
        "loop_cpu_us_per_event": round(cpu / events * 1e6, 3),
        "writer_cpu_us_per_event": round(writer_cpu / events * 1e6, 3),
        "process_cpu_us_per_event": round(process_cpu / events * 1e6, 3),
        "loop_busy_share": round(cpu / result["seconds"], 3),
        "events_per_s": result["events_per_s"],
        "events_per_commit": round(events / max(commits, 1), 1),
        "errors": result["errors"],
    }


def _thread_clock(prefix: str) -> int | None:
    """The CPU clock of the first thread whose name starts with ``prefix`` (None: no such)."""
    for thread in threading.enumerate():
        if thread.name.startswith(prefix) and thread.native_id is not None:
            return time.pthread_getcpuclockid(thread.ident or 0)
    return None


def _clock(clock: int | None) -> float:
    return 0.0 if clock is None else time.clock_gettime(clock)


def stages(requests: int) -> dict[str, float | None]:
    """µs per event of each stage the handler runs for ``/v1/batch`` (best of 3 passes)."""
    from crossdock import parse_json
    from crossdock.ingest import handler as handler_mod
    from crossdock.ingest import normalize as norm
    from crossdock.ingest.sources.segment import SegmentIngestor

    try:  # trees since the checks on stored rows (integers, event sizes)
        from crossdock.ingest.stored_checks import check_stored_rows
    except ImportError:
        check_stored_rows = None

    ingestor = SegmentIngestor(_source())
    data = bodies(requests, "batch")
    best: dict[str, float] = {}
    encode = getattr(handler_mod, "encode_events", None)
    for _ in range(3):
        times = dict.fromkeys(("parse", "unpack", "normalize", "depth", "encode", "respond"), 0.0)
        gc.collect()
        for body in data:
            t0 = time.perf_counter()
            if check_stored_rows is None:
                parsed = parse_json(body)
                t1 = time.perf_counter()
                ingested = ingestor._unpack_batch(parsed, len(body))
            else:
                parsed = parse_json(body, defer_integers=True)
                t1 = time.perf_counter()
                ingested = ingestor._unpack_batch(parsed, body)
            t2 = time.perf_counter()
            normalized = norm.normalize(ingested, source_id="bench", received_at=time.time())
            t3 = time.perf_counter()
            if encode is None:
                handler_mod.check_depth(normalized.events, ingested, 64)
                t4 = time.perf_counter()
                [(ev.get("messageId"), orjson.dumps(ev)) for ev in normalized.events]
            else:
                t4 = t3
                rows = encode(normalized.events, ingested, 64)
                if check_stored_rows is not None:
                    check_stored_rows(rows, ingested)
            t5 = time.perf_counter()
            handler_mod.json_response(200, ingested.body, dict(ingested.headers))
            t6 = time.perf_counter()
            times["parse"] += t1 - t0
            times["unpack"] += t2 - t1
            times["normalize"] += t3 - t2
            times["depth"] += t4 - t3
            times["encode"] += t5 - t4
            times["respond"] += t6 - t5
        for name, seconds in times.items():
            us = seconds / (requests * PER_REQUEST) * 1e6
            best[name] = min(best.get(name, us), us)
    out: dict[str, float | None] = {k: round(v, 3) for k, v in best.items()}
    if encode is not None:
        out["depth"] = None  # folded into ``encode``
    out["sum"] = round(sum(v for v in best.values()), 3)
    return out


def measure(requests: int, seconds: float, prefilled: Path | None) -> dict[str, Any]:
    """Every figure for the crossdock importable here."""
    import crossdock

    with tempfile.TemporaryDirectory(prefix="ingest-profile-") as tmp:
        work = Path(tmp)
        batch = sdk_events.write_templates(work / "b.txt", sdk_events.batch_templates(200, 100))
        track = sdk_events.write_templates(work / "t.txt", sdk_events.track_templates(2000))
        return {
            "crossdock": str(Path(crossdock.__file__).parent),
            "batch_stages_us_per_event": stages(requests),
            "batch_wrk": asyncio.run(handler_cpu("batch", seconds, batch, work, prefilled)),
            "track_wrk": asyncio.run(handler_cpu("track", seconds, track, work, prefilled)),
        }


def _measure_ref(ref: str, requests: int, seconds: float, prefilled: Path | None) -> dict[str, Any]:
    root = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"],
        cwd=HERE,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="ingest-profile-ref-") as tmp:
        archive = subprocess.run(
            ["git", "archive", ref, "core"], cwd=root, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "core")}
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                "--requests",
                str(requests),
                "--seconds",
                f"{seconds}",
            ],
            env=env,
            capture_output=True,
            check=True,
        ).stdout
    return orjson.loads(out)


def _ratio(after: dict[str, Any], before: dict[str, Any], group: str, key: str) -> float:
    return round(after[group][key] / before[group][key], 3)


def main() -> None:
    """Parse arguments, measure this tree and ``--ref``, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="100-event batches per pass")
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument("--ref", default=DEFAULT_REF, help="git ref to compare with, or none")
    parser.add_argument("--ids", type=int, default=0, help="dedupe window pre-filled (5000000)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prefilled", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.stdout.buffer.write(orjson.dumps(measure(args.requests, args.seconds, args.prefilled)))
        return
    result: dict[str, Any] = {"requests": args.requests, "events_per_batch": PER_REQUEST}
    with tempfile.TemporaryDirectory(prefix="ingest-profile-fill-") as tmp:
        prefilled = None
        if args.ids:
            from dedupe_fill import fill

            prefilled = Path(tmp) / "full.db"
            result["dedupe_prefill"] = {
                "ids": args.ids,
                "seconds": round(fill(prefilled, args.ids), 1),
            }
        if args.ref != "none":
            before = _measure_ref(args.ref, args.requests, args.seconds, prefilled)
            result["before"] = {"ref": args.ref, **before}
        result["after"] = measure(args.requests, args.seconds, prefilled)
    if "before" in result:
        b, a = result["before"], result["after"]
        result["after_vs_before"] = {
            "batch_loop_cpu_per_event": _ratio(a, b, "batch_wrk", "loop_cpu_us_per_event"),
            "batch_writer_cpu_per_event": _ratio(a, b, "batch_wrk", "writer_cpu_us_per_event"),
            "batch_process_cpu_per_event": _ratio(a, b, "batch_wrk", "process_cpu_us_per_event"),
            "batch_events_per_s": _ratio(a, b, "batch_wrk", "events_per_s"),
            "track_loop_cpu_per_event": _ratio(a, b, "track_wrk", "loop_cpu_us_per_event"),
            "track_process_cpu_per_event": _ratio(a, b, "track_wrk", "process_cpu_us_per_event"),
            "track_events_per_s": _ratio(a, b, "track_wrk", "events_per_s"),
            "batch_stages_sum": _ratio(a, b, "batch_stages_us_per_event", "sum"),
        }
    sys.stdout.buffer.write(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")


if __name__ == "__main__":
    main()
