"""Run every benchmark once with its documented arguments; print one JSON document.

``make bench`` calls this. Each benchmark runs as its own process (as when run by hand) and its
JSON is collected under its name; a benchmark that fails is reported with its exit code and
the end of its stderr instead of stopping the others. Run it on an idle machine: the figures are
ratios against baselines measured in the same run, but two cores shared with other work still
move them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent

BENCHMARKS: dict[str, list[str]] = {
    "transform": ["transform.py"],
    "queue_sqlite": ["queue_sqlite.py"],
    "queue_nats": ["queue_nats.py"],
    "ingest": ["ingest.py", "--batches", "3000", "--tracks", "15000", "--connections", "32"],
    "e2e": ["e2e.py", "--batches", "800"],
    # SDK ids, a full 5 M-id dedupe window, wrk (needs Debian's wrk; ~4 min, ~3 GB of disk)
    "production": ["production.py"],
    "dedupe_cost": ["dedupe_cost.py"],
}


def main() -> None:
    only = set(sys.argv[1:])
    results: dict[str, object] = {}
    for name, args in BENCHMARKS.items():
        if only and name not in only:
            continue
        started = time.monotonic()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(
            [sys.executable, str(HERE / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0:
            results[name] = orjson.loads(proc.stdout)
        else:
            results[name] = {"failed": proc.returncode, "stderr": proc.stderr[-2000:]}
        print(f"  {name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    sys.stdout.write(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":
    main()
