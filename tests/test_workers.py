"""``crossdock run --workers 2``: two processes share the port and the queue (sqlite and nats).

Load over many short connections (the kernel spreads them over both processes through
SO_REUSEPORT); every accepted event is delivered once the load stops; whichever process answers
``/metrics`` reports the exact totals of both; SIGTERM to the supervisor stops both processes and
exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from crossdock.testing.fakes import FakeVendor
from crossdock.testing.helpers import basic_auth, post_json, wait_until

WRITE_KEY = "wk-workers-0123456789"
AUTH = basic_auth(WRITE_KEY)


def config(sink_url: str, queue: str = "") -> str:
    return (
        queue
        + f"""
[[sources]]
id = "web"
type = "segment"
write_keys = ["{WRITE_KEY}"]

[[destinations]]
id = "sink"
plugin = "webhook"
[destinations.settings]
url = "{sink_url}"
batch = true
[destinations.delivery]
max_wait_ms = 20
batch_size = 200
"""
    )


def delivered_ids(fake: FakeVendor) -> list[str]:
    return [event["messageId"] for r in fake.requests for event in r.json()]


async def load(url: str, prefix: str, requests: int) -> set[str]:
    """``requests`` batches of 20 events, each on a fresh connection; the acknowledged ids.
    (Right after a process is killed the kernel may reset a new connection to the port.)"""
    acked: set[str] = set()

    async def one(n: int) -> None:
        ids = [f"{prefix}-{n}-{i}" for i in range(20)]
        batch = [{"type": "track", "userId": f"u{i}", "event": "W", "messageId": m}
                 for i, m in enumerate(ids)]  # fmt: skip
        for _attempt in range(3):  # as an SDK does: a connection reset is tried again
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=connector) as session:
                try:
                    status, _ = await post_json(
                        session, url + "/v1/batch", {"batch": batch}, auth=AUTH
                    )
                except aiohttp.ClientOSError:
                    continue
            if status == 200:
                acked.update(ids)
            return

    for start in range(0, requests, 20):
        await asyncio.gather(*(one(n) for n in range(start, min(start + 20, requests))))
    return acked


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> Samples:
    """``/metrics`` of the process a fresh connection lands on, parsed: (name, labels) → value."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(url + "/metrics") as r,
    ):
        text = await r.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def totals(url: str) -> tuple[float | None, float | None]:
    """(received from "web", delivered to "sink") as one scrape reports them."""
    samples = await scrape(url)
    return (
        value(samples, "crossdock_events_received_total", source="web"),
        value(samples, "crossdock_events_delivered_total", destination="sink"),
    )


async def run_two_workers(crossdock_daemon, queue: str) -> None:
    async with FakeVendor() as sink:
        daemon = crossdock_daemon(config(sink.url + "/in", queue), extra_args=("--workers", "2"))
        # /health answers once the first process listens; wait for the second one too.
        await asyncio.to_thread(daemon.wait_processes_serving, 2, 20)
        acked = await load(daemon.url, "w", 60)
        assert len(acked) == 60 * 20
        await wait_until(lambda: acked <= set(delivered_ids(sink)), timeout=30,
                         what="every acknowledged event delivered")  # fmt: skip
        starts = [r for r in daemon.log_records() if r.get("message") == "crossdock starting"]
        assert sorted(r["worker"] for r in starts) == [0, 1]
        # sqlite: process 0 stores and delivers for both and takes no connections on the port
        on_port = [0, 1] if "nats" in queue else [1]
        assert sorted(r["worker"] for r in starts if r["ingests"]) == on_port
        if sys.platform == "linux":
            assert listening_sockets(daemon.port) == len(on_port)
        # Each process received a share; whichever answers a scrape reports the sum. The vendor
        # has the events a moment before the counter moves: wait for it once, then every scrape
        # (landing on either process) must agree exactly.
        delivered = len(delivered_ids(sink))
        expected = (len(acked), delivered)

        async def settled() -> bool:
            return await totals(daemon.url) == expected

        await wait_until(settled, timeout=10, what="delivered_total catches up")
        seen = [await totals(daemon.url) for _ in range(10)]
        assert seen == [expected] * 10, seen
        samples = await scrape(daemon.url)
        # process_* of each process, told apart by its index; the build, once.
        for worker in ("0", "1"):
            assert (value(samples, "process_resident_memory_bytes", worker=worker) or 0) > 0
        assert [k for k in samples if k[0] == "crossdock_build_info"]
        assert daemon.stop() == 0
        stopped = [r for r in daemon.log_records() if r.get("message") == "crossdock stopped"]
        assert len(stopped) == 2


@pytest.mark.slow
async def test_two_workers_on_one_sqlite_file(crossdock_daemon) -> None:
    await run_two_workers(crossdock_daemon, "")


@pytest.mark.slow
async def test_two_workers_on_nats(crossdock_daemon, nats_url: str) -> None:
    stream = "w" + uuid.uuid4().hex[:10]
    queue = f'[queue]\nbackend = "nats"\nurl = "{nats_url}"\nstream = "{stream}"\n\n'
    await run_two_workers(crossdock_daemon, queue)


def test_sqlite_delivers_from_worker_0_only_nats_from_all() -> None:
    from crossdock.config.load import parse_config
    from crossdock.plugins.registry import load_registry
    from crossdock.web.app import delivers

    registry = load_registry()
    sqlite = parse_config("", registry)
    assert [delivers(sqlite, i) for i in range(3)] == [True, False, False]
    nats = parse_config('[queue]\nbackend = "nats"\n', registry)
    assert [delivers(nats, i) for i in range(3)] == [True, True, True]


def listening_sockets(port: int) -> int:
    """How many sockets listen on ``port`` (one per process under ``SO_REUSEPORT``)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    count += 1
    return count


def child_pids(pid: int) -> dict[int, int]:
    """worker index → pid of the supervisor's ``crossdock run`` children (from /proc)."""
    out = {}
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for child in map(int, children):
        argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if b"--worker-index" in argv:
            out[int(argv[argv.index(b"--worker-index") + 1])] = child
    return out


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie not yet reaped counts: its sockets are closed)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads children from /proc")
async def test_a_killed_worker_process_is_restarted_and_nothing_is_lost(crossdock_daemon) -> None:
    async with FakeVendor() as sink:
        daemon = crossdock_daemon(config(sink.url + "/in"), extra_args=("--workers", "2"))
        await asyncio.to_thread(daemon.wait_processes_serving, 2, 20)
        acked = await load(daemon.url, "a", 20)
        assert daemon.process is not None
        before = child_pids(daemon.process.pid)
        os.kill(before[0], signal.SIGKILL)  # the delivering process, and the queue's writer
        # Meanwhile process 1 stores what it accepts itself (its connections to process 0's
        # writer are broken, or the socket is gone).
        await wait_until(lambda: gone(before[0]), timeout=10, what="worker 0 gone")
        during = await load(daemon.url, "k", 10)
        assert len(during) >= 100  # most of the 200 (a request's three tries may all be reset)
        acked |= during
        await wait_until(
            lambda: (
                set(child_pids(daemon.process.pid)) == {0, 1}
                and child_pids(daemon.process.pid)[0] != before[0]
            ),
            timeout=20,
            what="worker 0 restarted",
        )
        acked |= await load(daemon.url, "b", 20)
        await wait_until(lambda: acked <= set(delivered_ids(sink)), timeout=30,
                         what="every acknowledged event delivered")  # fmt: skip
        restarts = [r for r in daemon.log_records()
                    if r.get("message") == "worker process exited; restarting it"]  # fmt: skip
        assert [r["worker"] for r in restarts] == [0]
        assert any("queue writer cannot be reached" in r.get("message", "")
                   for r in daemon.log_records())  # fmt: skip
        assert daemon.stop() == 0


def test_workers_that_cannot_start_stop_the_supervisor_with_exit_1(tmp_path: Path) -> None:
    from crossdock.testing.daemon import Daemon

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = f'[server]\nlisten = "127.0.0.1:{port}"\n\n'
        daemon = Daemon(server + config("http://127.0.0.1:9/in"), tmp_path,
                        extra_args=("--workers", "2"))  # fmt: skip
        with pytest.raises(RuntimeError, match="crossdock exited with 1"):
            daemon.start(timeout=30)
    assert "worker process failed at start-up; stopping" in daemon.log()
