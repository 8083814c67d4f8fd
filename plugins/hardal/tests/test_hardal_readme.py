"""The README and the example are what a Hardal user follows: they must match the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import crossdock_hardal
from crossdock.testing.source_harness import SourceHarness
from crossdock_hardal.testing import BODY_TEMPLATE, TOKEN

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
README = (HERE.parent / "README.md").read_text(encoding="utf-8")
VARIABLES = ["##event_name##", "##properties##", "##created_at##", "##user_id##",
             "##session_id##", "##page.url##", "##page.title##", "##page.referrer##",
             "##user.email##"]  # fmt: skip


def test_readme_gives_the_exact_template_with_every_variable() -> None:
    assert f"```json\n{BODY_TEMPLATE}\n```" in README
    for variable in VARIABLES:
        assert variable in BODY_TEMPLATE
    for needle in ("/hooks/hardal", "`POST`", "`application/json`", "Authorization: Bearer"):
        assert needle in README


def test_example_config_passes_crossdock_check() -> None:
    env = {"HARDAL_TOKEN": "t", "SEGMENTIFY_API_KEY": "8f1c2d3e-4a5b-6c7d-8e9f-0a1b2c3d4e5f",
           "INSIDER_TOKEN": "i", "MISO_API_KEY": "m", "PATH": "/usr/bin:/bin"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "crossdock", "check", "-c", "examples/hardal-to-vendors.toml"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.asyncio
async def test_example_purchase_body_is_a_hardal_purchase() -> None:
    body = (ROOT / "examples/events/hardal_purchase.json").read_bytes()
    source = f'[[sources]]\nid = "hardal"\ntype = "hardal"\ntoken = "{TOKEN}"\n'
    async with SourceHarness(crossdock_hardal, source) as harness:
        status, answer = await harness.post(body, token=TOKEN)
        assert (status, answer) == (200, {"success": True, "accepted": 1})
        [order] = harness.stored
    assert order["event"] == "Order Completed"
    assert order["properties"]["order_id"] == orjson.loads(body)["properties"]["transaction_id"]
    assert order["properties"]["products"] == [
        {"product_id": "sku-77", "name": "Mug", "category": "Kitchen", "price": 24.95,
         "quantity": 2}
    ]  # fmt: skip
