"""End to end with the real ``crossdock`` process: discovery, the daemon delivering to the
fake through the segment source, and ``crossdock backfill`` turning ``skip_hook`` on."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import aiohttp
import orjson

from crossdock.testing.helpers import basic_auth, post_json, wait_until
from crossdock_insider.testing import FakeInsider

WRITE_KEY = "wk-insider-e2e-0123456789"
TOKEN = "ucd-test-token-0123456789"


def config(fake_url: str, extra: str = "") -> str:
    return f"""
[[sources]]
id = "web"
type = "segment"
write_keys = ["{WRITE_KEY}"]

[[destinations]]
id = "insider"
plugin = "insider"
[destinations.settings]
partner_name = "acme"
request_token = "{TOKEN}"
base_url = "{fake_url}"
not_append = true
[destinations.mapping]
"attributes.custom.plan" = "traits.plan"
[destinations.tables.event_names]
"Plan Renewed" = "renewal"
[destinations.delivery]
max_wait_ms = 50
{extra}
"""


def test_crossdock_plugins_lists_insider_with_its_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "crossdock", "plugins", "--json"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    [row] = [r for r in orjson.loads(out) if r["name"] == "insider"]
    assert row["distribution"] == "crossdock-insider"
    assert row["version"] == version("crossdock-insider")
    assert row["destination_types"] == ["insider"]
    assert row["status"] == "ok"
    assert "crossdock_make_transformer" in row["hooks"]


BATCH = {
    "batch": [
        {"type": "identify", "userId": "u-7", "messageId": "m-identify",
         "traits": {"email": "ana@example.com", "firstName": "Ana", "plan": "pro",
                    "phone": "+49 30 1234567"},
         "timestamp": "2025-03-02T10:15:03.901Z"},
        {"type": "track", "userId": "u-7", "messageId": "m-order", "event": "Order Completed",
         "properties": {"order_id": "A-5521", "currency": "EUR", "products": [
             {"product_id": "sku-77", "name": "Mug", "category": "Kitchen", "price": 24.95,
              "quantity": 2},
             {"product_id": "sku-78", "name": "Plate", "price": 19, "quantity": 1}]},
         "timestamp": "2025-03-02T10:15:04.120Z"},
        {"type": "track", "userId": "u-8", "messageId": "m-broken", "event": "Order Completed",
         "properties": {"order_id": "A-9", "currency": "EUR"},
         "timestamp": "2025-03-02T10:15:05Z"},
        {"type": "track", "userId": "u-9", "messageId": "m-no-currency",
         "event": "Order Completed", "properties": {"order_id": "A-10", "products": [
             {"product_id": "sku-77", "price": 24.95}]},
         "timestamp": "2025-03-02T10:15:05Z"},
        {"type": "track", "anonymousId": "a-1", "messageId": "m-renew", "event": "Plan Renewed",
         "timestamp": "2025-03-02T10:15:06Z"},
        {"type": "page", "userId": "u-7", "messageId": "m-page", "name": "Home"},
    ]
}  # fmt: skip

PURCHASE = {"event_name": "purchase", "timestamp": "2025-03-02T10:15:04Z"}
EXPECTED_USERS = [
    {
        "identifiers": {"uuid": "u-7", "email": "ana@example.com", "phone_number": "+49301234567"},
        "attributes": {"email": "ana@example.com", "phone_number": "+49301234567",
                       "name": "Ana", "custom": {"plan": "pro"}},
        "not_append": True,
    },
    {
        "identifiers": {"uuid": "u-7"},
        "events": [
            {**PURCHASE, "event_params": {
                "event_group_id": "A-5521", "product_id": "sku-77", "name": "Mug",
                "taxonomy": ["Kitchen"], "currency": "EUR", "unit_price": 24.95,
                "unit_sale_price": 24.95, "quantity": 2, "custom": {"order_id": "A-5521"}}},
            {**PURCHASE, "event_params": {
                "event_group_id": "A-5521", "product_id": "sku-78", "name": "Plate",
                "currency": "EUR", "unit_price": 19.0, "unit_sale_price": 19.0, "quantity": 1,
                "custom": {"order_id": "A-5521"}}},
        ],
        "not_append": True,
    },
    {
        "identifiers": {"custom": {"segment_anonymous_id": "a-1"}},
        "events": [{"event_name": "renewal", "timestamp": "2025-03-02T10:15:06Z"}],
        "not_append": True,
    },
]  # fmt: skip


async def test_daemon_delivers_exact_bodies_and_dead_letters_the_refused_event(
    crossdock_daemon,
) -> None:
    async with FakeInsider() as fake:
        daemon = crossdock_daemon(config(fake.url))
        async with aiohttp.ClientSession() as session:
            status, body = await post_json(
                session, daemon.url + "/v1/batch", BATCH, auth=basic_auth(WRITE_KEY)
            )
            assert (status, body) == (200, {"success": True})
            await wait_until(lambda: len(fake.users) + len(fake.failed_users) >= 4)
            # m-broken refused by Insider; m-no-currency dead-lettered before sending

            async def dead_letters():
                async with session.get(
                    daemon.url + "/admin/dlq?destination=insider", headers=daemon.admin_headers()
                ) as response:
                    return (await response.json())["entries"]

            async def both_dead_letters():
                entries = await dead_letters()
                return entries if len(entries) >= 2 else None

            entries = await wait_until(both_dead_letters, what="the two orders in the DLQ")

        users = sorted(fake.users, key=lambda u: orjson.dumps(u))
        assert users == sorted(EXPECTED_USERS, key=lambda u: orjson.dumps(u))
        for request in fake.requests:
            assert request.headers["X-PARTNER-NAME"] == "acme"
            assert request.headers["X-REQUEST-TOKEN"] == TOKEN
            assert "skip_hook" not in request.json()
        reasons = {e["event"]["messageId"]: e["reason"] for e in entries}
        assert reasons == {
            # no product: Insider refuses it (quantity defaults to 1, the currency is there)
            "m-broken": "Insider: unit_sale_price parameter is required on purchase event",
            # no currency and no default: never sent, never turned into USD
            "m-no-currency": "no currency",
        }
        assert [r.json()["users"] for r in fake.requests if "u-9" in str(r.json())] == []
        assert TOKEN not in daemon.log()


async def test_backfill_sends_with_skip_hook(tmp_path: Path) -> None:
    async with FakeInsider() as fake:
        (tmp_path / "crossdock.toml").write_text('[queue]\npath = "queue.db"\n' + config(fake.url))
        lines = [BATCH["batch"][0], BATCH["batch"][1]]
        (tmp_path / "events.ndjson").write_bytes(b"\n".join(orjson.dumps(e) for e in lines))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "crossdock", "backfill", "events.ndjson", "--to", "insider",
            "-c", "crossdock.toml", "--progress-every", "0",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, (stdout, stderr)
        assert b"skip_hook=True" in stderr
        assert fake.requests
        assert all(r.json()["skip_hook"] is True for r in fake.requests)
        assert sorted(u["identifiers"]["uuid"] for u in fake.users) == ["u-7", "u-7"]


def test_the_readme_example_config_passes_crossdock_check(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("## Example `crossdock.toml`", 1)[1].split("```toml\n", 1)[1]
    example = block.split("```", 1)[0]
    source = f'[[sources]]\nid = "web"\ntype = "segment"\nwrite_keys = ["{WRITE_KEY}"]\n\n'
    (tmp_path / "crossdock.toml").write_text(source + example)
    result = subprocess.run(
        [sys.executable, "-m", "crossdock", "check", "-c", "crossdock.toml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "INSIDER_TOKEN": TOKEN},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert TOKEN not in result.stdout + result.stderr


async def test_crossdock_test_send_shows_the_request_and_masks_the_token(tmp_path: Path) -> None:
    async with FakeInsider() as fake:
        (tmp_path / "crossdock.toml").write_text(config(fake.url))
        (tmp_path / "event.json").write_bytes(orjson.dumps(BATCH["batch"][1]))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "crossdock", "test", "insider", "--event", "event.json",
            "--send", "-c", "crossdock.toml",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, (stdout, stderr)
        assert [e["event_params"]["product_id"] for e in fake.events] == ["sku-77", "sku-78"]
    shown = stdout.decode()
    assert "/api/user/v1/upsert" in shown
    assert '"purchase"' in shown
    assert TOKEN not in shown + stderr.decode()


async def test_daemon_pauses_on_an_invalid_partner_and_dead_letters_nothing(
    crossdock_daemon,
) -> None:
    async with FakeInsider(partner_name="acme-shop") as fake:
        daemon = crossdock_daemon(config(fake.url))
        async with aiohttp.ClientSession() as session:
            batch = {"batch": BATCH["batch"][:2]}
            status, _ = await post_json(
                session, daemon.url + "/v1/batch", batch, auth=basic_auth(WRITE_KEY)
            )
            assert status == 200

            async def paused():
                async with session.get(
                    daemon.url + "/admin/destinations/insider", headers=daemon.admin_headers()
                ) as response:
                    body = await response.json()
                return body if body["paused"] else None

            state = await wait_until(paused, what="the destination paused")
            async with session.get(
                daemon.url + "/admin/dlq?destination=insider", headers=daemon.admin_headers()
            ) as response:
                assert (await response.json())["entries"] == []
        assert "Partner is invalid." in state["pause_reason"]
        assert state["dead_letters"] == 0
        assert state["pending"] + state["retrying"] + state["in_flight_events"] >= 2
        assert fake.users == []


def test_crossdock_check_notes_a_destination_without_a_default_currency(tmp_path: Path) -> None:
    def check(extra: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "crossdock.toml").write_text(config("https://insider.invalid", extra))
        return subprocess.run(
            [sys.executable, "-m", "crossdock", "check", "-c", "crossdock.toml"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )

    without = check("")
    assert without.returncode == 0, without.stdout + without.stderr
    assert (
        "note: destinations[0] (insider): no default currency ([destinations.tables.defaults] "
        "currency): cart_page_view and purchase events without a currency are dead-lettered "
        "(no currency)\n"
    ) in without.stdout
    with_default = check('[destinations.tables.defaults]\ncurrency = "EUR"\n')
    assert with_default.returncode == 0, with_default.stdout + with_default.stderr
    assert "note:" not in with_default.stdout
