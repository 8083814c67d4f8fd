"""``segment-webhook`` against the real daemon: forged batches, header tokens and replays."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from crossdock.testing.helpers import post_json, read_ndjson, wait_until

SECRET = "shh-daemon-secret"
TOKEN = "tok-daemon-header"

CONFIG = f"""
[[sources]]
id = "hook"
type = "segment-webhook"
secret = "{SECRET}"

[[sources]]
id = "hook-batch"
type = "segment-webhook"
path = "/hooks/segment-batch"
secret = "{SECRET}"
signature_scope = "first-element"
token = "{TOKEN}"

[[destinations]]
id = "out"
plugin = "file"
[destinations.settings]
path = "{{workdir}}/out.ndjson"
[destinations.delivery]
max_wait_ms = 50
"""

CAPTURED = b'{"type":"track","userId":"u-1","event":"Real","messageId":"real-1"}'
FORGED = b'{"type":"identify","userId":"victim","traits":{"email":"attacker@example.com"}}'


def sign(data: bytes) -> dict[str, str]:
    return {"X-Signature": hmac.new(SECRET.encode(), data, hashlib.sha1).hexdigest()}


@pytest.fixture
def daemon(crossdock_daemon):
    return crossdock_daemon(CONFIG)


async def test_forged_batch_is_refused_and_replays_stored_once(daemon) -> None:
    """Defect 1, end to end: ``[M, forged]`` with ``M``'s captured signature is refused by
    default and in first-element mode without the header token; a message without messageId
    replayed is stored once."""
    url = daemon.url + "/hooks/segment"
    batch_url = daemon.url + "/hooks/segment-batch"
    forged = b"[" + CAPTURED + b"," + FORGED + b"]"
    no_id = b'{"type":"track","userId":"u-2","event":"No Id"}'
    async with aiohttp.ClientSession() as session:
        assert (await post_json(session, url, CAPTURED, headers=sign(CAPTURED)))[0] == 200
        status, answer = await post_json(session, url, forged, headers=sign(CAPTURED))
        assert (status, answer["code"]) == (401, "unauthorized")
        status, answer = await post_json(session, batch_url, forged, headers=sign(CAPTURED))
        assert (status, answer["message"]) == (401, "X-Crossdock-Token: missing or invalid")
        wrong = {**sign(CAPTURED), "X-Crossdock-Token": TOKEN[:-1]}
        assert (await post_json(session, batch_url, forged, headers=wrong))[0] == 401
        for _ in range(3):
            assert (await post_json(session, url, no_id, headers=sign(no_id)))[0] == 200
        # The configured sender (header token and first-element signature) gets through.
        batch = b"[" + no_id.replace(b"No Id", b"Batched") + b"," + CAPTURED + b"]"
        headers = {**sign(no_id.replace(b"No Id", b"Batched")), "X-Crossdock-Token": TOKEN}
        assert (await post_json(session, batch_url, batch, headers=headers))[0] == 200
        async with session.get(daemon.url + "/metrics") as response:
            metrics = await response.text()
    out = daemon.workdir / "out.ndjson"
    events = await wait_until(lambda: len(read_ndjson(out)) >= 3 and read_ndjson(out))
    assert sorted(e["event"] for e in events if "event" in e) == ["Batched", "No Id", "Real"]
    assert all(e.get("userId") != "victim" for e in events)
    assert 'crossdock_events_deduplicated_total{source="hook"} 2' in metrics
    assert 'crossdock_events_deduplicated_total{source="hook-batch"} 1' in metrics
    log = daemon.log_path.read_text(errors="replace")
    assert SECRET not in log
    assert TOKEN not in log


def test_check_refuses_first_element_without_token(tmp_path: Path) -> None:
    """A first-element source without ``token`` is a config error (check and startup)."""
    config = tmp_path / "crossdock.toml"
    config.write_text(
        f"""
[[sources]]
id = "hook"
type = "segment-webhook"
secret = "{SECRET}"
signature_scope = "first-element"

[[destinations]]
id = "out"
plugin = "file"
[destinations.settings]
path = "{tmp_path}/out.ndjson"
"""
    )
    done = subprocess.run(
        [sys.executable, "-m", "crossdock", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert "signature_scope" in output
    assert "requires both secret and token" in output
    assert SECRET not in output
