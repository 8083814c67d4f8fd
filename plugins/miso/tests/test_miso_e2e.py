"""End to end: the real daemon (``crossdock run``) takes Segment events on ``/v1/batch`` and
delivers Miso records to FakeMiso; ``crossdock plugins --json`` lists the plugin."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from typing import Any

import aiohttp

import crossdock_miso
from crossdock.testing.events import golden_event, page
from crossdock.testing.harness import DestinationHarness
from crossdock.testing.helpers import basic_auth, post_json, wait_until
from crossdock_miso.testing import FakeMiso

WRITE_KEY = "wk-miso-e2e-0123456789"
MISO_KEY = "sk_e2e_secret_987654"
OVERRIDE = "properties.when || iso_time(timestamp)"

CONFIG = """
[[sources]]
id = "web"
type = "segment"
write_keys = ["{write_key}"]

[[destinations]]
id = "miso"
plugin = "miso"
[destinations.settings]
api_key = "${{MISO_API_KEY}}"
base_url = "{base_url}"
[destinations.mapping]
timestamp = "{override}"
[destinations.tables.miso_events]
"Signed Up" = "custom"
[destinations.delivery]
max_wait_ms = 50
"""


def stored_like(event: dict[str, Any]) -> dict[str, Any]:
    """The event as sent: without ``sentAt`` so the stored ``timestamp`` is the client's."""
    event = dict(event)
    for key in ("sentAt", "receivedAt", "originalTimestamp"):
        event.pop(key, None)
    return event


async def test_daemon_delivers_exact_miso_records_and_dead_letters_a_refused_one(
    crossdock_daemon,
) -> None:
    async with FakeMiso(secret_keys=[MISO_KEY]) as miso:
        config = CONFIG.format(write_key=WRITE_KEY, base_url=miso.url, override=OVERRIDE)
        daemon = crossdock_daemon(config, env={"MISO_API_KEY": MISO_KEY})
        home = page("Home", {"url": "https://shop.example.com/", "title": "Acme"})
        refunded = golden_event("Order Refunded")
        refunded["properties"]["when"] = "yesterday"  # the override sends it; Miso refuses it
        events = [
            stored_like(golden_event(name))
            for name in ("Product Viewed", "Order Completed", "Signed Up", "identify")
        ] + [stored_like(home), stored_like(refunded)]
        async with aiohttp.ClientSession() as session:
            status, body = await post_json(
                session, daemon.url + "/v1/batch", {"batch": events}, auth=basic_auth(WRITE_KEY)
            )
            assert (status, body) == (200, {"success": True})
            await miso.wait_for(lambda m: len(m.records) >= 4, timeout=20)

            async def dead_letters() -> list[dict[str, Any]]:
                async with session.get(
                    daemon.url + "/admin/dlq?destination=miso", headers=daemon.admin_headers()
                ) as response:
                    return (await response.json())["entries"]

            [dead] = await wait_until(dead_letters, what="the refused record dead-lettered")

        tables = {
            "miso_events": {
                **crossdock_miso.DESTINATION_TYPE.spec.tables["miso_events"],
                "Signed Up": "custom",
            }
        }
        with_config = DestinationHarness(
            crossdock_miso, {"api_key": MISO_KEY}, mapping={"timestamp": OVERRIDE}, tables=tables
        )
        expected = [with_config.transform(e) for e in events[:3] + events[4:5]]
        key = lambda r: r["type"]  # noqa: E731
        assert sorted(miso.records, key=key) == sorted(expected, key=key)
        signed_up = next(r for r in miso.records if r["type"] == "custom")
        assert signed_up["custom_action_name"] == "Signed Up"
        assert signed_up["timestamp"] == golden_event("Signed Up")["timestamp"]
        assert signed_up["user_id"] == "u-1042"
        assert signed_up["context"]["truncated_ip"] == "203.0.113.0"
        assert all(r.headers["X-API-KEY"] == MISO_KEY for r in miso.requests)

        assert dead["reason"] == (
            "Miso 422: timestamp is invalid. \"yesterday\" should match the 'date-time' format"
        )
        assert dead["status"] == 422
        assert dead["event"]["event"] == "Order Refunded"
        assert miso.refused  # Miso refused the request holding it, and nothing of that one
        assert not any(r["type"] == "refund" for r in miso.records)
        assert MISO_KEY not in daemon.log()


def test_crossdock_plugins_lists_miso_with_its_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "crossdock", "plugins", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    [row] = [p for p in json.loads(result.stdout) if p["name"] == "miso"]
    assert row["distribution"] == "crossdock-miso"
    assert row["version"] == version("crossdock-miso")
    assert row["destination_types"] == ["miso"]
    assert row["status"] == "ok"
    assert "crossdock_make_transformer" in row["hooks"]
