"""The ingest path of a ``hardal`` source: token, body shape, per-event errors, and a fuzz
(never a 5xx; a 200 only when what was accepted is stored)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crossdock_hardal
from crossdock.testing.source_harness import SourceHarness
from crossdock_hardal.testing import TOKEN, hardal_body

SOURCE = f"""
[[sources]]
id = "hardal"
type = "hardal"
token = "{TOKEN}"
"""

GOOD = orjson.loads(hardal_body("purchase", {"transaction_id": "A-1", "value": 3}, user_id="u"))


@pytest.mark.asyncio
@pytest.mark.parametrize("token", [None, "wrong-token", TOKEN + "x", ""])
async def test_a_missing_or_wrong_token_is_401_and_nothing_is_stored(token) -> None:
    async with SourceHarness(crossdock_hardal, SOURCE) as harness:
        status, body = await harness.post(GOOD, token=token)
        assert status == 401
        assert body["code"] == "unauthorized"
        assert "Bearer <token>" in body["message"]
        assert harness.stored == []


@pytest.mark.asyncio
async def test_the_token_in_the_query_string_is_not_accepted() -> None:
    async with SourceHarness(crossdock_hardal, SOURCE) as harness:
        status, _ = await harness.post(GOOD, path=f"/hooks/hardal?token={TOKEN}")
        assert status == 401


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"properties": {}}, "event_name: required (Hardal's ##event_name##)"),
        ({"event_name": ""}, "event_name: required (Hardal's ##event_name##)"),
        ({"event_name": "##event_name##"}, "event_name: required (Hardal's ##event_name##)"),
        ({"event_name": 7}, "event_name: must be a string"),
        ({"event_name": "x", "properties": "{not json"},
         "properties: must be an object or a string of a JSON object"),
        ({"event_name": "x", "properties": [1]},
         "properties: must be an object or a string of a JSON object"),
        ({"event_name": "x", "page": 3}, "page: must be an object or a string of a JSON object"),
        ({"event_name": "x", "user_id": {"a": 1}}, "user_id: must be a string or a number"),
        ({"event_name": "x", "created_at": "yesterday"},
         "created_at: must be an RFC 3339 time or epoch seconds"),
        (b'"purchase"', "body: must be a Hardal event (a JSON object) or an array of them"),
        (b"[]", "body: empty array"),
        (b"[1]", "[0]: must be a JSON object (a Hardal event)"),
    ],
)  # fmt: skip
async def test_a_body_that_is_not_hardals_is_a_precise_400(body, message) -> None:
    async with SourceHarness(crossdock_hardal, SOURCE) as harness:
        status, answer = await harness.post(body, token=TOKEN)
        assert (status, answer["message"]) == (400, message)
        assert harness.stored == []


@pytest.mark.asyncio
async def test_invalid_json_is_400() -> None:
    async with SourceHarness(crossdock_hardal, SOURCE) as harness:
        status, answer = await harness.post(b'{"event_name": ', token=TOKEN)
        assert status == 400
        assert answer["code"] == "invalid_json"


@pytest.mark.asyncio
async def test_one_bad_event_never_costs_the_others_in_the_same_request() -> None:
    login = orjson.loads(hardal_body("login", user_id="u-2", user={"email": "b@example.com"}))
    batch = [GOOD, {"event_name": "x", "created_at": "soon"}, login, "junk"]
    async with SourceHarness(crossdock_hardal, SOURCE) as harness:
        status, answer = await harness.post(batch, token=TOKEN)
        stored = [(e["type"], e.get("event")) for e in harness.stored]
    assert status == 200
    assert answer == {
        "success": True,
        "accepted": 2,
        "rejected": [
            {"index": 1, "message": "[1].created_at: must be an RFC 3339 time or epoch seconds"},
            {"index": 3, "message": "[3]: must be a JSON object (a Hardal event)"},
        ],
    }
    assert stored == [("track", "Order Completed"), ("identify", None), ("track", "Signed In")]


@pytest.mark.asyncio
async def test_a_mapping_override_giving_an_invalid_message_rejects_only_that_event() -> None:
    source = SOURCE + '[sources.mapping]\n"other.event" = "properties.label"\n'
    labelled = {"event_name": "custom", "session_id": "s", "properties": {"label": "Tagged"}}
    unlabelled = {"event_name": "custom", "session_id": "s"}
    async with SourceHarness(crossdock_hardal, source) as harness:
        status, answer = await harness.post([labelled, unlabelled], token=TOKEN)
        assert [e["event"] for e in harness.stored] == ["Tagged"]
    assert status == 200
    assert answer["rejected"] == [
        {"index": 1, "message": "[1]: mapped message event: must be a non-empty string"}
    ]


# -- fuzz -------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
names = st.sampled_from(
    ["purchase", "page_view", "view_item", "sign_up", "login", "identify", "refund", "x", ""]
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "event_name": names | json_values,
        "properties": json_values
        | st.dictionaries(
            st.sampled_from(["items", "value", "transaction_id", "item_id", "price", "step"]),
            json_values,
        ),
        "created_at": json_values
        | st.sampled_from(["2025-03-02T10:15:04", "2025-03-02T10:15:04Z", "0001-01-01T00:00:00"])
        | st.floats()
        | st.integers(),
        "user_id": json_values,
        "session_id": json_values,
        "page": json_values | st.fixed_dictionaries({}, optional={"url": json_values}),
        "user": json_values,
    },
)
bodies = fields | st.lists(fields | json_values, max_size=4) | json_values


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[SourceHarness, asyncio.AbstractEventLoop]]:
    """One harness for every fuzz example, on its own event loop in a thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    harness = SourceHarness(crossdock_hardal, SOURCE)
    asyncio.run_coroutine_threadsafe(harness.__aenter__(), loop).result(10)
    try:
        yield harness, loop
    finally:
        asyncio.run_coroutine_threadsafe(harness.__aexit__(None, None, None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies)
def test_fuzz_never_5xx_and_200_only_when_stored(served, body: Any) -> None:
    harness, loop = served
    before = len(harness.stored)
    data = json.dumps(body).encode()  # NaN/Infinity make invalid JSON: a 400 too
    post = harness.post(data, token=TOKEN)
    status, answer = asyncio.run_coroutine_threadsafe(post, loop).result(10)
    stored = len(harness.stored) - before
    assert status in (200, 400), (status, answer)
    if status == 400:
        assert stored == 0
        assert answer["message"]
        return
    accepted = answer["accepted"]
    count = len(body) if isinstance(body, list) else 1
    assert accepted + len(answer.get("rejected", [])) == count
    # every accepted event is stored (a sign-up or login as two messages); a resent one is
    # deduplicated by its messageId
    assert stored <= 2 * accepted
    assert answer["success"] is True
