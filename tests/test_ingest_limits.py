"""Ingest limits and client errors that must be a 4xx (issue 15, defects 4, 5, 6 and 9).

Unit checks of normalisation and parsing, then a real daemon with small ``[server.limits]``.
"""

from __future__ import annotations

import asyncio
import gzip
import re
from collections.abc import Iterator

import aiohttp
import orjson
import pytest

from crossdock.config.load import parse_config
from crossdock.errors import ConfigError, IngestError
from crossdock.ingest.body import parse_json
from crossdock.ingest.handler import check_depth
from crossdock.ingest.labels import IndexLabels
from crossdock.ingest.limits import DEFAULT_LIMITS, IngestLimits
from crossdock.ingest.normalize import normalize
from crossdock.plugins.registry import load_registry
from crossdock.testing.daemon import Daemon
from crossdock.testing.helpers import basic_auth, post_json, read_ndjson, wait_until
from crossdock.types import Ingested

WRITE_KEY = "wk-limits-0123456789"
AUTH = basic_auth(WRITE_KEY)
NOW = 1_790_000_000.0


def _normalize(*events: object, sent_at: str | None = None) -> None:
    ingested = Ingested(list(events), labels=IndexLabels(len(events), "batch"), sent_at=sent_at)
    normalize(ingested, source_id="web", received_at=NOW)


def _error(*events: object, sent_at: str | None = None) -> IngestError:
    with pytest.raises(IngestError) as info:
        _normalize(*events, sent_at=sent_at)
    assert info.value.status == 400
    return info.value


# -- defect 5: unhashable type, timestamps at the ends of the calendar ------------------------


@pytest.mark.parametrize("kind", [{}, [], {"a": 1}, ["track"], 1.5])
def test_type_that_is_not_a_string_is_a_400_naming_it(kind: object) -> None:
    good = {"type": "track", "event": "E", "userId": "u"}
    err = _error(good, {"type": kind, "userId": "u"})
    assert err.message.startswith("batch[1].type: must be one of")
    assert err.code == "unsupported_type"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timestamp", "0001-01-01T00:00:00+01:00"),
        ("timestamp", "9999-12-31T23:59:59-01:00"),
        ("timestamp", "9999-12-31T23:59:59.9999+00:00"),
        ("sentAt", "0001-01-01T00:30:00+05:00"),
        ("originalTimestamp", "9999-12-31T23:00:00-23:59"),
    ],
)
def test_time_outside_the_calendar_after_its_offset_is_a_400(field: str, value: str) -> None:
    event = {"type": "identify", "userId": "u", "timestamp": "2026-01-01T00:00:00Z", field: value}
    err = _error({"type": "identify", "userId": "u"}, event)
    assert err.message.startswith(f"batch[1].{field}: outside 0001-01-01 .. 9999-12-31")
    assert err.code == "invalid_timestamp"


def test_corrected_timestamp_outside_the_calendar_is_a_400() -> None:
    # Client clock at year 1, sent at 9999: the skew correction lands far outside any calendar.
    event = {
        "type": "identify",
        "userId": "u",
        "timestamp": "0001-01-02T00:00:00Z",
        "sentAt": "9999-12-30T00:00:00Z",
    }
    err = _error(event, {"type": "identify", "userId": "u"})
    assert err.message.startswith("batch[0].timestamp: outside 0001-01-01 .. 9999-12-31")


def test_times_at_the_ends_of_the_calendar_are_kept() -> None:
    event = {"type": "identify", "userId": "u", "timestamp": "0001-01-01T00:00:00Z"}
    ingested = Ingested([event, {**event, "timestamp": "9999-12-31T23:59:59.999Z"}])
    out = normalize(ingested, source_id="web", received_at=NOW).events
    assert [e["timestamp"] for e in out] == ["0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z"]


# -- defect 9: integers beyond 64 bits ----------------------------------------------------------


def test_integer_above_2_64_is_a_400_naming_its_path() -> None:
    body = b'{"batch": [{"a": 1}, {"properties": {"n": 18446744073709551616}}]}'
    with pytest.raises(IngestError) as info:
        parse_json(body)
    assert info.value.status == 400
    assert info.value.code == "integer_out_of_range"
    assert info.value.message.startswith("body.batch[1].properties.n: integer outside")


def test_integer_below_minus_2_63_is_refused() -> None:
    with pytest.raises(IngestError, match=r"integer_out_of_range: body\[0\]: integer outside"):
        parse_json(b"[-9223372036854775809]")


def test_integers_within_64_bits_and_long_digit_strings_are_kept_exact() -> None:
    body = b'{"u": 18446744073709551615, "i": -9223372036854775808, "s": "123456789012345678901"}'
    assert parse_json(body) == {
        "u": 2**64 - 1,
        "i": -(2**63),
        "s": "123456789012345678901",
    }
    # A float literal with many digits is a float as sent.
    assert parse_json(b"[1.00000000000000000000001, 100000000000000000000e-3]") is not None


def test_top_level_array_over_max_events_is_a_413_before_mapping() -> None:
    body = orjson.dumps([{}] * (DEFAULT_LIMITS.max_events + 1))
    with pytest.raises(IngestError) as info:
        parse_json(body)
    assert (info.value.status, info.value.code) == (413, "too_many_events")
    assert parse_json(orjson.dumps([{}] * DEFAULT_LIMITS.max_events))


# -- configuration ------------------------------------------------------------------------------


def test_limits_are_configured_under_server_limits() -> None:
    registry = load_registry(entrypoints=False)
    text = "[server.limits]\nmax_events = 10\nmax_concurrent = 3\nretry_after = 5\n"
    config = parse_config(text, registry, {})
    assert config.server.limits == IngestLimits(max_events=10, max_concurrent=3, retry_after=5)
    assert parse_config("", registry, {}).server.limits == DEFAULT_LIMITS


def test_limits_out_of_range_are_config_problems() -> None:
    registry = load_registry(entrypoints=False)
    with pytest.raises(ConfigError) as info:
        parse_config("[server.limits]\nmax_events = 0\nmax_concurrent = -1\n", registry, {})
    text = str(info.value)
    assert "server.limits.max_events" in text
    assert "server.limits.max_concurrent" in text


# -- the real daemon ----------------------------------------------------------------------------

CONFIG = f"""
[server.limits]
max_events = 10
max_concurrent = 2
retry_after = 7

[[sources]]
id = "web"
type = "segment"
write_keys = ["{WRITE_KEY}"]

[[sources]]
id = "hook"
type = "webhook"

[[sources]]
id = "sw"
type = "segment-webhook"

[[destinations]]
id = "out"
plugin = "file"
[destinations.settings]
path = "{{workdir}}/out.ndjson"
[destinations.delivery]
max_wait_ms = 20
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(CONFIG, tmp_path_factory.mktemp("limits")).start()
    yield d
    d.kill()


def _track(i: int) -> dict[str, object]:
    return {"type": "track", "event": "E", "userId": f"u{i}", "messageId": f"m-{i}"}


async def _metric(session: aiohttp.ClientSession, url: str, name: str, labels: str) -> float:
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    series = f"{name}{{{labels}}}" if labels else name
    found = re.search("^" + re.escape(series) + r" (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize(
    ("path", "body", "auth"),
    [
        ("/v1/batch", {"batch": [_track(i) for i in range(11)]}, AUTH),
        ("/hooks/hook", [_track(i) for i in range(11)], None),
        ("/hooks/segment", [_track(i) for i in range(11)], None),
    ],
)
async def test_events_per_request_are_capped_on_every_source(
    daemon: Daemon, path: str, body: object, auth: str | None
) -> None:
    source = {"/v1/batch": "web", "/hooks/hook": "hook", "/hooks/segment": "sw"}[path]
    labels = f'reason="too_many_events",source="{source}"'  # exposition sorts label names
    async with aiohttp.ClientSession() as session:
        before = await _metric(session, daemon.url, "crossdock_requests_rejected_total", labels)
        status, answer = await post_json(session, daemon.url + path, body, auth=auth)
        assert status == 413, answer
        assert answer["code"] == "too_many_events"
        assert (
            answer["message"] == "body: 11 events, more than 10 per request (send smaller batches)"
        )
        after = await _metric(session, daemon.url, "crossdock_requests_rejected_total", labels)
    assert after == before + 1


async def test_gzip_body_over_the_byte_limit_after_decompression_is_refused(daemon: Daemon) -> None:
    padding = "x" * (600 * 1024)
    data = gzip.compress(orjson.dumps({"batch": [{**_track(1), "properties": {"p": padding}}]}))
    headers = {"Content-Encoding": "gzip"}
    async with aiohttp.ClientSession() as session:
        status, answer = await post_json(
            session, daemon.url + "/v1/batch", data, auth=AUTH, headers=headers
        )
    assert status in (400, 413), answer
    assert answer["code"] == "too_large"


async def _hold_open(daemon: Daemon, path: str) -> asyncio.StreamWriter:
    """A request whose body never finishes: it holds one ingest slot until closed."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: 1000\r\n\r\n[".encode()
    )
    await writer.drain()
    return writer


async def test_concurrent_ingest_beyond_the_limit_is_a_503_with_retry_after(
    daemon: Daemon,
) -> None:
    labels = 'reason="overloaded",source="web"'  # exposition sorts label names
    async with aiohttp.ClientSession() as session:
        before = await _metric(session, daemon.url, "crossdock_requests_rejected_total", labels)
        held = [await _hold_open(daemon, "/hooks/hook"), await _hold_open(daemon, "/hooks/segment")]
        try:
            # The held requests are inside the handler once the gauge says so.
            await wait_until(
                lambda: _in_flight_is(session, daemon.url, 2), what="held requests in flight"
            )
            url = daemon.url + "/v1/batch"
            body = {"batch": [_track(100)]}
            async with session.post(
                url, data=orjson.dumps(body), headers={"Authorization": AUTH}
            ) as response:
                status, retry_after = response.status, response.headers.get("Retry-After")
                answer = await response.json()
        finally:
            for writer in held:
                writer.close()
        assert (status, retry_after, answer["code"]) == (503, "7", "overloaded")
        after = await _metric(session, daemon.url, "crossdock_requests_rejected_total", labels)
        assert after == before + 1
        # Slots are given back: the same request now succeeds.
        await wait_until(
            lambda: _in_flight_is(session, daemon.url, 0), what="held requests released"
        )
        status, answer = await post_json(session, url, body, auth=AUTH)
        assert status == 200, answer


async def _in_flight_is(session: aiohttp.ClientSession, url: str, count: int) -> bool:
    return await _metric(session, url, "crossdock_ingest_in_flight", "") == count


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("depth", [64, 253, 600, 1000])
async def test_event_too_deep_to_store_is_a_400_naming_it_and_nothing_is_stored(
    daemon: Daemon, depth: int
) -> None:
    # Defect 6: it used to be a 503 (retry) that could never succeed, blocking the batch.
    good, bad = _track(200 + depth), _track(300 + depth)
    deep = orjson.dumps(bad)[:-1] + b', "properties": ' + _nested(depth) + b"}"
    body = b'{"batch": [' + orjson.dumps(good) + b", " + deep + b"]}"
    async with aiohttp.ClientSession() as session:
        labels = 'source="web"'
        before = await _metric(session, daemon.url, "crossdock_events_received_total", labels)
        status, answer = await post_json(session, daemon.url + "/v1/batch", body, auth=AUTH)
        assert status == 400, answer
        assert answer["code"] == "too_deep"
        assert answer["message"] == "batch[1]: nested more than 64 levels deep"
        after = await _metric(session, daemon.url, "crossdock_events_received_total", labels)
        assert after == before
        # The client drops the bad event and the rest is stored.
        status, answer = await post_json(
            session, daemon.url + "/v1/batch", {"batch": [good]}, auth=AUTH
        )
        assert status == 200, answer
    out = daemon.workdir / "out.ndjson"
    await wait_until(
        lambda: any(e["messageId"] == f"m-{200 + depth}" for e in read_ndjson(out)),
        what="the good event delivered",
    )
    assert not any(e["messageId"] == f"m-{300 + depth}" for e in read_ndjson(out))


async def test_big_integer_through_the_daemon_is_a_400_naming_the_field(daemon: Daemon) -> None:
    body = b'[{"type": "track", "event": "E", "userId": "u", "properties": {"n": 1' + b"0" * 25
    body += b"}}]"
    async with aiohttp.ClientSession() as session:
        status, answer = await post_json(session, daemon.url + "/hooks/hook", body)
    assert status == 400, answer
    assert answer["code"] == "integer_out_of_range"
    assert answer["message"].startswith("body[0].properties.n: integer outside")


def _event_of_depth(depth: int) -> dict[str, object]:
    # The event object is level 1; each "a" object one more.
    value: object = 1
    for _ in range(depth - 1):
        value = {"a": value}
    return {"type": "track", "event": "E", "userId": "u", "properties": value}


@pytest.mark.parametrize("max_depth", [8, 64, 250])
def test_depth_limit_is_exact(max_depth: int) -> None:
    ok = _event_of_depth(max_depth)
    deep = _event_of_depth(max_depth + 1)
    ingested = Ingested([ok, ok], labels=IndexLabels(2, "batch"))
    check_depth(ingested.events, ingested, max_depth)
    ingested = Ingested([ok, deep], labels=IndexLabels(2, "batch"))
    with pytest.raises(IngestError) as info:
        check_depth(ingested.events, ingested, max_depth)
    assert (info.value.status, info.value.code) == (400, "too_deep")
    assert info.value.message == f"batch[1]: nested more than {max_depth} levels deep"


def test_the_gate_weighs_requests_by_body_bytes() -> None:
    """Memory follows body bytes: many small SDK batches run at once, large bodies queue; one
    request alone is always admitted; a chunked body counts as CHUNKED_WEIGHT."""
    from crossdock.ingest.limits import CHUNKED_WEIGHT, IngestGate

    gate = IngestGate(IngestLimits(max_concurrent=256, max_body_bytes_in_flight=1_000_000))
    small = [gate.enter(35_000) for _ in range(28)]
    assert all(w == 35_000 for w in small)
    assert gate.enter(35_000) is None  # 29 x 35 KB > 1 MB
    for weight in small:
        gate.leave(weight)
    assert (gate.in_flight, gate.bytes_in_flight) == (0, 0)
    alone = gate.enter(5_000_000)  # over the budget, but alone: its source's byte limit decides
    assert alone == 5_000_000
    assert gate.enter(10) is None
    gate.leave(alone)
    assert gate.enter(None) == CHUNKED_WEIGHT
    counted = IngestGate(IngestLimits(max_concurrent=2))
    assert counted.enter(1) is not None
    assert counted.enter(1) is not None
    assert counted.enter(1) is None
