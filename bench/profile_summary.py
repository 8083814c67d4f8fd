"""Summarize a py-spy collapsed-stack profile (``--format raw --threads``) per thread.

py-spy samples only threads that are running (not idle), so a thread's samples divided by
``rate * seconds`` is the share of a core it kept busy. For each thread: that share, and the
lines where its time went (the innermost frame of each sample, "self"; and the innermost frame
inside Crossdock's own code, which shows which call of ours the C or library time belongs to).

    .venv/bin/python bench/profile_summary.py daemon.collapsed [--rate 100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import orjson

_THREAD = re.compile(r"^thread \((?:0x)?[0-9a-fA-F]+\)(?:: )?(?P<name>.*)$")


def _thread_name(frame: str) -> str:
    match = _THREAD.match(frame)
    name = match.group("name") if match else frame
    return re.sub(r"_\d+$", "", name) or "unnamed"


def summarize(text: str, *, rate: float, seconds: float, top: int = 8) -> dict:
    """Per thread: busy share of a core and the top self / own-code frames."""
    samples: Counter[str] = Counter()
    own: dict[str, Counter[str]] = defaultdict(Counter)
    leaf: dict[str, Counter[str]] = defaultdict(Counter)
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = _thread_name(frames[0])
        samples[thread] += count
        leaf[thread][frames[-1]] += count
        ours = [f for f in frames[1:] if "crossdock/" in f]
        own[thread][ours[-1] if ours else "(outside crossdock)"] += count
    budget = rate * seconds
    return {
        thread: {
            "samples": n,
            "busy_share_of_a_core": round(n / budget, 3) if budget else None,
            "top_self": [[f, c] for f, c in leaf[thread].most_common(top)],
            "top_own_code": [[f, c] for f, c in own[thread].most_common(top)],
        }
        for thread, n in samples.most_common()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    result = summarize(args.path.read_text(), rate=args.rate, seconds=args.seconds)
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":
    main()
