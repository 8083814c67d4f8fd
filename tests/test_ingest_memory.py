"""Daemon memory under the abusive loads of issue 15 (defect 4), at the default limits.

The bound documented in docs/operator-guide.md: peak RSS (``VmHWM``) ≤ 300 MiB.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import orjson
import pytest

from crossdock.testing.daemon import Daemon
from crossdock.testing.helpers import basic_auth

pytestmark = pytest.mark.slow

WRITE_KEY = "wk-memory-0123456789"
RSS_BOUND_MIB = 300

CONFIG = f"""
[[sources]]
id = "web"
type = "segment"
write_keys = ["{WRITE_KEY}"]

[[sources]]
id = "hook"
type = "webhook"

[[destinations]]
id = "out"
plugin = "file"
[destinations.settings]
path = "{{workdir}}/out.ndjson"
"""


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _tiny_objects_body() -> bytes:
    # 120 K tiny objects, about 3.8 MB: under the webhook's 4 MB byte limit.
    return orjson.dumps([{"type": "track", "uid": f"u{i:05d}"} for i in range(120_000)])


def _max_segment_batch(n: int) -> bytes:
    # The Segment source's largest batch: 2,500 events (its cap) in just under 500 KB.
    events = [
        {"type": "track", "event": "Clicked", "anonymousId": f"a-{n}-{i}", "properties": {}}
        for i in range(2500)
    ]
    spare = 500 * 1024 - len(orjson.dumps({"batch": events})) - 100
    pad = "y" * (spare // 2500 - len('"x":""'))
    for event in events:
        event["properties"] = {"x": pad}
    body = orjson.dumps({"batch": events})
    assert 490 * 1024 < len(body) <= 500 * 1024
    return body


@pytest.fixture
def daemon(tmp_path: Path):
    d = Daemon(CONFIG, tmp_path).start()
    yield d
    d.kill()


async def test_abusive_loads_stay_under_the_documented_rss_bound(daemon: Daemon) -> None:
    assert daemon.process is not None
    pid = daemon.process.pid
    tiny = _tiny_objects_body()
    assert 3_500_000 < len(tiny) < 4 * 1024 * 1024
    batches = [_max_segment_batch(n) for n in range(64)]
    auth = {"Authorization": basic_auth(WRITE_KEY), "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(path: str, data: bytes, headers: dict[str, str]) -> int:
            async with session.post(daemon.url + path, data=data, headers=headers) as response:
                await response.read()
                return response.status

        json_only = {"Content-Type": "application/json"}
        statuses = await asyncio.gather(*(post("/hooks/hook", tiny, json_only) for _ in range(4)))
        assert set(statuses) <= {413, 503}, statuses
        statuses = await asyncio.gather(*(post("/v1/batch", b, auth) for b in batches))
        assert set(statuses) <= {200, 503}, statuses
        assert 200 in statuses
        # Both at once, twice over.
        for _ in range(2):
            mixed = [post("/hooks/hook", tiny, json_only) for _ in range(4)]
            mixed += [post("/v1/batch", b, auth) for b in batches]
            statuses = await asyncio.gather(*mixed)
            assert set(statuses) <= {200, 413, 503}, statuses
        async with session.get(daemon.url + "/health") as response:
            assert response.status == 200
    peak = _peak_rss_mib(pid)
    print(f"peak RSS {peak:.0f} MiB")
    assert peak <= RSS_BOUND_MIB, f"peak RSS {peak:.0f} MiB"
