"""End to end with the real daemon(s): the example configs, the fakes, and loop prevention.

The loop test wires the two example configs the way an operator with Hull on both sides of one
Segment workspace would: Hull notifies daemon A (``hull-to-segment.toml``), which sends to the
workspace (a FakeSegment); the workspace forwards everything it receives to daemon B
(``segment-to-hull.toml``), which writes to Hull (the fake Firehose). Hull itself is emulated by
turning what the Firehose stored back into a notification to daemon A.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from crossdock.testing.fakes import FakeSegment, RecordedRequest
from crossdock.testing.helpers import basic_auth, post_json, wait_until
from crossdock_hull.testing import (
    CONNECTOR_ID,
    CONNECTOR_SECRET,
    ORGANIZATION,
    FakeHullFirehose,
    hull_message,
    hull_notification,
    notification_headers,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
WORKSPACE_KEY = "wk-workspace-0123456789"
CROSSDOCK_KEY = "wk-crossdock-0123456789"
WEBHOOK_SECRET = "whsec-segment-0123456789"
VIP = {"id": "seg-1", "name": "VIP", "type": "users_segment"}
USER = {"id": "h-1", "external_id": "u-1042", "email": "ana@example.com",
        "anonymous_ids": ["a-77f0c1"], "traits_plan": "pro"}  # fmt: skip
FAST = "[destinations.delivery]\nmax_wait_ms = 200"


def example(name: str) -> str:
    return (EXAMPLES / name).read_text().replace(FAST, "[destinations.delivery]\nmax_wait_ms = 20")


def hull_env() -> dict[str, str]:
    return {
        "HULL_CONNECTOR_SECRET": CONNECTOR_SECRET,
        "HULL_CONNECTOR_ID": CONNECTOR_ID,
        "HULL_ORGANIZATION": ORGANIZATION,
        "SEGMENT_WRITE_KEY": WORKSPACE_KEY,
        "SEGMENT_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }


def segment_to_hull(firehose_url: str) -> str:
    """The segment-to-hull example pointed at the fake Firehose."""
    text = example("segment-to-hull.toml")
    default = 'firehose_url = "https://firehose.hullapp.io"'
    assert default in text
    return text.replace(default, f'firehose_url = "{firehose_url}"')


def segment_host_config(text: str, host: str) -> str:
    """Point the example's segment destination at the fake workspace."""
    return text.replace('# host = "https://events.eu1.segmentapis.com"', f'host = "{host}"')


class ForwardingSegment(FakeSegment):
    """A Segment workspace whose other destination is a Crossdock ``segment`` source: every
    accepted batch is forwarded to ``forward_to`` (``/v1/batch``)."""

    def __init__(self, forward_key: str, *, new_ids: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.new_ids = new_ids
        self.forward_to: str | None = None
        self.forward_key = forward_key
        self.forwarded: list[int] = []
        self.forwarded_count = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def answer(self, request: RecordedRequest) -> web.Response:
        response = await super().answer(request)
        if self.forward_to is not None:
            task = asyncio.create_task(self._forward(request.json()["batch"]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return response

    async def _forward(self, batch: list[dict[str, Any]]) -> None:
        if self.new_ids:  # a relay that re-issues message ids: dedupe cannot see the echo
            batch = [
                {**m, "messageId": f"relay-{len(self.events)}-{i}"} for i, m in enumerate(batch)
            ]
        async with aiohttp.ClientSession() as session:
            status, _ = await post_json(
                session, f"{self.forward_to}/v1/batch", {"batch": batch},
                auth=basic_auth(self.forward_key),
            )  # fmt: skip
        self.forwarded.append(status)
        self.forwarded_count += len(batch)
        await self.notify()

    def all_forwarded(self) -> bool:
        """Whether every accepted message was forwarded (the answers are in :attr:`forwarded`)."""
        return self.forwarded_count == len(self.events)


async def metric(url: str, name: str, label: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as response:
        text = await response.text()
    match = re.search(rf"^{name}\{{[^}}]*\"{re.escape(label)}\"[^}}]*\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def wait_metric(url: str, name: str, label: str, value: float) -> None:
    """Wait until the metric reaches ``value`` (fails after the helper's timeout)."""

    async def reached() -> bool:
        return await metric(url, name, label) == value

    await wait_until(reached, what=f"{name}{{{label}}} == {value}")


async def notify(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        return await post_json(
            session, url + "/hooks/hull", body, headers=notification_headers(body)
        )


def native_event(name: str, source: str = "track", **extra: Any) -> dict[str, Any]:
    return {"event": name, "event_id": f"ev-{name}", "event_source": source,
            "properties": {"plan": "pro"}, "context": {"ip": "203.0.113.9"},
            "created_at": "2025-03-02 10:15:04 UTC", **extra}  # fmt: skip


# ---------------------------------------------------------------------------------------------


async def test_segment_to_hull_example_delivers_exact_entries(crossdock_daemon) -> None:
    async with FakeHullFirehose() as hull:
        daemon = crossdock_daemon(
            segment_to_hull(hull.url), env={
                **hull_env(), "SEGMENT_WRITE_KEY": CROSSDOCK_KEY},
        )  # fmt: skip
        batch = [
            {"type": "identify", "userId": "u-7", "anonymousId": "a-7", "messageId": "m-1",
             "timestamp": "2026-11-22T12:00:00.000Z",
             "traits": {"email": "Bo@Example.com", "firstName": "Bo",
                        "address": {"city": "Porto"}}},
            {"type": "track", "userId": "u-7", "messageId": "m-2", "event": "Order Completed",
             "timestamp": "2026-11-22T12:00:01.000Z", "properties": {"order_id": "A-1"},
             "context": {"ip": "198.51.100.4", "page": {"url": "https://shop.example/done"}}},
            {"type": "group", "userId": "u-7", "groupId": "g-9", "messageId": "m-3",
             "timestamp": "2026-11-22T12:00:02.000Z",
             "traits": {"name": "Acme", "domain": "acme.com"}},
            {"type": "alias", "userId": "u-7", "previousId": "a-old", "messageId": "m-4",
             "timestamp": "2026-11-22T12:00:03.000Z"},
            {"type": "track", "userId": "u-7", "messageId": "m-5", "event": "From Hull",
             "integrations": {"Hull": False}},
        ]  # fmt: skip
        async with aiohttp.ClientSession() as session:
            status, _ = await post_json(
                session, daemon.url + "/v1/batch", {"batch": batch}, auth=basic_auth(CROSSDOCK_KEY)
            )
        assert status == 200
        await hull.wait_for(lambda f: len(f.entries) >= 4)
        got = [(e.type, e.body, e.timestamp, {k: v for k, v in e.claims.items() if k != "iat"})
               for e in hull.entries]  # fmt: skip
        user = {"iss": CONNECTOR_ID, "io.hull.subjectType": "user"}
        assert got == [
            ("traits", {"email": "Bo@Example.com", "first_name": "Bo", "address/city": "Porto"},
             "2026-11-22T12:00:00.000Z",
             {**user, "io.hull.asUser": {"external_id": "u-7", "email": "bo@example.com",
                                         "anonymous_id": "a-7"}}),
            ("track", {"event": "Order Completed", "properties": {"order_id": "A-1"},
                       "event_id": "m-2", "created_at": "2026-11-22T12:00:01.000Z",
                       "source": "segment", "type": "track", "ip": "198.51.100.4",
                       "url": "https://shop.example/done", "referer": None},
             "2026-11-22T12:00:01.000Z", {**user, "io.hull.asUser": {"external_id": "u-7"}}),
            ("traits", {"name": "Acme", "domain": "acme.com"}, "2026-11-22T12:00:02.000Z",
             {"iss": CONNECTOR_ID, "io.hull.subjectType": "account",
              "io.hull.asAccount": {"external_id": "g-9", "domain": "acme.com"},
              "io.hull.asUser": {"external_id": "u-7"}}),
            ("alias", {"anonymous_id": "a-old"}, "2026-11-22T12:00:03.000Z",
             {**user, "io.hull.asUser": {"external_id": "u-7"}}),
        ]  # fmt: skip
        assert hull.links == {"external_id:u-7": "external_id:g-9"}
        await wait_metric(daemon.url, "crossdock_events_filtered_total", "hull", 1.0)
        assert len(hull.entries) == 4


def segment_webhook_body(message: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """What Segment's Webhooks destination posts: one message as JSON, signed with the shared
    secret (``X-Signature``: hex HMAC-SHA1 of the body), as Segment serializes it."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha1).hexdigest()
    return body, {"X-Signature": signature, "User-Agent": "Segment.io/1.0"}


async def test_segment_workspace_webhook_reaches_hull(crossdock_daemon) -> None:
    """The README's Segment workspace → Crossdock → Hull path: the Webhooks destination's signed
    bodies at the example's ``segment-webhook`` source arrive at the strict Firehose."""
    async with FakeHullFirehose() as hull:
        daemon = crossdock_daemon(segment_to_hull(hull.url), env=hull_env())
        common = {"projectId": "ws-proj-1", "channel": "client", "version": 2,
                  # Segment stamps receivedAt on arrival: a delivery's is recent, or it is
                  # refused as a replay (segment-webhook max_age).
                  "receivedAt": datetime.now(UTC).isoformat(timespec="milliseconds"),
                  "sentAt": "2026-11-22T12:00:00.250Z",
                  "originalTimestamp": "2026-11-22T12:00:00.200Z", "integrations": {}}  # fmt: skip
        identify = {**common, "type": "identify", "messageId": "ajs-w1", "userId": "u-8",
                    "anonymousId": "a-8", "timestamp": "2026-11-22T12:00:00.000Z",
                    "traits": {"email": "Eve@Example.com", "plan": "pro"}}  # fmt: skip
        track = {**common, "type": "track", "messageId": "ajs-w2", "userId": "u-8",
                 "anonymousId": "a-8", "event": "Plan Upgraded",
                 "timestamp": "2026-11-22T12:00:01.000Z", "properties": {"plan": "pro"},
                 "context": {"ip": "198.51.100.7", "locale": "pt-PT", "userAgent": "UA/2",
                             "campaign": {"name": "spring"},
                             "page": {"url": "https://app.example/billing"}}}  # fmt: skip
        async with aiohttp.ClientSession() as session:
            for message in (identify, track):
                body, headers = segment_webhook_body(message)
                status, _ = await post_json(
                    session, daemon.url + "/hooks/segment", body, headers=headers
                )
                assert status == 200
            unsigned = orjson.dumps({**track, "messageId": "ajs-w3"})
            status, _ = await post_json(session, daemon.url + "/hooks/segment", unsigned)
            assert status == 401
        await hull.wait_for(lambda f: len(f.entries) >= 2)
        traits, event = hull.entries
        assert (traits.type, traits.body) == ("traits", {"email": "Eve@Example.com", "plan": "pro"})
        assert traits.claims["io.hull.asUser"] == {
            "external_id": "u-8", "email": "eve@example.com", "anonymous_id": "a-8"}  # fmt: skip
        assert event.type == "track"
        assert event.body == {
            "event": "Plan Upgraded", "properties": {"plan": "pro"}, "event_id": "ajs-w2",
            "created_at": "2026-11-22T12:00:01.000Z", "source": "segment", "type": "track",
            "ip": "198.51.100.7", "url": "https://app.example/billing", "referer": None,
            "useragent": "UA/2", "locale": "pt-PT", "campaign": {"name": "spring"},
        }  # fmt: skip
        assert event.claims["io.hull.asUser"] == {"external_id": "u-8", "anonymous_id": "a-8"}
        assert len(hull.entries) == 2


async def test_hull_to_segment_example(crossdock_daemon) -> None:
    async with FakeSegment(write_keys=[WORKSPACE_KEY]) as segment:
        daemon = crossdock_daemon(
            segment_host_config(example("hull-to-segment.toml"), segment.url),
            env=hull_env(),
        )
        message = hull_message(
            {**USER, "account_id": "x"}, segments=[VIP], message_id="msg-1",
            account={"id": "h-acc", "external_id": "g-9", "domain": "acme.com"},
            changes={"segments": {"entered": [VIP]}},
            events=[native_event("Order Completed"), native_event("Echo", source="segment")],
        )  # fmt: skip
        body = hull_notification([message])
        status, answer = await notify(daemon.url, body)
        assert status == 200
        assert answer == {
            "flow_control": {"type": "next", "size": 50, "in": 1},
            "metrics": [],
            "errors": [],
        }
        await segment.wait_for(lambda f: len(f.events) >= 3)
        identify, group, track = segment.events
        assert identify["type"] == "identify"
        assert identify["userId"] == "u-1042"
        assert identify["anonymousId"] == "a-77f0c1"
        assert identify["messageId"] == "hull:msg-1:identify"
        assert identify["traits"] == {
            "email": "ana@example.com",
            "plan": "pro",
            "account_domain": "acme.com",
            "hull_segments": ["VIP"],
        }
        assert group["type"] == "group"
        assert group["groupId"] == "g-9"
        assert group["traits"] == {"domain": "acme.com", "hull_segments": []}
        assert track["event"] == "Order Completed"
        assert track["messageId"] == "ev-Order Completed"
        assert track["timestamp"] == "2025-03-02T10:15:04.000Z"
        for event in segment.events:
            assert event["integrations"]["Hull"] is False
            assert event["context"]["crossdock"]["sources"] == ["hull"]
        assert not any(e.get("event") == "Echo" for e in segment.events)

        # Hull re-sends the same notification (flow control retry): deduplicated.
        assert (await notify(daemon.url, body))[0] == 200
        await wait_metric(daemon.url, "crossdock_events_deduplicated_total", "hull", 3.0)

        # A notification that does not carry the connector secret is refused.
        forged = hull_notification([message], secret="forged-secret")
        status, answer = await notify(daemon.url, forged)
        assert status == 401
        assert answer["code"] == "invalid_signature"
        assert CONNECTOR_SECRET not in daemon.log()


async def test_loop_stops_after_one_hop(crossdock_daemon) -> None:
    async with (
        ForwardingSegment(CROSSDOCK_KEY, write_keys=[WORKSPACE_KEY]) as workspace,
        FakeHullFirehose() as hull,
    ):
        a = crossdock_daemon(
            segment_host_config(example("hull-to-segment.toml"), workspace.url),
            name="a", env=hull_env(),
        )  # fmt: skip
        b = crossdock_daemon(
            segment_to_hull(hull.url),
            name="b", env={**hull_env(), "SEGMENT_WRITE_KEY": CROSSDOCK_KEY},
        )  # fmt: skip
        workspace.forward_to = b.url

        # 1. Hull → A → workspace → B: B's hull destination must not write it back to Hull.
        message = hull_message(
            USER, segments=[VIP], changes={"segments": {"entered": [VIP]}},
            events=[native_event("Hull Native")],
        )  # fmt: skip
        assert (await notify(a.url, hull_notification([message])))[0] == 200
        await workspace.wait_for(lambda f: len(f.events) >= 2 and f.all_forwarded())  # type: ignore[attr-defined]
        assert set(workspace.forwarded) == {200}
        await wait_metric(b.url, "crossdock_events_filtered_total", "hull", 2.0)

        # 2. The workspace's own traffic still reaches Hull (control), written as source "segment".
        async with aiohttp.ClientSession() as session:
            direct = {"type": "track", "userId": "u-1042", "event": "Direct", "messageId": "d-1"}
            status, _ = await post_json(
                session, b.url + "/v1/track", direct, auth=basic_auth(CROSSDOCK_KEY)
            )
        assert status == 200
        await hull.wait_for(lambda f: len(f.entries) >= 1)
        assert [(e.type, e.body["event"], e.body["source"]) for e in hull.entries] == [
            ("track", "Direct", "segment")
        ]

        # 3. Hull notifies A about the event Crossdock wrote (event_source "segment"): it is not
        #    sent back to the workspace. A native event of the same notification is (sync point).
        written = hull.entries[0].body
        echo = native_event("Direct", source=written["source"], event_id=written["event_id"])
        after = native_event("After")
        message = hull_message(USER, segments=[VIP], events=[echo, after])
        assert (await notify(a.url, hull_notification([message])))[0] == 200
        await workspace.wait_for(lambda f: any(e.get("event") == "After" for e in f.events))
        assert [e.get("event", e["type"]) for e in workspace.events] == [
            "identify",
            "Hull Native",
            "After",
        ]
        await workspace.wait_for(lambda f: f.all_forwarded())  # type: ignore[attr-defined]
        await wait_metric(b.url, "crossdock_events_filtered_total", "hull", 3.0)
        assert len(hull.entries) == 1


@pytest.mark.parametrize("new_ids", [False, True])
async def test_echo_into_the_same_daemon_stops(crossdock_daemon, new_ids: bool) -> None:
    """One daemon carelessly routing every source to Segment, whose workspace echoes each event
    back into the same daemon: the echo is deduplicated by ``messageId``; if a relay re-issued
    the ids, the core's chain (``context.crossdock.sources``) drops it as looped."""
    async with (
        ForwardingSegment(WORKSPACE_KEY, new_ids=new_ids, write_keys=[WORKSPACE_KEY]) as workspace,
        FakeHullFirehose() as hull,
    ):
        config = example("hull-to-segment.toml").replace('sources = ["hull"]\n', "")
        config = segment_host_config(config, workspace.url)
        config += "\n[[sources]]" + segment_to_hull(hull.url).split("[[sources]]", 1)[1]
        daemon = crossdock_daemon(config, env={**hull_env(), "SEGMENT_WRITE_KEY": WORKSPACE_KEY})
        workspace.forward_to = daemon.url
        message = hull_message(USER, events=[native_event("Once")])
        assert (await notify(daemon.url, hull_notification([message])))[0] == 200
        if new_ids:
            # hull → Segment (1) → echo into "web" → Segment (2) → echo dropped as looped
            await wait_metric(daemon.url, "crossdock_events_looped_total", "web", 1.0)
            assert [e["event"] for e in workspace.events] == ["Once", "Once"]
            assert workspace.events[1]["context"]["crossdock"]["sources"] == ["hull", "web"]
        else:
            # hull → Segment (1) → echo into "web": the same messageId, deduplicated
            await wait_metric(daemon.url, "crossdock_events_deduplicated_total", "web", 1.0)
            assert [e["event"] for e in workspace.events] == ["Once"]
        await workspace.wait_for(lambda f: f.all_forwarded())  # type: ignore[attr-defined]
        assert set(workspace.forwarded) == {200}
        # the hull destination skipped the original (not from "web") and the echo (Hull: false)
        await wait_metric(
            daemon.url, "crossdock_events_filtered_total", "hull", len(workspace.events)
        )
        assert hull.entries == []


async def test_segment_destination_override_marks_every_event(crossdock_daemon) -> None:
    """The hull-to-segment example's mapping override opts Hull out on events that did not
    come from Hull too (here: a Segment call routed to the same workspace)."""
    async with FakeSegment(write_keys=[WORKSPACE_KEY]) as workspace:
        config = example("hull-to-segment.toml").replace('sources = ["hull"]\n', "")
        config = segment_host_config(config, workspace.url)
        config += '\n[[sources]]\nid = "web"\ntype = "segment"\nwrite_keys = ["wk-web-0123"]\n'
        daemon = crossdock_daemon(config, env=hull_env())
        async with aiohttp.ClientSession() as session:
            status, _ = await post_json(
                session, daemon.url + "/v1/track",
                {"userId": "u-1", "event": "Clicked", "integrations": {"Mixpanel": False}},
                auth=basic_auth("wk-web-0123"),
            )  # fmt: skip
        assert status == 200
        await workspace.wait_for(lambda f: len(f.events) >= 1)
        [event] = workspace.events
        assert event["integrations"] == {"Mixpanel": False, "Hull": False}
        assert event["context"]["crossdock"]["sources"] == ["web"]


def test_plugins_json_lists_hull() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "crossdock", "plugins", "--json"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    [hull] = [p for p in orjson.loads(out) if p["name"] == "hull"]
    assert hull["distribution"] == "crossdock-hull"
    assert hull["source_types"] == ["hull"]
    assert hull["destination_types"] == ["hull"]
    assert hull["status"] == "ok"


@pytest.mark.parametrize("name", ["hull-to-segment.toml", "segment-to-hull.toml"])
def test_examples_pass_check(name: str) -> None:
    env = {"PATH": "", **hull_env(), "SEGMENT_WRITE_KEY": "k"}
    result = subprocess.run(
        [sys.executable, "-m", "crossdock", "check", "-c", str(EXAMPLES / name)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert CONNECTOR_SECRET not in result.stdout + result.stderr
