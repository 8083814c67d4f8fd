"""The checks a source leaves to the core (``Ingested.unchecked_json``, ``max_event_bytes``),
made on the rows the handler serialized for storage: integers beyond 64 bits, one event's size.

They replace a pass over every byte of the body (integers) and a re-serialization of every
batch item (sizes); what must hold is that they refuse what the old checks refused whenever the
offending value is stored, and that their cheap tests never let such a value through.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from crossdock.ingest.handler import add_source_routes
from crossdock.ingest.limits import INT_MAX, INT_MIN
from crossdock.ingest.sources.segment import (
    MAX_EVENT_BYTES,
    SegmentIngestor,
    SegmentSourceSettings,
)
from crossdock.ingest.stored_checks import may_hold_big_float
from crossdock.metrics import Metrics
from crossdock.queue.sqlite import SqliteQueue
from crossdock.secrets import Secret
from crossdock.testing.source_harness import MemoryQueue
from crossdock.types import Source

KEY = "wk-stored-checks-0123"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}
BIG = 2**64  # one past what is kept exact


# ---------------------------------------------------------------------------------------------
# The cheap test for a lost integer


def _out_of_range() -> st.SearchStrategy[int]:
    # Beyond a double's range orjson refuses the body as invalid JSON (not this check's case).
    return st.one_of(
        st.integers(min_value=INT_MAX + 1, max_value=10**300),
        st.integers(min_value=-(10**300), max_value=INT_MIN - 1),
    )


def test_orjson_still_writes_every_float_past_1e16_in_exponent_form() -> None:
    """What the cheap test rests on: if an orjson release changed it, this fails first."""
    for value in (1e16, float(2**63), float(BIG), -float(2**63 + 2**11), 1e300, -1.5e19):
        assert may_hold_big_float(orjson.dumps({"n": value})), value
    assert orjson.loads(str(BIG).encode()) == float(BIG)  # not an int, not an error


@settings(max_examples=300, deadline=None)
@given(
    number=_out_of_range(),
    noise=st.text(alphabet="+e0123456789Ex .-", max_size=12),
    where=st.sampled_from(["properties", "context", "list", "top"]),
)
def test_a_lost_integer_always_shows_in_the_stored_json(
    number: int, noise: str, where: str
) -> None:
    body = {"type": "track", "event": "E", "userId": "u", "properties": {"text": noise}}
    raw = orjson.dumps(body)
    token = str(number).encode()
    if where == "properties":
        raw = raw.replace(b'"properties":{', b'"properties":{"n":' + token + b",")
    elif where == "context":
        raw = raw[:-1] + b',"context":{"a":{"b":' + token + b"}}}"
    elif where == "list":
        raw = raw[:-1] + b',"items":[1,"x",' + token + b"]}"
    else:
        raw = raw[:-1] + b',"n":' + token + b"}"
    stored = orjson.dumps(orjson.loads(raw))
    assert may_hold_big_float(stored)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.one_of(
            st.integers(min_value=INT_MIN, max_value=INT_MAX),
            st.floats(allow_nan=False, allow_infinity=False, max_value=9e15, min_value=-9e15),
            st.text(alphabet="+-e0123456789 abc", max_size=8).filter(lambda s: "e+" not in s),
            st.booleans(),
            st.none(),
        ),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
        max_leaves=12,
    )
)
def test_values_in_range_never_look_lost(value: Any) -> None:
    """No false alarm without an exponent: the exact check stays off the common path."""
    assert not may_hold_big_float(orjson.dumps({"v": value}))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"phone":"+15551234567"}', False),
        (b'{"q":"blue+shoe","n":1e+5}', True),
        (b'{"s":"2e+5"}', True),  # a string: the exact check then passes it
        (b"+e+", False),
        (b"1e+", True),
        (b'{"n":1.5E+20}', True),
        (b"", False),
    ],
)
def test_edges(data: bytes, expected: bool) -> None:
    assert may_hold_big_float(data) is expected


# ---------------------------------------------------------------------------------------------
# Through the core's handler, on both paths: serialized rows (SQLite) and plain events


@pytest_asyncio.fixture(params=["encoded", "plain"])
async def served(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[TestClient, Any]]:
    source = Source(
        id="web", type="segment", path=None, settings=SegmentSourceSettings([Secret(KEY)])
    )
    queue: Any = SqliteQueue(tmp_path / "q.db") if request.param == "encoded" else MemoryQueue()
    if request.param == "encoded":
        await queue.open(["d"])
    app = web.Application()
    add_source_routes(app, source, SegmentIngestor(source), queue, Metrics())
    client = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    try:
        yield client, queue
    finally:
        await client.close()
        if request.param == "encoded":
            await queue.close()


async def _stored(queue: Any) -> list[dict[str, Any]]:
    if isinstance(queue, MemoryQueue):
        return queue.events
    return [q.event for q in await queue.fetch("d", 1000, now=1e12)]


async def _post(client: TestClient, path: str, body: bytes) -> tuple[int, Any]:
    async with client.post(path, data=body, headers=AUTH) as resp:
        return resp.status, await resp.json()


def _item(i: int, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": "E", "userId": "u", "messageId": f"m{i}", **extra}


async def test_a_big_integer_in_a_batch_is_refused_naming_it(
    served: tuple[TestClient, Any],
) -> None:
    client, queue = served
    body = orjson.dumps({"batch": [_item(0), _item(1, properties={"n": 7})]})
    body = body.replace(b'"n":7', b'"n":' + str(BIG).encode())
    status, answer = await _post(client, "/v1/batch", body)
    assert status == 400, answer
    assert answer["code"] == "integer_out_of_range"
    assert answer["message"].startswith("body.batch[1].properties.n: integer outside")
    assert await _stored(queue) == []


async def test_a_big_integer_in_a_single_call_is_refused(served: tuple[TestClient, Any]) -> None:
    client, queue = served
    body = b'{"userId":"u","event":"E","properties":{"n":-' + str(BIG).encode() + b"}}"
    status, answer = await _post(client, "/v1/track", body)
    assert (status, answer["code"]) == (400, "integer_out_of_range"), answer
    assert await _stored(queue) == []


async def test_plus_signs_and_exponents_in_strings_pass(served: tuple[TestClient, Any]) -> None:
    client, queue = served
    props = {"phone": "+15551234567", "q": "blue+shoe", "code": "2e+5", "n": INT_MAX, "x": 1e20}
    body = orjson.dumps({"batch": [_item(0, properties=props)]})
    status, answer = await _post(client, "/v1/batch", body)
    assert status == 200, answer
    (event,) = await _stored(queue)
    assert event["properties"] == props


async def test_an_event_over_32_kib_is_refused_naming_it(served: tuple[TestClient, Any]) -> None:
    client, queue = served
    big = _item(1, properties={"p": "x" * MAX_EVENT_BYTES})
    body = orjson.dumps({"batch": [_item(0), big, _item(2)]})
    status, answer = await _post(client, "/v1/batch", body)
    assert (status, answer) == (
        400,
        {"success": False, "code": "too_large", "message": "batch[1]: larger than 32 KB"},
    )
    assert await _stored(queue) == []


async def test_an_event_just_under_32_kib_as_sent_is_stored(
    served: tuple[TestClient, Any],
) -> None:
    """Normalisation adds fields (receivedAt, context.crossdock, ...): the stored row may pass
    the limit where the event as sent does not, and it is still accepted."""
    client, queue = served
    item = _item(1, properties={"p": ""})
    item["properties"]["p"] = "x" * (MAX_EVENT_BYTES - len(orjson.dumps(item)))
    assert len(orjson.dumps(item)) == MAX_EVENT_BYTES
    body = orjson.dumps({"batch": [_item(0), item]})
    status, answer = await _post(client, "/v1/batch", body)
    assert status == 200, answer
    stored = await _stored(queue)
    assert [e["messageId"] for e in stored] == ["m0", "m1"]
    assert len(orjson.dumps(stored[1])) > MAX_EVENT_BYTES
