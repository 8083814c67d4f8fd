"""Two real Crossdock daemons on one JetStream stream (the "N replicas behind a load balancer"
deployment), against a real ``nats-server -js``.

- load through both, kill -9 one mid-load: every event answered 200 is delivered (the survivor
  gets the dead one's unsettled events after ``ack_wait``), and the accounting closes:
  accepted = delivered + dead-lettered + filtered + still queued, with nothing left queued.
- the same events sent to both instances are delivered once.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid

import aiohttp
import orjson
import pytest

from crossdock.testing.fakes import FakeVendor
from crossdock.testing.helpers import basic_auth, post_json, wait_until

WRITE_KEY = "wk-nats-0123456789"
AUTH = basic_auth(WRITE_KEY)


def config(nats_url: str, stream: str, sink_url: str) -> str:
    return f"""
[queue]
backend = "nats"
url = "{nats_url}"
stream = "{stream}"
ack_wait = "2s"

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


def delivered_ids(fake: FakeVendor) -> list[str]:
    return [event["messageId"] for r in fake.requests for event in r.json()]


def batch_of(ids: list[str]) -> dict:
    return {"batch": [{"type": "track", "userId": f"u{i % 7}", "event": "Load", "messageId": m}
                      for i, m in enumerate(ids)]}  # fmt: skip


async def admin_status(session: aiohttp.ClientSession, daemon, dest: str) -> dict:
    async with session.get(
        f"{daemon.url}/admin/destinations/{dest}", headers=daemon.admin_headers()
    ) as r:
        return await r.json()


@pytest.mark.slow
async def test_kill_9_one_of_two_instances_loses_no_acknowledged_event(
    crossdock_daemon, nats_url: str
) -> None:
    stream = "k" + uuid.uuid4().hex[:10]
    async with FakeVendor() as sink:
        body = config(nats_url, stream, sink.url + "/in")
        victim = crossdock_daemon(body, name="victim")
        survivor = crossdock_daemon(body, name="survivor")
        acked: set[str] = set()
        counter = itertools.count()
        killed = asyncio.Event()
        stop = asyncio.Event()

        async def client(session: aiohttp.ClientSession, k: int) -> None:
            while not stop.is_set():
                n = next(counter)
                # Clients alternate between the two instances (a load balancer).
                daemon = (victim, survivor)[(n + k) % 2]
                if daemon is victim and killed.is_set():
                    daemon = survivor
                ids = [f"crash-{n}-{i}" for i in range(50)]
                try:
                    status, _ = await post_json(
                        session, daemon.url + "/v1/batch", batch_of(ids), auth=AUTH
                    )
                except (TimeoutError, aiohttp.ClientError):
                    continue
                if status == 200:
                    acked.update(ids)

        async def killer() -> None:
            await wait_until(
                lambda: len(acked) >= 3000 and len(delivered_ids(sink)) >= 500, timeout=60
            )
            victim.kill()
            killed.set()
            # The survivor keeps taking load for a moment after the crash.
            target = len(acked) + 1000
            await wait_until(lambda: len(acked) >= target, timeout=30)
            stop.set()

        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(killer(), *(client(session, k) for k in range(8)))
            await wait_until(lambda: acked <= set(delivered_ids(sink)), timeout=60,
                             what="every acknowledged event delivered")  # fmt: skip
            status = await wait_until(
                lambda: _settled(session, survivor), timeout=20, what="nothing left queued"
            )
        delivered = delivered_ids(sink)
        duplicates = len(delivered) - len(set(delivered))
        print(f"acked={len(acked)} delivered={len(delivered)} duplicates={duplicates}")
        assert acked <= set(delivered)
        assert all(m.startswith("crash-") for m in delivered)
        # accepted = delivered + dead-lettered + filtered + still queued; nothing is queued,
        # dead-lettered or filtered here, so every accepted event was delivered.
        assert (status["pending"], status["retrying"], status["dead_letters"]) == (0, 0, 0)


async def _settled(session: aiohttp.ClientSession, daemon) -> dict | None:
    status = await admin_status(session, daemon, "sink")
    if (status["pending"], status["retrying"], status["dead_letters"]) == (0, 0, 0):
        return status
    return None


@pytest.mark.slow
async def test_duplicates_sent_to_both_instances_are_delivered_once(
    crossdock_daemon, nats_url: str
) -> None:
    stream = "d" + uuid.uuid4().hex[:10]
    async with FakeVendor() as sink:
        body = config(nats_url, stream, sink.url + "/in")
        one = crossdock_daemon(body, name="one")
        two = crossdock_daemon(body, name="two")
        async with aiohttp.ClientSession() as session:
            sends = []
            for n in range(20):
                ids = [f"dup-{n}-{i}" for i in range(25)]
                # The same request to both instances at once, and once more to the first.
                for daemon in (one, two, one):
                    sends.append(
                        post_json(session, daemon.url + "/v1/batch", batch_of(ids), auth=AUTH)
                    )
            results = await asyncio.gather(*sends)
            assert {status for status, _ in results} == {200}
            expected = {f"dup-{n}-{i}" for n in range(20) for i in range(25)}
            await wait_until(lambda: set(delivered_ids(sink)) == expected, timeout=30)
            await wait_until(lambda: _settled(session, one), timeout=20)
        delivered = delivered_ids(sink)
        assert sorted(delivered) == sorted(expected)  # each exactly once


async def test_dead_letters_through_admin_api_and_cli_on_nats(
    crossdock_daemon, nats_url: str, capsys
) -> None:
    from crossdock.cli.main import main
    from crossdock.testing.fakes import Answer

    stream = "q" + uuid.uuid4().hex[:10]
    async with FakeVendor() as sink:
        sink.script([Answer(400, body={"error": "bad event"})])
        daemon = crossdock_daemon(config(nats_url, stream, sink.url + "/in"), name="dlq")
        cli = ["-c", str(daemon.config_path)]
        async with aiohttp.ClientSession() as session:
            status, _ = await post_json(
                session, daemon.url + "/v1/batch", batch_of(["bad-1"]), auth=AUTH
            )
            assert status == 200

            async def dlq() -> list:
                async with session.get(
                    daemon.url + "/admin/dlq", headers=daemon.admin_headers()
                ) as r:
                    return (await r.json())["entries"]

            (entry,) = await wait_until(dlq, timeout=20, what="the rejected event dead-lettered")
            assert (entry["destination"], entry["status"]) == ("sink", 400)
            capsys.readouterr()
            assert await asyncio.to_thread(main, ["dlq", "list", "--json", *cli]) == 0
            (row,) = orjson.loads(capsys.readouterr().out)
            assert (row["id"], row["event"]["messageId"]) == (entry["id"], "bad-1")
            assert await asyncio.to_thread(main, ["dlq", "replay", "sink", *cli]) == 0
            assert capsys.readouterr().out.strip() == "replayed 1 event(s)"
            await wait_until(lambda: "bad-1" in delivered_ids_ok(sink), timeout=20,
                             what="the replayed event delivered")  # fmt: skip
            assert await dlq() == []
            status = await wait_until(lambda: _settled(session, daemon), timeout=20)
            assert status["dead_letters"] == 0


def delivered_ids_ok(fake: FakeVendor) -> list[str]:
    """messageIds of the requests the sink answered 200 (the scripted 400 excluded)."""
    return [event["messageId"] for r in fake.requests[1:] for event in r.json()]


def test_daemon_refuses_to_start_without_its_nats_server(tmp_path) -> None:
    from crossdock.testing.daemon import Daemon, free_port

    pytest.importorskip("nats")
    url = f"nats://crossdock:pw-s3cret@127.0.0.1:{free_port()}"
    daemon = Daemon(config(url, "x", "http://127.0.0.1:9/in"), tmp_path)
    with pytest.raises(RuntimeError, match="crossdock exited with 1"):
        daemon.start(timeout=30)
    assert "cannot connect" in daemon.log()
    assert "pw-s3cret" not in daemon.log()
