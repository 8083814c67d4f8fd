"""``bench/commit_steps.py`` compares what it says it compares (no timings asserted): its
``one_step`` queue commits in one statement after its first commit, its ``full`` queue never
does, and both answer every request."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import commit_steps  # noqa: E402

from crossdock.queue import _sqlite_onestep as onestep  # noqa: E402


@pytest.mark.parametrize("kind", ["one_step", "full"])
async def test_each_kind_takes_the_path_it_names(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    append = onestep.append

    def counted(*args: Any) -> None:
        calls.append(len(args[2]))
        append(*args)

    monkeypatch.setattr(onestep, "append", counted)
    args = argparse.Namespace(rate=40.0, events=20, busy_us=200.0, idle_ms=1.0, seconds=0.5)
    result = await commit_steps._round(kind, args, seed=1)
    assert result["requests"] == 20
    if kind == "full":
        assert calls == []
    else:
        # Every commit but the first after opening (at least one request of 20 events).
        assert 0 < sum(calls) <= 20 * 20 - 20
        assert sum(calls) % 20 == 0
