"""The real daemon, both directions, with the shipped example configs.

Segment → Product Fruits: events posted to the `segment` source reach the strict Product Fruits
fake as signed Segment messages; other types, anonymous calls and Product Fruits' own events
do not. Product Fruits → Segment: browser-like analytics.js batches carrying Product Fruits'
events reach the core's FakeSegment with the loop-prevention flag, and never the Product
Fruits fake.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from crossdock.testing.fakes import FakeSegment
from crossdock.testing.helpers import basic_auth, post_json, wait_until
from crossdock_productfruits.testing import DEFAULT_SECRET, FakeProductFruits

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
PLACEHOLDER_URL = "https://productfruits.example/paste-your-webhook-url"
WRITE_KEY = "wk-pf-e2e-0123456789"
SEGMENT_KEY = "sk-segment-e2e-0123"
T0 = "2026-11-20T09:00:00.000Z"
LIBRARY = {"name": "analytics.js", "version": "npm:next-1.70.0"}


def example(name: str, webhook_url: str = "") -> str:
    """An example config without its [server]/[queue] head (the test daemon brings its own),
    with the Webhook URL placeholder replaced by ``webhook_url``."""
    text = (EXAMPLES / name).read_text()
    if webhook_url:
        assert PLACEHOLDER_URL in text
        text = text.replace(PLACEHOLDER_URL, webhook_url)
    return text[text.index("[[sources]]") :]


def pf_destination(webhook_url: str) -> str:
    """The productfruits destination block of the Segment → Product Fruits example."""
    text = example("segment-to-productfruits.toml", webhook_url)
    return text[text.index("[[destinations]]") :]


def msg(kind: str, n: int, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "messageId": f"pf-e2e-{n}",
        "timestamp": T0,
        "sentAt": T0,  # no clock skew: the stored timestamp is then the receive time
        "context": {"library": LIBRARY},
        **fields,
    }


async def admin_row(daemon: Any, destination_id: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{daemon.url}/admin/destinations/{destination_id}", headers=daemon.admin_headers()
        ) as response,
    ):
        return await response.json()


async def settled(daemon: Any, destination_id: str, total: int) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        row = await admin_row(daemon, destination_id)
        seen = row["delivered"] + row["filtered"] + row["dropped"] + row["dead_lettered"]
        return row if seen >= total else None

    return await wait_until(done, what=f"{destination_id} settled {total} events")


def stored(sent: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """What the daemon stores for ``sent``: its receive time stamped, the client's time kept,
    the chain of sources recorded."""
    received = body["receivedAt"]
    context = {**sent["context"], "crossdock": {"source": "web", "sources": ["web"]}}
    return {**sent, "context": context, "receivedAt": received, "timestamp": received,
            "originalTimestamp": sent["timestamp"]}  # fmt: skip


async def test_segment_to_productfruits(crossdock_daemon) -> None:
    async with FakeProductFruits() as pf:
        env = {"WEB_WRITE_KEY": WRITE_KEY, "PRODUCTFRUITS_WEBHOOK_SECRET": DEFAULT_SECRET}
        config = example("segment-to-productfruits.toml", pf.webhook_url)
        daemon = crossdock_daemon(config, env=env)
        ident = msg(
            "identify",
            1,
            userId="u-1",
            traits={"email": "ana@example.com", "firstName": "Ana", "plan": "pro"},
        )
        exported = msg(
            "track", 2, userId="u-1", event="Report Exported", properties={"format": "csv"}
        )
        booked = msg("track", 3, userId="u-1", event="Tour Booked", properties={"id": "trip"})
        batch = [
            ident,
            exported,
            booked,  # looks like Product Fruits' but the example's table lets it through
            msg("track", 4, userId="u-1", event="Tour Finished", properties={"id": 17}),
            msg("track", 5, anonymousId="a-1", event="Report Exported"),  # nobody to match
            msg("page", 6, userId="u-1", name="Home"),
        ]
        async with aiohttp.ClientSession() as session:
            status, _ = await post_json(
                session, daemon.url + "/v1/batch", {"batch": batch}, auth=basic_auth(WRITE_KEY)
            )
        assert status == 200
        row = await settled(daemon, "productfruits", len(batch))
        assert (row["delivered"], row["filtered"], row["dropped"]) == (3, 2, 1)
        bodies = {m["messageId"]: m for m in pf.messages}
        assert sorted(bodies) == ["pf-e2e-1", "pf-e2e-2", "pf-e2e-3"]
        expected_identify = stored(ident, bodies["pf-e2e-1"])
        expected_identify["context"]["traits"] = {"email": "ana@example.com"}
        assert bodies["pf-e2e-1"] == expected_identify
        assert bodies["pf-e2e-2"] == stored(exported, bodies["pf-e2e-2"])
        assert bodies["pf-e2e-3"] == stored(booked, bodies["pf-e2e-3"])
        # Requests run concurrently: the first to arrive creates u-1, the others find it.
        assert sorted(m.how for m in pf.matches) == ["created", "username", "username"]
        assert pf.unmatched == []
        assert DEFAULT_SECRET not in daemon.log()


async def test_productfruits_to_segment_flags_its_events_and_never_loops(crossdock_daemon) -> None:
    async with FakeSegment(write_keys=[SEGMENT_KEY]) as segment, FakeProductFruits() as pf:
        config = example("productfruits-to-segment.toml").replace(
            'write_key = "${SEGMENT_WRITE_KEY}"',
            f'write_key = "${{SEGMENT_WRITE_KEY}}"\nhost = "{segment.url}"',
        )
        env = {
            "WEB_WRITE_KEY": WRITE_KEY,
            "SEGMENT_WRITE_KEY": SEGMENT_KEY,
            "PRODUCTFRUITS_WEBHOOK_SECRET": DEFAULT_SECRET,
        }
        daemon = crossdock_daemon(config + "\n" + pf_destination(pf.webhook_url), env=env)
        # What analytics.js sends from a page where Product Fruits runs: its own events next
        # to the app's, as text/plain JSON with the write key inside, cross-origin.
        batch = [
            msg("identify", 11, userId="u-7", traits={"email": "bo@example.com"}),
            msg("track", 12, userId="u-7", event="Tour Finished", properties={"id": 17}),
            msg("track", 13, userId="u-7", event="Announcements Popup Opened",
                properties={"id": "c1a7"}, integrations={"All": True}),
            msg("track", 14, userId="u-7", event="checklist_item_completed",
                properties={"id": 3, "internalId": "welcome-1"}),
            msg("track", 15, userId="u-7", event="Report Exported", properties={}),
        ]  # fmt: skip
        body = orjson.dumps({"batch": batch, "writeKey": WRITE_KEY, "sentAt": T0})
        headers = {"Content-Type": "text/plain", "Origin": "https://app.example.com"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(daemon.url + "/v1/batch", data=body, headers=headers) as response,
        ):
            assert response.status == 200
        await wait_until(lambda: len(segment.events) >= len(batch), what="events at Segment")
        flags = {e["messageId"]: e.get("integrations") for e in segment.events}
        assert flags == {
            "pf-e2e-11": {},
            "pf-e2e-12": {"Product Fruits": False},
            "pf-e2e-13": {"All": True, "Product Fruits": False},
            "pf-e2e-14": {"Product Fruits": False},
            "pf-e2e-15": {},
        }
        assert segment.discarded == []
        forwarded = {e["messageId"]: e for e in segment.events}
        assert forwarded["pf-e2e-12"]["event"] == "Tour Finished"
        assert forwarded["pf-e2e-12"]["properties"] == {"id": 17}
        assert forwarded["pf-e2e-12"]["context"]["crossdock"]["sources"] == ["web"]
        row = await settled(daemon, "productfruits", len(batch))
        assert (row["delivered"], row["filtered"]) == (2, 3)
        assert sorted(m["messageId"] for m in pf.messages) == ["pf-e2e-11", "pf-e2e-15"]


@pytest.mark.parametrize("name", ["segment-to-productfruits.toml", "productfruits-to-segment.toml"])
def test_examples_pass_crossdock_check(name: str) -> None:
    env = {
        **os.environ,
        "WEB_WRITE_KEY": WRITE_KEY,
        "SEGMENT_WRITE_KEY": SEGMENT_KEY,
        "PRODUCTFRUITS_WEBHOOK_SECRET": DEFAULT_SECRET,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "crossdock", "check", "-c", str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert DEFAULT_SECRET not in proc.stdout + proc.stderr
