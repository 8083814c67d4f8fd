"""A whole-order refund (``Order Refunded`` with only ``order_id``, no product) cannot be a
Miso ``refund``, which needs ``product_ids``: it is dropped and counted under the named reason
``section refund_without_product_ids: null payload``, never dead-lettered. The mapping, the
real daemon (metrics, dead-letter queue, admin dry run) and ``crossdock test`` show it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

import crossdock_miso
from crossdock.testing.events import golden_event, track
from crossdock.testing.harness import DestinationHarness
from crossdock.testing.helpers import basic_auth, post_json, wait_until
from crossdock_miso.testing import FakeMiso

KEY = "sk_test_123456"
REASON = "section refund_without_product_ids: null payload"
SECTION = "refund_without_product_ids"
WRITE_KEY = "wk-miso-refund-0123456789"


def harness(**kwargs: Any) -> DestinationHarness:
    return DestinationHarness(crossdock_miso, {"api_key": KEY}, **kwargs)


@pytest.mark.parametrize(
    "properties",
    [
        {"order_id": "A-5521"},
        {"order_id": "A-5521", "total": 56.71, "currency": "EUR"},
        {"order_id": "A-5521", "products": []},
        {"order_id": "A-5521", "products": [{"name": "Mug", "price": 14.95}]},  # no id
        {"order_id": "A-5521", "product_id": ""},
    ],
)
def test_a_refund_without_product_ids_is_dropped_with_the_named_reason(
    properties: dict[str, Any],
) -> None:
    h = harness()
    refund = track("Order Refunded", properties)
    assert h.transform(refund) is None
    assert h.transformer.matches(refund) is True  # for Miso, so counted as dropped
    assert h.transformer.drop_reason(refund) == REASON


def test_a_refund_with_products_is_still_a_refund() -> None:
    h = harness()
    record = h.transform(golden_event("Order Refunded"))
    assert record["type"] == "refund"
    assert record["product_ids"] == ["507f1f77bcf86cd799439011", "505bd76785ebb509fc183733"]
    single = h.transform(track("Order Refunded", {"order_id": "A-1", "sku": 77}))
    assert (single["type"], single["product_ids"]) == ("refund", ["77"])


def test_an_event_an_operator_maps_to_refund_is_held_to_the_same_rule() -> None:
    h = harness(tables={"miso_events": {"Return Completed": "refund"}})
    assert h.transformer.drop_reason(track("Return Completed", {"order_id": "R-1"})) == REASON
    kept = h.transform(track("Return Completed", {"order_id": "R-1", "product_id": "p"}))
    assert kept["type"] == "refund"


def test_the_section_removes_every_common_field() -> None:
    """A common field the section kept would become the record's base and the event would be
    dropped as ``no type`` instead of under its own reason (see mapping.toml)."""
    spec = crossdock_miso.DESTINATION_TYPE.spec
    fields = spec.sections[SECTION].fields
    top = {key.split(".")[0] for key in spec.fields}
    assert {key for key, value in fields.items() if value == ""} == top
    assert fields["."] == "`null`"
    assert next(iter(spec.sections)) == SECTION  # tried before the track section


def test_an_operator_can_send_them_elsewhere_by_overriding_the_section() -> None:
    h = harness(mapping={"sections": {SECTION: {"drop": True}}})
    refund = track("Order Refunded", {"order_id": "A-1"})
    assert h.transformer.drop_reason(refund) == f"section {SECTION}: drop"  # filtered instead


CONFIG = """
[[sources]]
id = "web"
type = "segment"
write_keys = ["{write_key}"]

[[destinations]]
id = "miso"
plugin = "miso"
[destinations.settings]
api_key = "{key}"
base_url = "{base_url}"
[destinations.delivery]
max_wait_ms = 50
"""


async def test_the_daemon_counts_it_and_dead_letters_nothing(crossdock_daemon) -> None:
    async with FakeMiso(secret_keys=[KEY]) as miso:
        daemon = crossdock_daemon(CONFIG.format(write_key=WRITE_KEY, key=KEY, base_url=miso.url))
        refund = track("Order Refunded", {"order_id": "A-5521"})
        events = [refund, golden_event("Product Viewed")]
        async with aiohttp.ClientSession() as session:
            status, _ = await post_json(
                session, daemon.url + "/v1/batch", {"batch": events}, auth=basic_auth(WRITE_KEY)
            )
            assert status == 200
            await miso.wait_for(lambda m: len(m.records) >= 1, timeout=20)

            async def counted() -> bool:
                async with session.get(daemon.url + "/metrics") as response:
                    text = await response.text()
                return f'reason="{REASON}"}} 1' in text

            await wait_until(counted, what="the refund counted as dropped")
            async with session.get(
                daemon.url + "/admin/dlq?destination=miso", headers=daemon.admin_headers()
            ) as response:
                assert (await response.json())["entries"] == []
            async with session.post(
                daemon.url + "/admin/destinations/miso/dry-run",
                data=orjson.dumps(refund),
                headers=daemon.admin_headers(),
            ) as response:
                answer = await response.json()
        assert answer == {"dropped": True, "payload": None, "reason": REASON}
        assert [r["type"] for r in miso.records] == ["product_detail_page_view"]


def test_crossdock_test_names_the_reason(tmp_path: Path) -> None:
    config = tmp_path / "crossdock.toml"
    config.write_text(CONFIG.format(write_key=WRITE_KEY, key=KEY, base_url="http://127.0.0.1:9"))
    event = tmp_path / "refund.json"
    event.write_bytes(orjson.dumps(track("Order Refunded", {"order_id": "A-5521"})))
    command = [sys.executable, "-m", "crossdock", "test", "miso", "-c", str(config)]
    command += ["--event", str(event)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0  # every event dropped
    assert REASON in result.stdout + result.stderr
    allowed = subprocess.run([*command, "--allow-dropped"], capture_output=True, text=True,
                             timeout=60)  # fmt: skip
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert REASON in allowed.stdout
