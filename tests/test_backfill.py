"""``crossdock backfill``: the real command in a subprocess against a local fake vendor."""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import sys
from pathlib import Path

import attrs
import orjson
import pytest
from aiohttp import web

from crossdock.cli.backfill import Progress
from crossdock.deliver.backfill import BackfillState, read_lines, with_backfill_settings
from crossdock.errors import ConfigError
from crossdock.testing.fakes import FakeVendor, RecordedRequest
from crossdock.types import Destination, DestinationType

SECRET = "bf-secret-key-9931"

CONFIG = """
[queue]
path = "q.db"

[[sources]]
id = "web"
type = "segment"
write_keys = ["wk"]

[[destinations]]
id = "hook"
plugin = "webhook"
where = "event != 'Ignored'"
[destinations.settings]
url = "{url}/events"
batch = {batch}
[destinations.settings.headers]
X-Api-Key = "${{BF_KEY}}"
[destinations.delivery]
batch_size = 10
max_attempts = 3
"""


class StrictHook(FakeVendor):
    """Refuses a wrong key with 401 and an event whose userId is ``bad`` with 400."""

    def __init__(self, key: str = SECRET) -> None:
        super().__init__()
        self.key = key

    async def check(self, request: RecordedRequest) -> web.Response | None:
        if request.headers.get("X-Api-Key") != self.key:
            return web.json_response({"error": "bad key"}, status=401)
        body = request.json()
        events = body if isinstance(body, list) else [body]
        if any(e.get("userId") == "bad" for e in events):
            return web.json_response({"error": "userId bad is not allowed"}, status=400)
        return None

    def received(self) -> list[dict]:
        out: list[dict] = []
        for r in self.requests:
            if r.headers.get("X-Api-Key") != self.key:
                continue
            body = r.json()
            for e in body if isinstance(body, list) else [body]:
                if e.get("userId") != "bad":
                    out.append(e)
        return out


def _write_events(path: Path, lines: list[bytes], *, gz: bool = False) -> Path:
    data = b"".join(line + b"\n" for line in lines)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _track(i: int, user: str = "u1", **extra) -> bytes:
    return orjson.dumps(
        {"type": "track", "event": "Viewed", "userId": user, "properties": {"i": i}, **extra}
    )


async def _backfill(tmp_path: Path, url: str, *args: str, batch: bool = True, key: str = SECRET):
    config = tmp_path / "crossdock.toml"
    config.write_text(CONFIG.format(url=url, batch="true" if batch else "false"))
    env = {**os.environ, "BF_KEY": key}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crossdock", "backfill", "-c", str(config), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=tmp_path,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_backfill_delivers_every_line_in_batches_and_is_done_once(tmp_path):
    events = _write_events(tmp_path / "events.ndjson", [_track(i) for i in range(25)])
    async with StrictHook() as fake:
        code, out, err = await _backfill(tmp_path, fake.url, str(events), "--to", "hook")
        assert code == 0, err
        received = fake.received()
        assert sorted(e["properties"]["i"] for e in received) == list(range(25))
        assert all(len(r.json()) <= 10 for r in fake.requests)  # batch_size respected
        assert len(fake.requests) == 3
        assert "delivered 25" in out
        assert "failed 0" in out
        # backfilled events carry a stable messageId and the backfill source
        assert all(e["messageId"].startswith("backfill-") for e in received)
        assert {e["context"]["crossdock"]["source"] for e in received} == {"backfill"}
        state = BackfillState.load(tmp_path / "events.ndjson.hook.backfill.json")
        assert state is not None
        assert state.done
        assert state.line == 25
        # a second run of the same command sends nothing
        code, out, _ = await _backfill(tmp_path, fake.url, str(events), "--to", "hook")
        assert code == 0
        assert "already backfilled" in out
        assert len(fake.requests) == 3
        # --restart sends everything again, with the same messageIds
        ids = sorted(e["messageId"] for e in received)
        code, _, err = await _backfill(tmp_path, fake.url, str(events), "--to", "hook", "--restart")
        assert code == 0, err
        assert sorted(e["messageId"] for e in fake.received()[25:]) == ids
    assert SECRET not in out + err


async def test_bad_lines_and_rejected_events_are_reported_by_line_and_do_not_stop_the_run(
    tmp_path,
):
    lines = [
        _track(0),
        b"{not json",
        _track(2, user="bad"),
        orjson.dumps({"type": "track", "userId": "u1"}),  # no event name
        b"",
        orjson.dumps([1, 2]),
        _track(6, event="Ignored"),  # filtered by where: dropped, not failed
        _track(7),
    ]
    events = _write_events(tmp_path / "events.ndjson", lines)
    async with StrictHook() as fake:
        code, out, err = await _backfill(
            tmp_path, fake.url, str(events), "--to", "hook", batch=False
        )
        assert code == 1  # something failed
        assert sorted(e["properties"]["i"] for e in fake.received()) == [0, 7]
    assert "line 2: invalid JSON" in err
    assert "line 3: HTTP 400" in err
    assert "line 4: invalid event: " in err
    assert "event" in err
    assert "line 6: expected a JSON object" in err
    assert "dropped 1" in out
    assert "failed 4" in out
    assert "delivered 2" in out
    failures = [
        orjson.loads(x)
        for x in (tmp_path / "events.ndjson.hook.backfill.failures.ndjson")
        .read_bytes()
        .splitlines()
    ]
    assert sorted(f["line"] for f in failures) == [2, 3, 4, 6]
    assert next(f for f in failures if f["line"] == 3)["event"]["userId"] == "bad"


async def test_gzip_input_and_retry_after_a_5xx(tmp_path):
    events = _write_events(tmp_path / "events.ndjson.gz", [_track(i) for i in range(5)], gz=True)
    async with StrictHook() as fake:
        fake.script([503])
        code, _out, err = await _backfill(tmp_path, fake.url, str(events), "--to", "hook")
        assert code == 0, err
        assert len(fake.requests) == 2  # the 503, then the retry with the same events
        assert [e["properties"]["i"] for e in fake.requests[1].json()] == list(range(5))


async def test_credentials_rejected_stops_and_the_rerun_resumes_where_it_stopped(tmp_path):
    events = _write_events(tmp_path / "events.ndjson", [_track(i) for i in range(30)])
    async with StrictHook() as fake:
        code, out, err = await _backfill(
            tmp_path, fake.url, str(events), "--to", "hook", key="wrong-key-0000"
        )
        assert code == 1
        assert "credentials rejected" in err
        assert "resume" in err
        assert "wrong-key-0000" not in out + err
        assert fake.received() == []
        state = BackfillState.load(tmp_path / "events.ndjson.hook.backfill.json")
        assert state is not None
        assert not state.done
        assert state.line == 0
        # the operator fixes the key: the same command resumes from the saved line
        fake.key = SECRET
        code, _, err = await _backfill(tmp_path, fake.url, str(events), "--to", "hook")
        assert code == 0, err
        assert sorted(e["properties"]["i"] for e in fake.received()) == list(range(30))


class SlowHook(StrictHook):
    async def check(self, request: RecordedRequest) -> web.Response | None:
        await asyncio.sleep(0.3)
        return await super().check(request)


async def test_interrupted_run_resumes_after_the_settled_lines(tmp_path):
    events = _write_events(tmp_path / "events.ndjson", [_track(i) for i in range(200)])
    config = tmp_path / "crossdock.toml"
    async with SlowHook() as fake:
        config.write_text(CONFIG.format(url=fake.url, batch="true"))
        env = {**os.environ, "BF_KEY": SECRET}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "crossdock", "backfill", "-c", str(config), str(events),
            "--to", "hook", "--progress-every", "0",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=tmp_path,
        )  # fmt: skip
        # four batches of 10 are in flight at a time: by the 100th event some have settled
        await fake.wait_for(lambda f: len(f.received()) >= 100, timeout=30)
        await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 130, err.decode()
        assert "run the same command to resume" in err.decode()
        state = BackfillState.load(tmp_path / "events.ndjson.hook.backfill.json")
        assert state is not None
        assert not state.done
        assert 0 < state.line < 200
        first_run = len(fake.received())
        code, _, err2 = await _backfill(tmp_path, fake.url, str(events), "--to", "hook")
        assert code == 0, err2
        assert f"resuming {events} after line {state.line:,}" in err2
        received = [e["properties"]["i"] for e in fake.received()]
        assert set(received) == set(range(200))  # nothing lost
        # the second run started at the saved line, not at the top
        assert min(received[first_run:]) == state.line
        assert len(received) - 200 <= 200 - state.line  # only in-flight events repeat


def test_backfill_settings_are_applied_and_unknown_ones_refused():
    @attrs.frozen
    class Settings:
        token: str
        skip_hook: bool = False

    kind = DestinationType("acme", Settings, "test", backfill_settings={"skip_hook": True})
    dest = Destination(id="a", plugin="acme", type=kind, settings=Settings("t"), mapping={})
    applied, overrides = with_backfill_settings(dest)
    assert applied.settings == Settings("t", skip_hook=True)
    assert overrides == {"skip_hook": True}
    plain = attrs.evolve(dest, type=attrs.evolve(kind, backfill_settings={}))
    assert with_backfill_settings(plain) == (plain, {})
    broken = attrs.evolve(dest, type=attrs.evolve(kind, backfill_settings={"nope": 1}))
    with pytest.raises(ConfigError, match="nope"):
        with_backfill_settings(broken)


def test_read_lines_skips_and_reports_positions(tmp_path):
    path = _write_events(tmp_path / "e.ndjson.gz", [b"a", b"b", b"c"], gz=True)
    lines, size = read_lines(path, skip=1)
    got = list(lines)
    assert [(x.number, x.text) for x in got] == [(2, b"b\n"), (3, b"c\n")]
    assert size == path.stat().st_size
    assert got[-1].position == size


def test_progress_line_shows_rate_and_eta():
    from io import StringIO

    from crossdock.deliver.backfill import BackfillStats

    out = StringIO()
    progress = Progress(out, every=0, tty=False)
    stats = BackfillStats(lines=10, delivered=8, dropped=1, failed=1, position=0, total_bytes=100)
    progress.line(stats)  # the first call fixes the starting point
    stats.position = 50
    text = progress.line(stats)
    assert "50.0%" in text
    assert "line 10" in text
    assert "delivered 8" in text
    assert "failed 1" in text
    assert "ev/s" in text
    assert "ETA 0:" in text
    progress.update(stats, force=True)
    assert out.getvalue().endswith("\n")
