"""The generated conformance suite every Crossdock destination must pass."""

from __future__ import annotations

import crossdock_productfruits
from crossdock.testing.contract import destination_contract_tests, sample_events
from crossdock.testing.fakes import Answer
from crossdock_productfruits.testing import DEFAULT_PATH, DEFAULT_SECRET, FakeProductFruits

# Page, screen, group and alias have no effect in Product Fruits: dropped on purpose.
DROPPED = [e["messageId"] for e in sample_events() if e["type"] not in ("identify", "track")]

TestProductFruitsContract = destination_contract_tests(
    crossdock_productfruits,
    settings={"webhook_url": "{fake_url}" + DEFAULT_PATH, "webhook_secret": DEFAULT_SECRET},
    fake_factory=FakeProductFruits,
    invalid_answer=Answer(400, {"error": "traits must be an object"}),
    expect_dropped=DROPPED,
)


def test_the_suite_drops_only_the_four_ignored_types() -> None:
    kinds = {e["type"] for e in sample_events() if e["messageId"] in DROPPED}
    assert kinds == {"page", "screen", "group", "alias"}
    assert len(DROPPED) == 4
