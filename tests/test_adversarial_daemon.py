"""Issue 15's adversarial probes against the real daemon: unwritable files, a full disk, bombs.

(Forged batches, secret echoes and the concurrency flood have their own modules:
test_source_segment_webhook_daemon.py, test_secrets_echo.py, test_ingest_memory.py.)

Each test runs ``crossdock run`` as a subprocess delivering to a local fake sink, breaks
something from outside, and checks what the operator guide promises: ingest answers 503 (never
500) while it cannot store, ``/ready`` says so, every acknowledged event is delivered exactly
once after recovery, nothing refused is stored, and the process stays up. The file-system probes
need root (``chattr``, ``mount``) and skip with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from crossdock.ingest.sources.segment import BATCH_PATHS, SINGLE_PATHS
from crossdock.testing.daemon import Daemon
from crossdock.testing.fakes import FakeVendor
from crossdock.testing.helpers import basic_auth, wait_until

pytestmark = pytest.mark.slow

WRITE_KEY = "wk-adversarial-0123456789"
AUTH = basic_auth(WRITE_KEY)
RSS_BOUND_MIB = 300

CONFIG = f"""
[[sources]]
id = "web"
type = "segment"
write_keys = ["{WRITE_KEY}"]

[[sources]]
id = "hook"
type = "webhook"

[[sources]]
id = "segwh"
type = "segment-webhook"

[[destinations]]
id = "sink"
plugin = "webhook"
[destinations.settings]
url = "{{sink}}/in"
batch = true
[destinations.delivery]
max_wait_ms = 20
"""


# -- the sink and the load ---------------------------------------------------------------------


@pytest.fixture
async def sink() -> AsyncIterator[FakeVendor]:
    async with FakeVendor() as fake:
        yield fake


def delivered_ids(sink: FakeVendor) -> Counter[str]:
    """How many times the sink received each messageId (it answers every request 200)."""
    counts: Counter[str] = Counter()
    for request in sink.requests:
        counts.update(event["messageId"] for event in request.json())
    return counts


def start_daemon(workdir: Path, sink: FakeVendor, queue_path: Path | None = None) -> Daemon:
    config = CONFIG.replace("{sink}", sink.url)
    if queue_path is not None:
        config = f'[queue]\npath = "{queue_path}"\n\n' + config
    return Daemon(config, workdir).start()


class Load:
    """Posts Segment batches of fresh events from a few concurrent clients until stopped.

    ``acked`` holds the messageIds of every request answered 200, ``refused`` those of every
    other answer, ``answers`` counts ``(status, code)``.
    """

    def __init__(self, session: aiohttp.ClientSession, url: str, batch: int = 20) -> None:
        self.session = session
        self.url = url + "/v1/batch"
        self.batch = batch
        self.acked: list[str] = []
        self.refused: list[str] = []
        self.answers: Counter[tuple[int, str]] = Counter()
        self.stopped = asyncio.Event()
        self._numbers = itertools.count()

    async def post_one(self, pad: int = 0) -> int:
        """Post one batch; returns the status."""
        n = next(self._numbers)
        ids = [f"m{n}-{i}" for i in range(self.batch)]
        props = {"p": "x" * pad}
        batch = [
            {"type": "track", "event": "E", "userId": "u", "messageId": m, "properties": props}
            for m in ids
        ]
        headers = {"Authorization": AUTH, "Content-Type": "application/json"}
        data = orjson.dumps({"batch": batch})
        async with self.session.post(self.url, data=data, headers=headers) as response:
            answer = await response.json(content_type=None)
            status = response.status
        self.answers[(status, answer.get("code", ""))] += 1
        (self.acked if status == 200 else self.refused).extend(ids)
        return status

    async def run(self, clients: int = 4) -> None:
        """Post until :attr:`stopped` is set."""

        async def client() -> None:
            while not self.stopped.is_set():
                await self.post_one()
                await asyncio.sleep(0.005)

        await asyncio.gather(*(client() for _ in range(clients)))

    def statuses(self) -> set[int]:
        return {status for status, _ in self.answers}


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as response:
        return response.status, await response.json(content_type=None)


async def pending(session: aiohttp.ClientSession, daemon: Daemon) -> int:
    url = daemon.url + "/admin/destinations/sink"
    async with session.get(url, headers=daemon.admin_headers()) as response:
        row = await response.json()
    return int(row["pending"]) + int(row["retrying"])


async def recovered_exactly_once(
    session: aiohttp.ClientSession, daemon: Daemon, sink: FakeVendor, load: Load
) -> None:
    """After recovery: ``/ready`` 200, every acknowledged event delivered exactly once, none of
    the refused ones, nothing left pending, the process up."""
    assert load.acked, "no event was acknowledged"
    await wait_until(
        lambda: set(load.acked) <= set(delivered_ids(sink)), timeout=30, what="acked delivered"
    )
    await wait_until(lambda: _ready(session, daemon), timeout=30, what="/ready 200")
    await wait_until(lambda: _drained(session, daemon), timeout=30, what="nothing pending")
    counts = delivered_ids(sink)
    assert set(counts) == set(load.acked), "delivered events that were refused (half-stored)"
    assert [m for m, n in counts.items() if n > 1] == [], "delivered more than once"
    assert daemon.process is not None
    assert daemon.process.poll() is None
    assert (await get(session, daemon.url + "/health"))[0] == 200


async def _ready(session: aiohttp.ClientSession, daemon: Daemon) -> bool:
    return (await get(session, daemon.url + "/ready"))[0] == 200


async def _drained(session: aiohttp.ClientSession, daemon: Daemon) -> bool:
    return await pending(session, daemon) == 0


# -- unwritable files ---------------------------------------------------------------------------


def _chattr(flag: str, paths: list[Path]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True, check=False)


def chattr_unavailable(directory: Path) -> str | None:
    """Why ``chattr +i`` cannot make files in ``directory`` unwritable here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root: root ignores file modes, so only chattr +i makes the queue unwritable"
    if shutil.which("chattr") is None:
        return "chattr (e2fsprogs) is not installed"
    probe = directory / "chattr-probe"
    probe.write_bytes(b"x")
    try:
        done = _chattr("+i", [probe])
        if done.returncode != 0:
            return f"chattr +i unsupported on {directory}: {done.stderr.decode().strip()}"
        try:
            with probe.open("ab") as f:
                f.write(b"y")
        except PermissionError:
            return None
        return f"chattr +i does not stop root writing on {directory}"
    finally:
        _chattr("-i", [probe])
        probe.unlink()


@contextlib.contextmanager
def immutable(paths: list[Path]) -> Iterator[None]:
    """Make ``paths`` immutable for the block; the flag is always removed."""
    try:
        done = _chattr("+i", paths)
        assert done.returncode == 0, done.stderr
        yield
    finally:
        _chattr("-i", paths)


async def test_unwritable_queue_files_under_load(tmp_path: Path, sink: FakeVendor) -> None:
    reason = chattr_unavailable(tmp_path)
    if reason:
        pytest.skip(reason)
    daemon = start_daemon(tmp_path, sink)
    try:
        async with aiohttp.ClientSession() as session:
            load = Load(session, daemon.url)
            running = asyncio.create_task(load.run())
            await wait_until(lambda: len(delivered_ids(sink)) >= 100, what="delivering")
            # The database and its WAL. Not the -shm file: SQLite maps it into memory, and a
            # write to a mapped immutable page is a SIGBUS that kills any SQLite process.
            files = [tmp_path / "queue.db", tmp_path / "queue.db-wal"]
            missing = [f.name for f in files if not f.exists()]
            assert missing == [], f"no {missing}: is the queue still in WAL mode?"
            ready_while_blocked: list[Any] = []
            with immutable(files):
                before = load.answers[(503, "queue_unavailable")]
                await wait_until(
                    lambda: load.answers[(503, "queue_unavailable")] > before,
                    what="ingest refused with 503",
                )
                for _ in range(15):  # about 1.5 s unwritable, under load
                    ready_while_blocked.append(await get(session, daemon.url + "/ready"))
                    await asyncio.sleep(0.1)
            assert {status for status, _ in ready_while_blocked} == {503}, ready_while_blocked
            assert {body["status"] for _, body in ready_while_blocked} <= {
                "queue_unavailable",
                "queue_writes_failing",
            }
            acked_at_recovery = len(load.acked)
            await wait_until(lambda: len(load.acked) > acked_at_recovery, what="ingest again")
            load.stopped.set()
            await running
            assert load.statuses() <= {200, 503}, load.answers
            await recovered_exactly_once(session, daemon, sink, load)
    finally:
        daemon.kill()


# -- a full disk --------------------------------------------------------------------------------


def mount_unavailable() -> str | None:
    """Why a small tmpfs cannot be mounted here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root to mount a small tmpfs as the full disk"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "mount/umount are not installed"
    return None


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` for the block (skips when mounting fails)."""
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def fill(directory: Path, leave: int) -> Path:
    """Write a filler file taking all free space of ``directory`` but ``leave`` bytes."""
    stats = os.statvfs(directory)
    free = stats.f_bavail * stats.f_frsize
    filler = directory / "filler"
    with filler.open("wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


async def test_full_disk_refuses_with_503_and_stores_nothing_half(
    tmp_path: Path, sink: FakeVendor
) -> None:
    reason = mount_unavailable()
    if reason:
        pytest.skip(reason)
    with small_tmpfs(tmp_path / "disk") as disk:
        daemon = start_daemon(tmp_path, sink, disk / "queue.db")
        try:
            async with aiohttp.ClientSession() as session:
                load = Load(session, daemon.url, batch=50)
                assert await load.post_one() == 200
                await wait_until(lambda: delivered_ids(sink), what="delivering")
                filler = fill(disk, leave=256 * 1024)
                # Batches of about 100 KB until the disk is full and ingest refuses.
                for _ in range(200):
                    if await load.post_one(pad=2000) == 503:
                        break
                assert load.answers[(503, "queue_unavailable")] >= 1, load.answers
                # /ready may still be 200: its probe is a tiny write, which fits in the WAL
                # file's space that SQLite reuses; it never fails otherwise than with a 503.
                status, body = await get(session, daemon.url + "/ready")
                assert (status, body["status"]) in {
                    (200, "ready"),
                    (503, "queue_unavailable"),
                    (503, "queue_writes_failing"),
                }, body
                assert daemon.process is not None
                assert daemon.process.poll() is None
                filler.unlink()
                assert await wait_until(lambda: _post_ok(load), what="ingest after space is freed")
                assert load.statuses() <= {200, 503}, load.answers
                await recovered_exactly_once(session, daemon, sink, load)
        finally:
            daemon.kill()


async def _post_ok(load: Load) -> bool:
    return await load.post_one() == 200


# -- bombs --------------------------------------------------------------------------------------

GIB = 1 << 30


def gzip_bomb(size: int = GIB) -> bytes:
    """A gzip stream of about 1 MB that inflates to ``size`` zero bytes (one member: deflate's
    ratio is at most about 1:1000). Built from one compressed MiB repeated: after a full flush
    the compressor emits the same bytes for every further MiB of zeros."""
    mib = b"\0" * (1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = deflate.compress(mib) + deflate.flush(zlib.Z_FULL_FLUSH)
    again = deflate.compress(mib) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.flush()
    crc = 0
    for _ in range(size >> 20):
        crc = zlib.crc32(mib, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return header + first + again * ((size >> 20) - 1) + end + trailer


def deep_json(levels: int = 10_000) -> bytes:
    """One track event whose properties nest ``levels`` objects deep."""
    nested = '{"a":' * levels + "1" + "}" * levels
    return b'{"type":"track","event":"E","userId":"u","properties":' + nested.encode() + b"}"


def bomb_routes() -> list[tuple[str, dict[str, str], int]]:
    """Every ingest route of the built-in sources, with the headers that authenticate and the
    size the gzip bomb posted there inflates to: 1 GiB on every route (the daemon inflates only
    up to each source's cap, and never the rest of a refused body)."""
    segment = {"Authorization": AUTH}
    names = ["batch", *SINGLE_PATHS, *sorted(BATCH_PATHS - {"batch"})]
    routes = [(f"/v1/{name}", segment, GIB) for name in names]
    return [*routes, ("/hooks/hook", {}, GIB), ("/hooks/segment", {}, GIB)]


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


async def body_of(size: int) -> AsyncIterator[bytes]:
    chunk = b" " * (1 << 20)
    for _ in range(size >> 20):
        yield chunk


async def post_bomb(session: aiohttp.ClientSession, url: str, kind: str, data: Any,
                    headers: dict[str, str]) -> int:  # fmt: skip
    """Post one bomb and return the status; a connection dropped without an answer fails."""
    try:
        async with asyncio.timeout(20), session.post(url, data=data, headers=headers) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as exc:
        pytest.fail(f"{kind} to {url}: connection dropped without an answer: {exc!r}")


async def test_bombs_are_refused_with_a_4xx_and_memory_stays_bounded(
    tmp_path: Path, sink: FakeVendor
) -> None:
    bombs = {GIB: gzip_bomb(GIB)}
    assert len(bombs[GIB]) < 2 * (1 << 20)
    deep = deep_json()
    daemon = start_daemon(tmp_path, sink)
    assert daemon.process is not None
    try:
        async with aiohttp.ClientSession() as session:
            answers: dict[tuple[str, str], int] = {}
            for path, auth, size in bomb_routes():
                bomb = bombs[size]
                json_headers = {**auth, "Content-Type": "application/json"}
                gzip_headers = {**json_headers, "Content-Encoding": "gzip"}
                big_headers = {**json_headers, "Content-Length": str(100 << 20)}
                url = daemon.url + path
                answers[(path, "gzip")] = await post_bomb(session, url, "gzip", bomb, gzip_headers)
                answers[(path, "deep")] = await post_bomb(session, url, "deep", deep, json_headers)
                answers[(path, "100MB")] = await post_bomb(
                    session, url, "100MB", body_of(100 << 20), big_headers
                )
            refused = {key: status for key, status in answers.items() if not 400 <= status < 500}
            assert refused == {}, refused
            assert (await get(session, daemon.url + "/health"))[0] == 200
            assert (await get(session, daemon.url + "/ready"))[0] == 200
        assert daemon.process.poll() is None
        assert sink.requests == [], "a bomb was stored and delivered"
        peak = _peak_rss_mib(daemon.process.pid)
        assert peak <= RSS_BOUND_MIB, f"peak RSS {peak:.0f} MiB"
    finally:
        daemon.kill()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def test_a_refused_gzip_bomb_costs_no_cpu_after_its_answer(
    tmp_path: Path, sink: FakeVendor
) -> None:
    daemon = start_daemon(tmp_path, sink)
    assert daemon.process is not None
    pid = daemon.process.pid
    try:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        async with aiohttp.ClientSession() as session:
            status = await post_bomb(
                session, daemon.url + "/hooks/hook", "gzip", gzip_bomb(), headers
            )
            assert status == 400
            before = _cpu_seconds(pid)
            await asyncio.sleep(2)
            spent = _cpu_seconds(pid) - before
        assert spent < 0.5, f"{spent:.1f} s of CPU after the answer"
    finally:
        daemon.kill()
