"""Unit checks of the strict shaping, the pre-send check and the mapping's JMESPath functions."""

from __future__ import annotations

from typing import Any

import pytest

from crossdock_miso.functions import (
    miso_category,
    miso_filters,
    miso_keywords,
    miso_rating,
    miso_truncated_ip,
)
from crossdock_miso.schema import INTERACTION_TYPES, problem, shape
from crossdock_miso.testing import record_messages


def test_the_29_interaction_types() -> None:
    assert len(INTERACTION_TYPES) == 29


@pytest.mark.parametrize("payload", [None, [], "x", {}, {"type": ""}, {"type": None}])
def test_no_type_means_dropped(payload: Any) -> None:
    assert shape(payload) is None


def test_shape_coerces_or_leaves_out_every_typed_field() -> None:
    record = shape(
        {
            "type": "checkout",
            "user_id": 42,
            "anonymous_id": "",
            "product_ids": "p-1",
            "product_group_ids": [None, 7, True, "g"],
            "quantities": 3,
            "revenue": "12.5",
            "duration": 5,
            "rating": 4,
            "category": ["x"],
            "search": {"keywords": "k"},
            "miso_id": None,
            "timestamp": 1700000000,
            "context": {
                "page": {"url": "https://x", "title": None},
                "campaign": {"name": "n", "id": "drop me", "term": 3},
                "truncated_ip": 1,
                "locale": "en",
                "custom_context": "nope",
            },
            "extra": "kept",
        }
    )
    assert record == {
        "type": "checkout",
        "user_id": "42",
        "product_ids": ["p-1"],
        "product_group_ids": ["7", "g"],
        "quantities": [3],
        "revenue": 12.5,
        "context": {
            "page": {"url": "https://x"},
            "campaign": {"name": "n"},
            "locale": "en",
        },
        "extra": "kept",
    }


def test_shape_unknown_type_keeps_fields_for_the_check_to_refuse() -> None:
    record = shape({"type": "view", "user_id": "u", "rating": "3"})
    assert record == {"type": "view", "user_id": "u", "rating": 3.0}
    assert problem(record) == "type 'view' is not a Miso interaction type"


def test_shape_search_filters_and_empty_leftovers() -> None:
    assert shape({"type": "search", "search": {"keywords": "k", "filters": {"c": ["b", 1]}}})[
        "search"
    ] == {"keywords": "k", "filters": {"c": ["b"]}}
    assert "search" not in shape({"type": "search", "search": {"filters": "x"}})
    assert "context" not in shape({"type": "search", "context": {"campaign": {"id": "x"}}})
    assert "context" not in shape({"type": "search", "context": "web"})


def test_quantities_must_be_parallel() -> None:
    assert "quantities" not in shape({"type": "add_to_cart", "quantities": [1]})
    assert "quantities" not in shape(
        {"type": "add_to_cart", "product_ids": ["a", "b"], "quantities": [1]}
    )
    parallel = shape({"type": "add_to_cart", "product_ids": ["a", "b"], "quantities": [-2, "x"]})
    assert parallel["quantities"] == [1, 1]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"type": "share", "user_id": "u", "product_ids": ["p"]}, None),
        ({"type": "share", "anonymous_id": "a", "product_group_ids": ["g"]}, None),
        ({"type": "home_page_view", "anonymous_id": "a"}, None),
        ("x", "a Miso record must be a JSON object"),
        ({"type": "share", "product_ids": ["p"]}, "neither user_id nor anonymous_id"),
        ({"type": "share", "user_id": "", "product_ids": ["p"]}, "neither user_id"),
        ({"type": "share", "anonymous_id": "a" * 1025, "product_ids": ["p"]}, "anonymous_id is"),
        ({"type": "refund", "user_id": "u"}, "no product_ids (refund needs"),
        ({"type": "custom", "user_id": "u"}, "custom needs custom_action_name"),
    ],
)
def test_problem(record: Any, expected: str | None) -> None:
    found = problem(record)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(expected)


def test_every_shaped_record_without_problem_passes_the_fake() -> None:
    record = shape(
        {
            "type": "checkout",
            "user_id": "u",
            "product_ids": ["a", 2],
            "quantities": ["2", 0],
            "revenue": "3",
            "timestamp": "2025-03-02T10:15:21.877Z",
            "context": {"page": {"url": "https://x"}, "truncated_ip": "1.2.3.0"},
        }
    )
    assert problem(record) is None
    assert record_messages(record) == []


def test_functions() -> None:
    assert miso_category("  A >  B / C ") == ["A", "B", "C"]
    assert miso_category([None, "", 1.0, 2.5, True]) == ["1", "2.5"]
    assert miso_category(5) is None
    assert miso_category(" ") is None
    assert miso_rating(True) is None
    assert miso_rating(float("nan")) is None
    assert miso_rating("inf") is None
    assert miso_keywords(["a", "b"]) == '["a","b"]'
    assert miso_keywords({}) is None
    assert miso_keywords(" ") is None
    assert miso_keywords(12) == "12"
    assert miso_filters({"color": ["blue", None], "size": 3, "": "x"}) == {
        "color": ["blue"],
        "size": ["3"],
    }
    assert miso_filters([{"type": "c"}, "junk"]) is None
    assert miso_filters("x") is None
    assert miso_truncated_ip(" 10.1.2.3 ") == "10.1.2.0"
    assert miso_truncated_ip("10.1.2") is None
    assert miso_truncated_ip(None) is None
