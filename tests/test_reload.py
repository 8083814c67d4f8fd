"""Configuration reload (``POST /admin/reload`` and ``SIGHUP``) on the real daemon, under load.

While batches are being posted without pause, the daemon is reloaded twice: once through the
admin API (a destination added, one removed, one changed) and once by SIGHUP (a source added).
Every request is answered 200; every acknowledged event reaches the destinations configured
when it was accepted exactly once; the new destination gets what was accepted after its
reload; the removed one gets nothing accepted after its removal and nothing twice. An invalid
file is refused with every problem and the daemon keeps running the old configuration.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest

from crossdock.testing.fakes import FakeVendor
from crossdock.testing.helpers import basic_auth, post_json, wait_until

WRITE_KEY = "wk-reload-0123456789"
AUTH = basic_auth(WRITE_KEY)
SOURCE = f"""
[[sources]]
id = "web"
type = "segment"
write_keys = ["{WRITE_KEY}"]
"""
HOOK = """
[[sources]]
id = "hook"
type = "webhook"
path = "/hooks/app"
"""


def destination(id: str, url: str, max_wait_ms: int = 20) -> str:
    return f"""
[[destinations]]
id = "{id}"
plugin = "webhook"
[destinations.settings]
url = "{url}"
batch = true
[destinations.delivery]
max_wait_ms = {max_wait_ms}
batch_size = 50
"""


def ids_at(fake: FakeVendor, path: str | None = None) -> Counter[str]:
    """messageId → how many times the vendor received it (at ``path``, or anywhere)."""
    return Counter(
        event["messageId"]
        for r in fake.requests
        if path is None or r.path == path
        for event in r.json()
    )


class Load:
    """Posts batches of 5 events, 8 requests at a time, until stopped; records each answer with
    when its request started and when its 200 came."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[float, float, int, list[str]]] = []
        self.stopping = False

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(self._poster(session, lane) for lane in range(8)))

    async def _poster(self, session: aiohttp.ClientSession, lane: int) -> None:
        n = 0
        while not self.stopping:
            ids = [f"l{lane}-{n}-{i}" for i in range(5)]
            batch = [{"type": "track", "userId": "u", "event": "E", "messageId": m} for m in ids]
            started = time.monotonic()
            status, _ = await post_json(session, self.url + "/v1/batch", {"batch": batch},
                                        auth=AUTH)  # fmt: skip
            self.answers.append((started, time.monotonic(), status, ids))
            n += 1

    def acked(self, *, started_after: float = 0.0, answered_before: float = float("inf")) -> set:
        return {
            m
            for started, answered, status, ids in self.answers
            if status == 200 and started >= started_after and answered <= answered_before
            for m in ids
        }


async def admin_reload(daemon: Any) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(daemon.url + "/admin/reload", headers=daemon.admin_headers()) as r,
    ):
        return r.status, await r.json()


def records(daemon: Any, message: str) -> list[dict[str, Any]]:
    return [r for r in daemon.log_records() if r.get("message") == message]


@pytest.mark.slow
async def test_reload_under_load_delivers_exactly_once_and_refuses_an_invalid_file(
    crossdock_daemon,
) -> None:
    async with FakeVendor() as a, FakeVendor() as gone, FakeVendor() as new:
        v1 = SOURCE + destination("a", a.url + "/v1") + destination("gone", gone.url + "/in")
        daemon = crossdock_daemon(v1)
        head = daemon.config_path.read_text().split("[[sources]]")[0]
        load = Load(daemon.url)
        posting = asyncio.create_task(load.run())
        await wait_until(lambda: len(load.answers) >= 100, timeout=30, what="load running")

        # Reload 1 (admin API): "new" added, "gone" removed, "a" changed (new URL, new wait).
        v2 = SOURCE + destination("a", a.url + "/v2", 30) + destination("new", new.url + "/in")
        daemon.config_path.write_text(head + v2)
        before_first = time.monotonic()
        status, body = await admin_reload(daemon)
        after_first = time.monotonic()
        assert status == 200, body
        assert body["destinations"] == {"added": ["new"], "removed": ["gone"], "changed": ["a"]}
        await wait_until(lambda: len(load.answers) >= 250, timeout=30, what="load after reload 1")

        # Reload 2 (SIGHUP): a webhook source added; the destinations stay as they are.
        daemon.config_path.write_text(head + v2 + HOOK)
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGHUP)
        await wait_until(lambda: records(daemon, "configuration reloaded")[1:], timeout=20,
                         what="the SIGHUP reload")  # fmt: skip
        await wait_until(lambda: len(load.answers) >= 400, timeout=30, what="load after reload 2")
        load.stopping = True
        await posting

        async with aiohttp.ClientSession() as session:
            hook = [{"type": "track", "userId": "u", "event": "H", "messageId": "hook-1"}]
            status, _ = await post_json(session, daemon.url + "/hooks/app", hook)
        assert status == 200

        # An invalid file: every problem listed, nothing changes.
        broken = v2.replace('plugin = "webhook"', 'plugin = "no-such-plugin"')
        daemon.config_path.write_text(head + broken)
        status, body = await admin_reload(daemon)
        assert status == 422, body
        assert body["code"] == "invalid_config"
        assert [p for p in body["problems"] if "no-such-plugin" in p][1:], body
        # A queue change needs a restart: refused, saying so.
        daemon.config_path.write_text(head.replace("queue.db", "other.db") + v2)
        status, body = await admin_reload(daemon)
        assert status == 422, body
        assert any(p.startswith("queue: changed; this needs a restart") for p in body["problems"])
        daemon.process.send_signal(signal.SIGHUP)
        await wait_until(lambda: len(records(daemon, "configuration reload refused; the running "
                                              "configuration stays")) == 3, timeout=20)  # fmt: skip

        statuses = Counter(status for _, _, status, _ in load.answers)
        assert set(statuses) == {200}, statuses
        acked = load.acked() | {"hook-1"}

        await wait_until(lambda: set(ids_at(a)) >= acked, timeout=60,
                         what="a: every acknowledged event")  # fmt: skip
        assert max(ids_at(a).values()) == 1, "a: an event delivered twice"
        assert ids_at(a, "/v2")["hook-1"] == 1
        # "new" gets what was accepted after its reload (and maybe what was accepted during).
        after = load.acked(started_after=after_first) | {"hook-1"}
        await wait_until(lambda: set(ids_at(new)) >= after, timeout=60,
                         what="new: every event accepted after the reload")  # fmt: skip
        assert max(ids_at(new).values()) == 1
        assert not set(ids_at(new)) & load.acked(answered_before=before_first)
        # "gone" got nothing twice and nothing accepted after its removal.
        assert max(ids_at(gone).values(), default=1) == 1
        assert not set(ids_at(gone)) & load.acked(started_after=after_first)
        assert set(ids_at(gone)) <= load.acked(answered_before=after_first)

        assert daemon.process.poll() is None
        assert daemon.stop() == 0


async def test_a_reload_declares_the_series_of_what_it_adds(crossdock_daemon) -> None:
    """A source or destination a reload adds has its series at zero at once (a rate() alert
    sees a destination that never delivered), as those configured at start do."""
    async with FakeVendor() as a, FakeVendor() as new:
        daemon = crossdock_daemon(SOURCE + destination("a", a.url + "/in"))
        head = daemon.config_path.read_text().split("[[sources]]")[0]
        added = SOURCE + destination("a", a.url + "/in") + destination("new", new.url + "/in")
        daemon.config_path.write_text(head + added + HOOK)
        status, body = await admin_reload(daemon)
        assert status == 200, body
        async with aiohttp.ClientSession() as session, session.get(daemon.url + "/metrics") as r:
            text = await r.text()
        assert 'crossdock_events_delivered_total{destination="new"} 0.0' in text
        assert 'crossdock_events_received_total{source="hook"} 0.0' in text


def broken_plugin(where: Any) -> dict[str, str]:
    """A distribution whose ``crossdock`` entry point fails to import, on ``PYTHONPATH``."""
    where.mkdir(parents=True, exist_ok=True)
    info = where / "crossdock_reload_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: crossdock-reload-broken\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text("[crossdock]\nreloadbroken = crossdock_reload_broken\n")
    (where / "crossdock_reload_broken.py").write_text(
        'raise ImportError("crossdock_reload_broken needs a module that is not installed")\n'
    )
    return {"PYTHONPATH": str(where)}


async def test_a_plugin_that_failed_at_start_does_not_refuse_every_reload(
    crossdock_daemon, tmp_path
) -> None:
    """``run`` starts with a plugin that cannot be imported (a warning), so a reload must judge
    the new file on its own merits: applied when valid, with the plugin's problem as a note;
    refused when the file itself is wrong, or when it needs what the broken plugin provides."""
    async with FakeVendor() as a, FakeVendor() as new:
        daemon = crossdock_daemon(
            SOURCE + destination("a", a.url + "/in"), env=broken_plugin(tmp_path / "plugins")
        )
        assert "reloadbroken" in daemon.log()  # run warned about it
        head = daemon.config_path.read_text().split("[[sources]]")[0]
        daemon.config_path.write_text(
            head + SOURCE + destination("a", a.url + "/in") + destination("new", new.url + "/in")
        )
        status, body = await admin_reload(daemon)
        assert status == 200, body
        assert body["destinations"]["added"] == ["new"]
        assert any("reloadbroken" in note for note in body["notes"]), body

        # A file with a problem of its own is still refused, listing it.
        broken = destination("b", new.url + "/in").replace('plugin = "webhook"',
                                                           'plugin = "reloadbroken"')  # fmt: skip
        daemon.config_path.write_text(head + SOURCE + destination("a", a.url + "/in") + broken)
        status, body = await admin_reload(daemon)
        assert status == 422, body
        assert any("reloadbroken" in p and "destinations" in p for p in body["problems"]), body
        async with aiohttp.ClientSession() as session:
            event = {"type": "track", "userId": "u", "event": "E", "messageId": "after-refusal"}
            status, _ = await post_json(session, daemon.url + "/v1/track", event, auth=AUTH)
        assert status == 200
        await wait_until(lambda: "after-refusal" in ids_at(new), timeout=20,
                         what="the applied configuration still runs")  # fmt: skip
