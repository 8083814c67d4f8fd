"""The generated conformance suite every destination runs, against the strict FakeInsider."""

from __future__ import annotations

import crossdock_insider
from crossdock.testing.contract import destination_contract_tests
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

# What Insider answers for an invalid user: 200 with a per-user failure.
INVALID = Answer(
    200,
    {"data": {"successful": {}, "fail": {"count": 1, "errors": {
        "users.0.events.0.event_name.regexp(^[a-z0-9][a-zA-Z0-9._-]*$)": [
            "invalid event name: homepageView"]}}}},
)  # fmt: skip

TestInsiderContract = destination_contract_tests(
    crossdock_insider,
    settings=SETTINGS,
    fake_factory=FakeInsider,
    name="insider",
    invalid_answer=INVALID,
    expect_dropped=DROPPED,
)
