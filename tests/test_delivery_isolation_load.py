"""Isolation under load (issue 12), through the real daemon: one destination answering 500 for
ever, one healthy. ``bench/isolation.py`` measures the rates; here, with small numbers and no
timing asserted: the healthy one gets every event exactly once, ingest keeps answering 200 while
the other fails, and the failing one's events are all still owed (pending, retrying or dead
letters), none counted delivered.

``tests/test_delivery_isolation.py`` covers the sender's isolation of refused events inside one
destination; this file is about destinations isolated from each other.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from crossdock.testing.daemon import Daemon
from crossdock.testing.helpers import wait_until

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import sdk_events  # noqa: E402
from _common import AUTH, SOURCE  # noqa: E402
from fault_sinks import FaultSink  # noqa: E402
from isolation import destination  # noqa: E402

BATCHES = 30  # of 100 events, in two rounds


async def _send(session: aiohttp.ClientSession, url: str, bodies: list[bytes]) -> list[int]:
    statuses = []
    for body in bodies:
        headers = {"Authorization": AUTH, "Content-Type": "application/json"}
        async with session.post(url + "/v1/batch", data=body, headers=headers) as response:
            await response.read()
            statuses.append(response.status)
    return statuses


async def _status(session: aiohttp.ClientSession, daemon: Daemon, dest: str) -> dict[str, Any]:
    url = f"{daemon.url}/admin/destinations/{dest}"
    async with session.get(url, headers=daemon.admin_headers()) as response:
        assert response.status == 200
        return dict(orjson.loads(await response.read()))


async def test_a_destination_failing_for_ever_leaves_the_healthy_one_and_ingest_alone(
    tmp_path: Path,
) -> None:
    rng = random.Random(7)
    templates = sdk_events.batch_templates(BATCHES, 100)
    bodies = [sdk_events.fill(kind, text, rng) for kind, text in templates]
    sent_ids = {
        e["messageId"] for body in bodies for e in orjson.loads(body)["batch"] if "messageId" in e
    }
    total = BATCHES * 100
    async with FaultSink(200) as healthy, FaultSink(500) as failing:
        config = SOURCE + destination("healthy", healthy.port) + destination("other", failing.port)
        daemon = Daemon(config, tmp_path).start()
        try:
            async with aiohttp.ClientSession() as session:
                half = BATCHES // 2
                assert await _send(session, daemon.url, bodies[:half]) == [200] * half

                # The other destination is refused and paused as down ...
                async def other_down() -> bool:
                    return bool((await _status(session, daemon, "other"))["down"])

                await wait_until(other_down, what="other paused as down")
                # ... and ingest still takes every batch while it keeps failing.
                rest = BATCHES - half
                assert await _send(session, daemon.url, bodies[half:]) == [200] * rest
                await wait_until(
                    lambda: healthy.state.count()["unique"] >= total,
                    timeout=60,
                    what="every event at the healthy sink",
                )
                other = await _status(session, daemon, "other")
                good = await _status(session, daemon, "healthy")
        finally:
            daemon.stop()
    got = healthy.state
    assert got.count()["unique"] == total
    assert got.duplicates == 0
    assert got.events == total
    # SDK ids arrive as sent; the 10 % of batches without ids got ids from Crossdock.
    assert sent_ids <= got.ids
    assert len(got.ids - sent_ids) == total - len(sent_ids) > 0
    assert good["delivered"] == total
    assert good["pending"] == good["retrying"] == good["dead_letters"] == 0
    # Nothing reached the failing one's sink as accepted; every event is still owed to it.
    assert failing.state.events == 0
    assert failing.state.refused >= 1
    assert other["delivered"] == 0
    assert other["down"] is True
    assert other["down_reason"] == "HTTP 500"
    assert other["retrying"] >= 1
    assert other["pending"] + other["retrying"] + other["dead_letters"] == total
