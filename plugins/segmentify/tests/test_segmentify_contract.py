"""The generated conformance suite every Crossdock destination must pass."""

from __future__ import annotations

import crossdock_segmentify
from crossdock.testing.contract import destination_contract_tests
from crossdock.testing.events import golden_event
from crossdock.testing.fakes import Answer
from crossdock_segmentify.testing import DEFAULT_API_KEY, DEFAULT_ORIGIN, FakeSegmentify

TestSegmentifyContract = destination_contract_tests(
    crossdock_segmentify,
    settings={
        "api_key": DEFAULT_API_KEY,
        "data_center_url": "{fake_url}",
        "origin": DEFAULT_ORIGIN,
    },
    fake_factory=FakeSegmentify,
    name="segmentify",
    invalid_answer=Answer(
        400, {"statusCode": "INVALID_EVENT", "statusText": "unknown event / invalid fields"}
    ),
    # group calls have no Segmentify equivalent: dropped on purpose.
    expect_dropped=[golden_event("group")["messageId"]],
)
