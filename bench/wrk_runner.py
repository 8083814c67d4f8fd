"""Drive load with wrk (C, Debian's ``wrk``) and ``wrk/sdk_bodies.lua``; parse its result.

wrk is the throughput load generator: it costs the servers' two cores far less than a Python
client. The Lua script gives every request fresh random messageIds (see ``sdk_events.py``).
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "wrk" / "sdk_bodies.lua"
FALLBACK = Path("/usr/bin/wrk")
"""Debian's wrk, used when ``wrk`` is not on PATH."""


def wrk_path() -> str:
    """The wrk binary, or exit non-zero saying how to get it."""
    found = shutil.which("wrk") or (str(FALLBACK) if FALLBACK.exists() else None)
    if found is None:
        sys.stderr.write(
            "error: these benchmarks need wrk (a C HTTP load generator) and it is not on PATH;"
            " install it with `apt-get install wrk` (Debian/Ubuntu) and run again\n"
        )
        raise SystemExit(2)
    return found


def run_wrk(
    port: int,
    path: str,
    templates: Path,
    *,
    seconds: float,
    connections: int = 32,
    threads: int = 2,
    static: bool = False,
    events_per_request: float = 1.0,
) -> dict:
    """Run wrk for ``seconds`` against ``127.0.0.1:port{path}``; rates, errors, latency (ms)."""
    args = [
        wrk_path(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(SCRIPT),
        f"http://127.0.0.1:{port}{path}",
        "--",
        str(templates),
    ]
    if static:
        args.append("static")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        msg = f"wrk failed ({proc.returncode}): {proc.stderr[-1000:]} {proc.stdout[-1000:]}"
        raise RuntimeError(msg)
    raw = orjson.loads(line[len("WRKJSON ") :])
    secs = raw["duration_us"] / 1e6
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["status"] + raw["timeout"]
    ok = raw["requests"] - raw["status"]
    return {
        "requests_per_s": round(ok / secs, 1),
        "events_per_s": round(ok * events_per_request / secs, 1),
        "ok_requests": ok,
        "errors": errors,
        "seconds": round(secs, 2),
        # wrk's own CPU (cores busy): what generating and sending the load cost.
        "wrk_cpu_cores": round(cpu / secs, 2),
        "latency_ms": {
            "p50": round(raw["p50_us"] / 1000, 2),
            "p90": round(raw["p90_us"] / 1000, 2),
            "p99": round(raw["p99_us"] / 1000, 2),
            "max": round(raw["max_us"] / 1000, 2),
        },
    }
