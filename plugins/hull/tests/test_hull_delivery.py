"""Per-event outcomes of the ``hull`` deliverer against the strict fake Firehose."""

from __future__ import annotations

from typing import Any

import pytest

import crossdock_hull
from crossdock import CredentialsRejected, Delivered, Rejected, RetryLater
from crossdock.testing.events import golden_event, identify, track
from crossdock.testing.harness import DestinationHarness
from crossdock_hull import jwt
from crossdock_hull.testing import (
    CONNECTOR_ID,
    CONNECTOR_SECRET,
    ORGANIZATION,
    FakeHullFirehose,
)


def settings(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "organization": ORGANIZATION,
        "connector_id": CONNECTOR_ID,
        "connector_secret": CONNECTOR_SECRET,
        "firehose_url": url,
        **extra,
    }


def events(count: int) -> list[dict[str, Any]]:
    return [track("Signed Up", userId=f"u-{i}", messageId=f"m-{i}") for i in range(count)]


async def test_success_delivers_every_event() -> None:
    async with (
        FakeHullFirehose() as fake,
        DestinationHarness(crossdock_hull, settings(fake.url)) as h,
    ):
        outcomes = await h.deliver(events(5))
        assert outcomes == [Delivered()] * 5
        assert [e.body["event_id"] for e in fake.events] == [f"m-{i}" for i in range(5)]
        assert len(fake.requests) == 1


async def test_invalid_entry_is_rejected_alone_with_hulls_reason() -> None:
    too_many = identify(userId="u-big", traits={f"a{i}": i for i in range(2001)})
    batch = [*events(3), too_many, *events(2)]
    async with (
        FakeHullFirehose() as fake,
        DestinationHarness(crossdock_hull, settings(fake.url)) as h,
    ):
        outcomes = await h.deliver(batch)
        assert [type(o) for o in outcomes] == [Delivered] * 3 + [Rejected] + [Delivered] * 2
        rejected = outcomes[3]
        assert isinstance(rejected, Rejected)
        assert rejected.status == 400
        assert rejected.reason == "Hull: batch[0]: traits: more than 2000 attributes"
        assert len(fake.events) == 5


async def test_duplicate_event_id_overwrites() -> None:
    event = track("Signed Up", userId="u-1", messageId="same")
    async with (
        FakeHullFirehose() as fake,
        DestinationHarness(crossdock_hull, settings(fake.url)) as h,
    ):
        await h.deliver([event])
        await h.deliver([event])
        assert fake.overwrites == 1


async def test_503_and_500_are_retried() -> None:
    async with (
        FakeHullFirehose() as fake,
        DestinationHarness(crossdock_hull, settings(fake.url)) as h,
    ):
        fake.unavailable()
        assert all(isinstance(o, RetryLater) for o in await h.deliver(events(2)))
        fake.failing()
        assert all(isinstance(o, RetryLater) for o in await h.deliver(events(2)))
        fake.healthy()
        assert await h.deliver(events(2)) == [Delivered()] * 2


async def test_429_is_retried_after_retry_after() -> None:
    async with (
        FakeHullFirehose() as fake,
        DestinationHarness(crossdock_hull, settings(fake.url)) as h,
    ):
        fake.script([{"status": 429, "headers": {"Retry-After": "3"}}])
        outcomes = await h.deliver(events(2))
        assert outcomes == [RetryLater("HTTP 429", 3.0, 429)] * 2


async def test_connection_refused_is_retried() -> None:
    async with DestinationHarness(crossdock_hull, settings("http://127.0.0.1:9")) as h:
        outcomes = await h.deliver(events(1))
        assert isinstance(outcomes[0], RetryLater)


async def test_wrong_secret_is_credentials_rejected_without_leaking_it() -> None:
    wrong = "wrong-secret-abcdef"
    async with (
        FakeHullFirehose() as fake,
        DestinationHarness(crossdock_hull, settings(fake.url, connector_secret=wrong)) as h,
    ):
        outcomes = await h.deliver(events(2))
        assert all(isinstance(o, CredentialsRejected) and o.status == 401 for o in outcomes)
        assert wrong not in repr(outcomes)
        assert not fake.entries


async def test_wrong_organization_is_credentials_rejected() -> None:
    async with (
        FakeHullFirehose() as fake,
        DestinationHarness(
            crossdock_hull, settings(fake.url, organization="other.hullapp.io")
        ) as h,
    ):
        outcomes = await h.deliver(events(1))
        assert isinstance(outcomes[0], CredentialsRejected)


async def test_wrong_url_pauses_instead_of_dead_lettering() -> None:
    async with (
        FakeHullFirehose() as fake,
        DestinationHarness(crossdock_hull, settings(fake.url + "/api/v1/firehose")) as h,
    ):
        outcomes = await h.deliver(events(1))
        assert outcomes == [
            CredentialsRejected("Hull: HTTP 404 (check organization and firehose_url)", 404)
        ]


async def test_tokens_are_signed_per_entry_with_the_connector_secret() -> None:
    async with (
        FakeHullFirehose() as fake,
        DestinationHarness(crossdock_hull, settings(fake.url)) as h,
    ):
        await h.deliver([golden_event("identify"), golden_event("Order Completed")])
        entries = fake.requests[0].json()["batch"]
        for entry in entries:
            claims = jwt.decode(entry["headers"]["Hull-Access-Token"], CONNECTOR_SECRET)
            assert claims["iss"] == CONNECTOR_ID


async def test_fake_refuses_badly_signed_tokens() -> None:
    entry = {
        "type": "track",
        "timestamp": "2025-03-02T10:15:04.120Z",
        "body": {"event": "X", "properties": {}},
        "headers": {"Hull-Access-Token": jwt.encode(
            {"iss": CONNECTOR_ID, "iat": 1, "io.hull.subjectType": "user",
             "io.hull.asUser": {"external_id": "u"}}, "not-the-secret")},
    }  # fmt: skip
    body = {"batch": [entry], "timestamp": "2025-03-02T10:15:05Z", "sentAt": "2025-03-02T10:15:05Z"}
    headers = {
        "Hull-App-Id": CONNECTOR_ID,
        "Hull-Access-Token": CONNECTOR_SECRET,
        "Hull-Organization": ORGANIZATION,
    }
    import aiohttp

    async with FakeHullFirehose() as fake, aiohttp.ClientSession() as session:
        async with session.post(fake.url, json=body, headers=headers) as response:
            assert response.status == 400
            assert "invalid token signature" in (await response.json())["message"]
        entry["headers"]["Hull-Access-Token"] = jwt.encode(
            {"iss": CONNECTOR_ID, "iat": 1, "io.hull.subjectType": "account",
             "io.hull.asUser": {"external_id": "u"}}, CONNECTOR_SECRET)  # fmt: skip
        async with session.post(fake.url, json=body, headers=headers) as response:
            assert response.status == 400
            assert "io.hull.asAccount" in (await response.json())["message"]
        async with session.post(fake.url, json={"batch": []}, headers=headers) as response:
            assert response.status == 400


def test_jwt_round_trip_and_expiry() -> None:
    token = jwt.encode({"a": 1, "exp": 100}, "s")
    assert jwt.decode(token, "s", now=50)["a"] == 1
    with pytest.raises(jwt.JwtError, match="expired"):
        jwt.decode(token, "s", now=150)
    with pytest.raises(jwt.JwtError, match="signature"):
        jwt.decode(token, "t", now=50)
    none_alg = "eyJhbGciOiJub25lIn0." + token.split(".")[1] + "."
    with pytest.raises(jwt.JwtError, match="HS256"):
        jwt.decode(none_alg, "s", now=50)


async def test_requests_stay_under_one_megabyte() -> None:
    big = [
        track("Big", userId=f"u-{i}", messageId=f"b-{i}", properties={"blob": "x" * 150_000})
        for i in range(12)
    ]
    async with (
        FakeHullFirehose() as fake,
        DestinationHarness(crossdock_hull, settings(fake.url)) as h,
    ):
        outcomes = await h.deliver(big)
        assert outcomes == [Delivered()] * 12
        assert len(fake.requests) > 1
        assert all(len(r.body) <= 1_000_000 for r in fake.requests)
