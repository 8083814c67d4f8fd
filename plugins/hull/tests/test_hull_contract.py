"""The generated conformance suite for the ``hull`` destination, against the strict fake."""

from __future__ import annotations

import crossdock_hull
from crossdock.testing.contract import destination_contract_tests
from crossdock_hull.testing import (
    CONNECTOR_ID,
    CONNECTOR_SECRET,
    ORGANIZATION,
    FakeHullFirehose,
)

SETTINGS = {
    "organization": ORGANIZATION,
    "connector_id": CONNECTOR_ID,
    "connector_secret": CONNECTOR_SECRET,
    "firehose_url": "{fake_url}",
    "handle_groups": True,
}

TestHullDestinationContract = destination_contract_tests(
    crossdock_hull,
    settings=SETTINGS,
    fake_factory=FakeHullFirehose,
    name="hull",
)
