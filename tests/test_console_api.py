"""The console's JSON API (issue 13) against the daemon's application on a real socket, real
SQLite, and local fake vendors: event journeys (delivered, filtered by ``where``, dropped by the
mapping, retrying with the vendor's status and body, dead-lettered), destination cards and the
operator's pause/resume/probe, dead letters (filter, replay and purge jobs), the mapping tester
(overrides, TOML that ``crossdock check`` accepts, precise 422s, send only when confirmed), and
no secret in any answer. The tester body is fuzzed against a real ``crossdock run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossdock.config.load import load_config
from crossdock.plugins.registry import load_registry
from crossdock.testing.daemon import ADMIN_TOKEN, Daemon, free_port
from crossdock.testing.fakes import FakeVendor
from crossdock.testing.helpers import basic_auth, wait_until
from crossdock.web import keys
from crossdock.web.app import make_app

EXAMPLES = int(os.environ.get("CROSSDOCK_FUZZ_EXAMPLES", "25"))
WRITE_KEY = "wk-console-api-0123456789"
VENDOR_TOKEN = "vendor-token-7c1d0f2e9a"
SIGNING_SECRET = "signing-secret-5b8e21d4"
SECRETS = (WRITE_KEY, VENDOR_TOKEN, SIGNING_SECRET, ADMIN_TOKEN)
AUTH = basic_auth(WRITE_KEY)
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

GOOD_MAPPING = '[destinations.mapping]\nplan = "traits.plan"\n'


def config_text(urls: dict[str, str], workdir: Path, good_mapping: str = GOOD_MAPPING) -> str:
    return f"""
[[sources]]
id = "web"
type = "segment"
write_keys = ["{WRITE_KEY}"]

[[destinations]]
id = "good"
plugin = "webhook"
[destinations.settings]
url = "{urls["good"]}/good"
secret = "{SIGNING_SECRET}"
[destinations.settings.headers]
Authorization = "Bearer {VENDOR_TOKEN}"
[destinations.delivery]
max_wait_ms = 20
{good_mapping}
[[destinations]]
id = "flaky"
plugin = "webhook"
[destinations.settings]
url = "{urls["flaky"]}/flaky"
[destinations.delivery]
max_wait_ms = 20

[[destinations]]
id = "strict"
plugin = "webhook"
[destinations.settings]
url = "{urls["strict"]}/strict"
[destinations.settings.headers]
X-Api-Key = "{VENDOR_TOKEN}"
[destinations.delivery]
max_wait_ms = 20

[[destinations]]
id = "picky"
plugin = "file"
where = "event == 'Signup'"
[destinations.settings]
path = "{workdir}/picky.ndjson"
[destinations.delivery]
max_wait_ms = 20

[[destinations]]
id = "mapped"
plugin = "file"
[destinations.settings]
path = "{workdir}/mapped.ndjson"
[destinations.delivery]
max_wait_ms = 20
[destinations.mapping.dispatch]
select = "lookup('kinds', event)"
[destinations.mapping.sections.refund.fields]
"." = "`null`"
[destinations.mapping.sections.order.fields]
orderId = "properties.order_id"
[destinations.tables.kinds]
"Order Refunded" = "refund"
"Order Completed" = "order"

[[destinations]]
id = "cred"
plugin = "webhook"
[destinations.settings]
url = "{urls["cred"]}/cred"
[destinations.delivery]
max_wait_ms = 20
"""


class Console:
    """A signed-in console client that keeps every answer body, to scan them for secrets."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session
        self.csrf = ""
        self.seen: list[bytes] = []

    async def sign_in(self) -> None:
        status, body = await self.call("POST", "/console/api/session", {"token": ADMIN_TOKEN})
        assert status == 200
        self.csrf = body["csrf"]

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"X-Crossdock-CSRF": self.csrf} if self.csrf else {}
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        async with self.session.request(
            method, self.url + path, data=data, headers=headers
        ) as response:
            raw = await response.read()
            self.seen.append(raw)
            self.seen.append(str(dict(response.headers)).encode())
            return response.status, orjson.loads(raw) if raw else None

    async def journey(self, message_id: str) -> dict[str, dict[str, Any]]:
        status, body = await self.call("GET", f"/console/api/events/{message_id}/journey")
        assert status == 200
        return {row["destination"]: row for row in body["destinations"]}

    def assert_no_secret(self) -> None:
        for raw in self.seen:
            for secret in SECRETS:
                assert secret.encode() not in raw, raw[:300]


@contextlib.asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[tuple[web.Application, Console, dict]]:
    vendors = {name: await FakeVendor().start() for name in ("good", "flaky", "strict", "cred")}
    vendors["flaky"].respond(500, f"vendor overloaded: try later ({VENDOR_TOKEN})")
    vendors["strict"].respond(400, {"error": "invalid email", "echo": VENDOR_TOKEN})
    urls = {name: fake.url for name, fake in vendors.items()}
    path = tmp_path / "crossdock.toml"
    path.write_text(
        f'[server]\nadmin_token = "{ADMIN_TOKEN}"\n[queue]\npath = "q.db"\n'
        + config_text(urls, tmp_path)
    )
    registry = load_registry()
    app = make_app(load_config(path, registry), registry)
    runner = web.AppRunner(app, handler_cancellation=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    jar = aiohttp.CookieJar(unsafe=True)
    try:
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            console = Console(f"http://127.0.0.1:{port}", session)
            await console.sign_in()
            yield app, console, vendors
    finally:
        await runner.cleanup()
        for fake in vendors.values():
            await fake.close()


async def post_events(console: Console, events: list[dict[str, Any]]) -> None:
    async with console.session.post(
        console.url + "/v1/batch",
        data=orjson.dumps({"batch": events}),
        headers={"Authorization": AUTH, "Content-Type": "application/json"},
    ) as r:
        assert r.status == 200


def order(name: str, message_id: str) -> dict[str, Any]:
    return {
        "type": "track", "event": name, "userId": "user-42", "messageId": message_id,
        "properties": {"order_id": "A-1", "note": WRITE_KEY}, "traits": {"plan": "pro"},
    }  # fmt: skip


async def test_journey_of_an_event_at_every_destination(tmp_path: Path) -> None:
    async with running(tmp_path) as (_app, console, _vendors):
        await post_events(console, [order("Order Refunded", "m-1")])

        async def settled() -> Any:
            rows = await console.journey("m-1")
            if any(r["state"] in ("queued", "unknown") for r in rows.values()):
                return None
            return rows

        rows = await wait_until(settled, what="every destination settled m-1")
        _status, body = await console.call("GET", "/console/api/events/m-1/journey")
        assert body["messageId"] == "m-1"
        assert body["event"]["event"] == "Order Refunded"
        assert body["event"]["properties"]["note"] == "***"
    assert rows["good"]["state"] == "delivered"
    assert rows["good"]["plugin"] == "webhook"
    assert isinstance(rows["good"]["at"], float)
    flaky = rows["flaky"]
    assert flaky["state"] == "retrying"
    assert flaky["status"] == 500
    assert flaky["body"].startswith("vendor overloaded: try later")
    assert flaky["attempts"] == 1
    assert flaky["next_at"] > flaky["at"]
    assert flaky["reason"] == "HTTP 500"
    strict = rows["strict"]
    assert strict["state"] == "dead_lettered"
    assert strict["status"] == 400
    assert "invalid email" in strict["body"]
    assert isinstance(strict["dlq_id"], int)
    assert rows["picky"] == {"destination": "picky", "plugin": "file", "state": "filtered",
                             "at": rows["picky"]["at"], "reason": "where"}  # fmt: skip
    assert rows["mapped"]["state"] == "dropped"
    assert rows["mapped"]["reason"] == "section refund: null payload"
    console.assert_no_secret()


async def test_unknown_and_queued_events(tmp_path: Path) -> None:
    async with running(tmp_path) as (app, console, _vendors):
        rows = await console.journey("never-seen")
        assert {r["state"] for r in rows.values()} == {"unknown"}
        status, body = await console.call("GET", "/console/api/events/never-seen/journey")
        assert body["event"] is None
        status, card = await console.call("POST", "/console/api/destinations/good/pause", {})
        assert status == 200
        assert card["state"] == "paused"
        assert card["pause_reason"] == "paused by operator"
        await post_events(console, [order("Signup", "m-q")])
        await wait_until(lambda: app[keys.CONSOLE].hub.find("m-q"))
        rows = await console.journey("m-q")
        assert rows["good"]["state"] == "queued"
        # not routed away: predicted from the event itself until the worker settles it
        assert rows["mapped"]["state"] in ("filtered", "queued")
        status, card = await console.call("POST", "/console/api/destinations/good/resume", {})
        assert card["state"] == "running"
        assert card["pause_reason"] is None

        async def delivered() -> bool:
            return (await console.journey("m-q"))["good"]["state"] == "delivered"

        await wait_until(delivered, what="delivered after resume")
        status, _ = await console.call("POST", "/console/api/destinations/nope/pause", {})
        assert status == 404


async def test_destination_cards(tmp_path: Path) -> None:
    async with running(tmp_path) as (_app, console, _vendors):
        await post_events(console, [order("Order Completed", f"m-{i}") for i in range(3)])

        async def cards() -> Any:
            status, body = await console.call("GET", "/console/api/destinations")
            assert status == 200
            by_id = {c["id"]: c for c in body["destinations"]}
            ready = by_id["good"]["delivered"] == 3 and by_id["flaky"]["last_errors"]
            return by_id if ready and by_id["strict"]["dead_letters"] == 3 else None

        by_id = await wait_until(cards, what="cards show the outcomes")
    assert set(by_id) == {"good", "flaky", "strict", "picky", "mapped", "cred"}
    good = by_id["good"]
    assert good["plugin"] == "webhook"
    assert good["state"] == "running"
    assert good["credentials_rejected"] is False
    assert len(good["throughput"]) == 60
    assert sum(b["delivered"] for b in good["throughput"]) == 3
    assert good["throughput"] == sorted(good["throughput"], key=lambda b: b["t"])
    for key in ("pending", "retrying", "dead_letters", "lag_seconds", "last_errors"):
        assert key in good
    flaky = by_id["flaky"]
    assert flaky["last_errors"][0]["status"] == 500
    assert "vendor overloaded" in flaky["last_errors"][0]["body"]
    assert sum(b["failed"] for b in flaky["throughput"]) >= 1
    assert by_id["strict"]["dead_letters"] == 3
    console.assert_no_secret()


async def test_probe_now_resumes_a_destination_paused_for_credentials(tmp_path: Path) -> None:
    async with running(tmp_path) as (app, console, vendors):
        status, body = await console.call("POST", "/console/api/destinations/good/probe", {})
        assert status == 200
        assert body["ok"] is True
        assert "nothing to probe" in body["message"]
        vendors["cred"].respond(401, "bad token")
        await post_events(console, [order("Signup", "m-c")])
        await wait_until(lambda: app[keys.WORKERS]["cred"].status()["credentials_rejected"])
        status, card = await console.call("GET", "/console/api/destinations")
        cred = {c["id"]: c for c in card["destinations"]}["cred"]
        assert cred["state"] == "paused"
        assert cred["credentials_rejected"] is True
        # the vendor takes the credentials again: a probe now resumes at once (no 5 s wait)
        vendors["cred"].respond(200)
        status, body = await console.call("POST", "/console/api/destinations/cred/probe", {})
        assert status == 200
        assert body["ok"] is True, body
        assert not app[keys.WORKERS]["cred"].status()["credentials_rejected"]

        async def delivered() -> bool:
            return (await console.journey("m-c"))["cred"]["state"] == "delivered"

        await wait_until(delivered)


async def test_dead_letters_filter_replay_and_purge(tmp_path: Path) -> None:
    async with running(tmp_path) as (_app, console, vendors):
        await post_events(console, [order("Order Completed", "m-a"), order("Signup", "m-b")])

        async def dead(query: str) -> Any:
            status, body = await console.call("GET", "/console/api/dlq" + query)
            assert status == 200
            return body

        await wait_until(lambda: _total(dead("?destination=strict"), 2))
        listing = await dead("?destination=strict")
        entry = listing["entries"][0]
        assert entry["destination"] == "strict"
        assert entry["status"] == 400
        assert "invalid email" in entry["body"]
        assert entry["messageId"] == "m-a"
        assert entry["type"] == "track"
        assert entry["event"]["messageId"] == "m-a"
        assert (await dead("?destination=strict&q=M-B"))["total"] == 1
        assert (await dead("?destination=strict&q=user-42"))["total"] == 2
        assert (await dead("?destination=strict&q=signup"))["total"] == 1
        assert (await dead("?destination=strict&reason=HTTP 400"))["total"] == 2
        assert (await dead("?destination=strict&reason=timeout"))["total"] == 0
        page = await dead("?destination=strict&q=user&limit=1&offset=1")
        assert page["total"] == 2
        assert [e["messageId"] for e in page["entries"]] == ["m-b"]
        status, _ = await console.call("POST", "/console/api/dlq/replay", {"destination": "strict"})
        assert status == 400
        status, _ = await console.call(
            "POST", "/console/api/dlq/replay", {"destination": "gone", "ids": [1]}
        )
        assert status == 404
        # the vendor is fixed: replay the ones matching a filter
        vendors["strict"].respond(200)
        status, job = await console.call(
            "POST", "/console/api/dlq/replay", {"destination": "strict", "filter": {"q": "m-a"}}
        )
        assert status == 202
        assert job["total"] == 1
        done = await wait_until(lambda: _finished(console, job["job"]))
        assert done == {"job": job["job"], "kind": "replay", "done": 1, "total": 1,
                        "finished": True, "error": None}  # fmt: skip

        async def delivered() -> bool:
            return (await console.journey("m-a"))["strict"]["state"] == "delivered"

        await wait_until(delivered, what="the replayed event was delivered")
        ids = [e["id"] for e in (await dead("?destination=strict"))["entries"]]
        assert len(ids) == 1
        status, job = await console.call(
            "POST", "/console/api/dlq/purge", {"destination": "strict", "ids": ids}
        )
        assert status == 202
        done = await wait_until(lambda: _finished(console, job["job"]))
        assert done["kind"] == "purge"
        assert done["done"] == 1
        assert (await dead("?destination=strict"))["total"] == 0
        status, _body = await console.call("GET", "/console/api/jobs/nope")
        assert status == 404
        console.assert_no_secret()


async def _total(listing: Any, count: int) -> bool:
    return (await listing)["total"] == count


async def _finished(console: Console, job_id: str) -> Any:
    status, body = await console.call("GET", f"/console/api/jobs/{job_id}")
    assert status == 200
    return body if body["finished"] else None


async def test_mapping_tester_with_overrides_and_toml(tmp_path: Path) -> None:
    async with running(tmp_path) as (_app, console, vendors):
        event = order("Order Completed", "m-t")
        status, body = await console.call(
            "POST",
            "/console/api/destinations/good/try",
            {"event": event, "overrides": {"email": "userId"}},
        )
        assert status == 200, body
        assert body["dropped"] is False
        assert body["payload"]["email"] == "user-42"
        assert body["payload"]["plan"] == "pro"  # the configuration's own override stays
        [request] = body["requests"]
        assert request["method"] == "POST"
        assert request["url"] == vendors["good"].url + "/good"
        assert request["headers"]["Authorization"] == "Bearer ***"
        assert request["body"]["email"] == "user-42"
        assert not vendors["good"].requests  # nothing was sent
        # without the override the field is gone: the answer changes with the override
        status, plain = await console.call(
            "POST", "/console/api/destinations/good/try", {"event": event}
        )
        assert "email" not in plain["payload"]
        # the snippet: the configuration's mapping table with the test override merged in
        snippet = body["toml"]
        assert tomllib.loads(snippet) == {
            "destinations": {"mapping": {"plan": "traits.plan", "email": "userId"}}
        }
        status, dropped = await console.call(
            "POST", "/console/api/destinations/mapped/try", {"event": order("Order Refunded", "x")}
        )
        assert status == 200
        assert dropped["dropped"] is True
        assert "section refund: null payload" in dropped["reason"]
        status, sections = await console.call(
            "POST",
            "/console/api/destinations/mapped/try",
            {"event": event, "overrides": {"order.total": "properties.total || `0`",
                                           "sections": {"refund": {"drop": True}}}},
        )  # fmt: skip
        assert status == 200, sections
        assert sections["payload"]["orderId"] == "A-1"
        assert sections["payload"]["total"] == 0
        assert "[destinations.mapping.sections.refund]" in sections["toml"]
        console.assert_no_secret()
    # crossdock check accepts the configuration with the snippet in place of the table
    urls = {name: "http://127.0.0.1:9" for name in ("good", "flaky", "strict", "cred")}
    checked = tmp_path / "checked.toml"
    checked.write_text(
        f'[server]\nadmin_token = "{ADMIN_TOKEN}"\n[queue]\npath = "q.db"\n'
        + config_text(urls, tmp_path, good_mapping=snippet)
    )
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "crossdock", "check", "-c", str(checked)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"email": "user[["}, "overrides.email: "),
        ({"email": 5}, "overrides.email: expected a JMESPath string"),
        ({"sections": {"refund": {"drop": "yes"}}}, "overrides.sections.refund.drop: "),
        ({"sections": {"refund": {"fields": {"x": "a[["}}}}, "overrides.sections.refund"),
        ({"dispatch": {"select": 3}}, "overrides.dispatch: "),
        ({"email": "nofunc(userId)"}, "overrides.email: "),
    ],
)
async def test_invalid_overrides_are_named(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    async with running(tmp_path) as (_app, console, _vendors):
        status, body = await console.call(
            "POST",
            "/console/api/destinations/mapped/try",
            {"event": order("Order Completed", "m"), "overrides": overrides},
        )
    assert status == 422, body
    assert body["code"] == "invalid_override"
    assert body["message"].startswith(message), body["message"]


async def test_tester_bad_bodies(tmp_path: Path) -> None:
    async with running(tmp_path) as (_app, console, _vendors):
        cases = [
            ("/console/api/destinations/good/try", {"overrides": {}}, 400, "invalid_body"),
            ("/console/api/destinations/good/try", {"event": [1]}, 400, "invalid_body"),
            ("/console/api/destinations/good/try", {"event": {}, "overrides": []}, 400,
             "invalid_body"),
            ("/console/api/destinations/nope/try", {"event": {}}, 404, "not_found"),
            ("/console/api/destinations/good/try", {"event": {"type": "track"}}, 422,
             "invalid_event"),
        ]  # fmt: skip
        for path, body, status, code in cases:
            got, answer = await console.call("POST", path, body)
            assert (got, answer["code"]) == (status, code), (path, body, answer)


async def test_send_requires_confirm_and_really_sends(tmp_path: Path) -> None:
    async with running(tmp_path) as (_app, console, vendors):
        event = order("Order Completed", "m-s")
        status, body = await console.call(
            "POST", "/console/api/destinations/good/send", {"event": event}
        )
        assert status == 400
        assert body["code"] == "confirm_required"
        status, body = await console.call(
            "POST", "/console/api/destinations/good/send", {"event": event, "confirm": "yes"}
        )
        assert status == 400
        assert not vendors["good"].requests
        status, body = await console.call(
            "POST",
            "/console/api/destinations/good/send",
            {"event": event, "overrides": {"email": "userId"}, "confirm": True},
        )
        assert status == 200, body
        assert body["outcome"] == "delivered"
        assert body["status"] == 200
        [sent] = vendors["good"].requests
        assert sent.json()["email"] == "user-42"
        assert sent.headers["Authorization"] == f"Bearer {VENDOR_TOKEN}"
        status, body = await console.call(
            "POST", "/console/api/destinations/strict/send", {"event": event, "confirm": True}
        )
        assert status == 200
        assert body["outcome"] == "rejected"
        assert body["status"] == 400
        assert "invalid email" in body["body"]
        console.assert_no_secret()


# ---------------------------------------------------------------------------------------------
# Fuzzing the tester body against a real daemon: always a precise answer, never a 5xx.


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Any:
    workdir = tmp_path_factory.mktemp("console-tester-fuzz")
    urls = {name: "http://127.0.0.1:9" for name in ("good", "flaky", "strict", "cred")}
    d = Daemon(config_text(urls, workdir), workdir).start()
    yield d
    d.kill()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)
EVENTS = st.fixed_dictionaries(
    {"type": st.sampled_from(["track", "identify", "page", "bogus", 3])},
    optional={"event": JSON, "userId": JSON, "properties": JSON, "messageId": JSON},
)
OVERRIDES = st.dictionaries(
    st.sampled_from(["email", "a.b", "sections", "dispatch", "", ".", "order.x", "x y"]),
    JSON | st.sampled_from(["userId", "a[[", "`1`", "", "length(@)"]),
    max_size=3,
)
BODIES = st.one_of(
    st.binary(max_size=200),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"event": EVENTS | JSON}, optional={"overrides": OVERRIDES | JSON}).map(
        lambda v: json.dumps(v).encode()
    ),
)


def _post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        headers = {"Content-Type": "application/json", **BEARER}
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=BODIES, destination=st.sampled_from(["good", "mapped", "picky"]))
def test_fuzz_tester_body(daemon: Daemon, body: bytes, destination: str) -> None:
    status, raw = _post(daemon.port, f"/console/api/destinations/{destination}/try", body)
    assert status in (200, 400, 422), (status, raw)
    answer = json.loads(raw)
    if status != 200:
        assert answer["success"] is False
        assert answer["code"]
        assert answer["message"]
    for secret in SECRETS:
        assert secret.encode() not in raw


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "destination: must be a non-empty string"),
        ({"destination": 3, "ids": [1]}, "destination: must be a non-empty string"),
        ({"destination": "strict"}, "give ids or filter (one of them)"),
        ({"destination": "strict", "ids": [1], "filter": {}}, "give ids or filter (one of them)"),
        ({"destination": "strict", "ids": ["1"]}, "ids: must be a list of integers"),
        ({"destination": "strict", "ids": [True]}, "ids: must be a list of integers"),
        ({"destination": "strict", "filter": []}, "filter: must be an object"),
        ({"destination": "strict", "filter": {"who": "x"}}, "filter.who: unknown key"),
        ({"destination": "strict", "filter": {"q": 1}}, "filter.q: must be a string"),
    ],
)
async def test_replay_and_purge_bodies_are_checked(
    tmp_path: Path, body: dict[str, Any], message: str
) -> None:
    async with running(tmp_path) as (_app, console, _vendors):
        for kind in ("replay", "purge"):
            status, answer = await console.call("POST", f"/console/api/dlq/{kind}", body)
            assert status == 400
            assert answer == {"success": False, "code": "invalid_body", "message": message}
        # not JSON at all
        async with console.session.post(
            console.url + "/console/api/dlq/replay",
            data=b"{nope",
            headers={"X-Crossdock-CSRF": console.csrf, "Content-Type": "application/json"},
        ) as r:
            assert r.status == 400
            assert (await r.json())["code"] == "invalid_json"


def test_credential_named_settings_are_masked_not_short_or_name_values() -> None:
    from crossdock.web.console.state import credential_values

    settings = {
        "headers": {"Authorization": "Bearer abcdefgh12345", "X-Api-Key": "k-0123456789",
                    "X-Auth-Mode": "json", "Accept": "application/json-long-value"},
        "token_header": "X-Crossdock-Token-Header",
        "api_key": "short",
    }  # fmt: skip
    found = {s.reveal() for s in credential_values([settings])}
    assert found == {"Bearer abcdefgh12345", "abcdefgh12345", "k-0123456789"}
