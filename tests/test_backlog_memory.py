"""Memory under a backlog (issue 12): the only destination down while events come in.

``bench/backlog.py`` does it with 1 M events; here 150 K keep it short. The daemon's ``VmRSS``
is sampled every 0.5 s from the first request to the last event delivered and must stay under
150 MiB (no per-event state in memory); once the destination is back, every event reaches the
sink exactly once (distinct messageIds counted by the sink). Also: a webhook body that expands
a lot (50,000 small objects in 1.4 MB) gets the precise 413 of ``[server.limits] max_events``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import aiohttp
import orjson
import pytest

from crossdock.testing.daemon import Daemon
from crossdock.testing.helpers import post_json

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import backlog  # noqa: E402

EVENTS = 150_000


@pytest.mark.slow
def test_backlog_keeps_rss_bounded_and_drains_every_event_once(tmp_path: Path) -> None:
    result = backlog.measure_backlog(
        tmp_path, EVENTS, connections=16, interval=0.5, drain_timeout=90
    )
    rss = result["rss"]
    print("backlog:", orjson.dumps(rss).decode(), "drain", result["drain_events_per_s"])
    assert result["ingest"]["events"] == EVENTS
    assert result["refused_while_down"] >= 1  # the destination was down and was tried
    # Sampled throughout: while ingesting, while down and idle, while draining.
    assert {"ingest", "down_idle", "drain"} <= set(rss["max_mib_by_phase"])
    assert rss["samples"] >= 10
    assert result["daemon_child_processes"] == 0  # the sampled process is the daemon itself
    assert rss["max_mib"] < backlog.RSS_BOUND_MIB, rss
    assert result["vm_hwm_mib"] < backlog.RSS_BOUND_MIB, result["vm_hwm_mib"]
    assert result["delivered_unique"] == EVENTS
    assert result["duplicates"] == 0
    assert result["events_received"] == EVENTS


FULL_WINDOW_IDS = 5_000_000
FULL_WINDOW_EVENTS = 100_000
FULL_WINDOW_GUARD_MIB = 170
"""Not the issue's 150 MiB: on a full window the daemon peaks at 139-148 MiB on a quiet
machine and 150-155 MiB when other processes load both cores (the ingest working set grows
as commits slow down; issue 12 stays open on it). This guards against a return to what the
index alone cost before (64-bit slots and no ``malloc_trim``: 195 MiB)."""


@pytest.mark.slow
def test_backlog_on_a_full_dedupe_window_keeps_rss_bounded(tmp_path: Path) -> None:
    """The steady state of a day's traffic: the default window's 5 M ids are in the log (and
    the in-memory index) before the backlog starts. The index (36-45 MiB), the heap left by
    rebuilding it and the ingest working set must stay under :data:`FULL_WINDOW_GUARD_MIB`,
    and the daemon must start under the issue's bound with room for the working set."""
    from dedupe_fill import fill

    prefilled = tmp_path / "full.db"
    fill(prefilled, FULL_WINDOW_IDS)
    result = backlog.measure_backlog(
        tmp_path, FULL_WINDOW_EVENTS, connections=16, interval=0.5, drain_timeout=90,
        prefilled=prefilled,
    )  # fmt: skip
    rss = result["rss"]
    print("full-window backlog:", orjson.dumps(rss).decode(), "hwm", result["vm_hwm_mib"])
    assert rss["max_mib_by_phase"]["start"] < 100, rss  # index rebuilt, heap given back
    assert rss["max_mib"] < FULL_WINDOW_GUARD_MIB, rss
    assert result["vm_hwm_mib"] < FULL_WINDOW_GUARD_MIB, result["vm_hwm_mib"]
    assert result["delivered_unique"] == FULL_WINDOW_EVENTS
    assert result["duplicates"] == 0


CONFIG = """
[[sources]]
id = "hook"
type = "webhook"
"""


async def test_a_body_that_expands_a_lot_gets_the_precise_413(tmp_path: Path) -> None:
    # 50,000 small objects in 1.4 MB: far under the webhook's 4 MB byte limit, but each object
    # becomes a Python dict (and an event) once parsed. The default max_events (5,000) refuses it.
    body = orjson.dumps([{"type": "track", "u": f"{i:05d}"} for i in range(50_000)])
    assert 1_400_000 <= len(body) < 1_500_000
    daemon = Daemon(CONFIG, tmp_path).start()
    try:
        async with aiohttp.ClientSession() as session:
            status, answer = await post_json(session, daemon.url + "/hooks/hook", body)
            assert status == 413, answer
            assert answer["code"] == "too_many_events"
            assert answer["message"] == (
                "body: 50000 events, more than 5000 per request (send smaller batches)"
            )
            # The limit itself is accepted: 5,000 small events are stored.
            events = [{"type": "track", "event": "E", "userId": f"{i}"} for i in range(5000)]
            at_limit = orjson.dumps(events)
            status, answer = await post_json(session, daemon.url + "/hooks/hook", at_limit)
            assert status == 200, answer
        assert daemon.process is not None
        hwm = backlog.proc_status_kib(daemon.process.pid, "VmHWM") / 1024
        assert hwm < backlog.RSS_BOUND_MIB, hwm
    finally:
        daemon.stop()
