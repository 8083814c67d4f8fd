"""The generated conformance suite every destination passes, against the strict FakeMiso."""

from __future__ import annotations

import crossdock_miso
from crossdock.testing.contract import destination_contract_tests
from crossdock.testing.events import golden_events
from crossdock_miso.schema import INTERACTION_TYPES
from crossdock_miso.testing import FakeMiso, invalid_answer

# Golden events with no Miso interaction in the default mapping: dropped on purpose.
DROPPED = (
    "account_created", "account_deleted", "alias", "cart_shared", "cart_viewed",
    "checkout_started", "checkout_step_completed", "checkout_step_viewed", "coupon_applied",
    "coupon_denied", "coupon_entered", "coupon_removed", "group", "identify",
    "order_cancelled", "order_updated", "page", "payment_info_entered",
    "product_list_filtered", "promotion_clicked", "promotion_viewed", "screen", "signed_in",
    "signed_out", "signed_up", "track", "trial_ended", "trial_started",
)  # fmt: skip

_GOLDEN = golden_events()

TestMisoContract = destination_contract_tests(
    crossdock_miso,
    settings={"api_key": "sk_test_123456", "base_url": "{fake_url}"},
    fake_factory=FakeMiso,
    name="miso",
    invalid_answer=invalid_answer(["data.0.product_ids is invalid. 'x' is not of type 'array'"]),
    invalid_at=lambda i: invalid_answer([f"data.{i}.product_ids is invalid. 'x' is not an array"]),
    expect_dropped=[_GOLDEN[name]["messageId"] for name in DROPPED],
)


def test_dropped_list_matches_the_golden_set() -> None:
    assert set(DROPPED) <= set(_GOLDEN)


def test_declared_limits() -> None:
    limits = crossdock_miso.DESTINATION_TYPE.limits
    assert limits.max_batch_count == 1000  # Miso advises <= ~10,000; short requests
    assert limits.max_batch_bytes == 4 * 1024 * 1024
    assert limits.max_event_bytes == 256 * 1024
    assert limits.rate_limit is None  # Miso publishes none


def test_mapping_is_package_data_with_its_tables_sections_and_functions() -> None:
    from crossdock import load_mapping_file

    mapping = load_mapping_file("crossdock_miso", functions=crossdock_miso.FUNCTIONS)
    assert mapping == crossdock_miso.DESTINATION_TYPE.spec
    assert set(mapping.tables) == {"miso_events", "miso_pages"}
    assert mapping.tables["miso_events"]["Order Completed"] == "checkout"
    assert list(mapping.sections) == ["refund_without_product_ids", "track", "page"]
    assert crossdock_miso.DESTINATION_TYPE.functions == crossdock_miso.FUNCTIONS


def test_every_default_table_entry_is_a_miso_interaction_type() -> None:
    tables = crossdock_miso.DESTINATION_TYPE.spec.tables
    types = {t for rows in tables.values() for t in rows.values()}
    assert types <= INTERACTION_TYPES
