"""The generated conformance suite every destination runs, against the strict FakeInsider."""

from __future__ import annotations

import crossdock_insider
from crossdock.testing.contract import destination_contract_tests, sample_events
from crossdock.testing.events import golden_events
from crossdock.testing.fakes import Answer
from crossdock_insider.testing import FakeInsider

SETTINGS = {
    "partner_name": "acme",
    "request_token": "ucd-test-token-0123456789",
    "base_url": "{fake_url}",
}

# page, screen, group and alias carry no attributes or events for Insider: dropped on purpose.
DROPPED = [e["messageId"] for e in golden_events().values() if e["type"] != "identify"
           and e["type"] != "track"]  # fmt: skip


# Cart Viewed carries no currency, which Insider requires on cart_page_view: without a default
# currency it is dead-lettered ("no currency"; test_insider_user_and_purchase.py), so it is no
# sample of what this destination sends.
EVENTS = [e for e in sample_events() if e.get("event") != "Cart Viewed"]


def invalid_at(index: int) -> Answer:
    """What Insider answers when user ``index`` is invalid: 200 with a per-user failure."""
    return Answer(
        200,
        {"data": {"successful": {}, "fail": {"count": 1, "errors": {
            f"users.{index}.events.0.event_name.regexp(^[a-z0-9][a-zA-Z0-9._-]*$)": [
                "invalid event name: homepageView"]}}}},
    )  # fmt: skip


INVALID = invalid_at(0)

TestInsiderContract = destination_contract_tests(
    crossdock_insider,
    settings=SETTINGS,
    fake_factory=FakeInsider,
    name="insider",
    invalid_answer=INVALID,
    invalid_at=invalid_at,
    events=EVENTS,
    expect_dropped=DROPPED,
)
