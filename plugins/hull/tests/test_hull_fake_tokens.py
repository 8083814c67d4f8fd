"""The Hull fake's token check is strict, and the tokens we send verify with PyJWT too."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import jwt as pyjwt
import pytest

import crossdock_hull
from crossdock.testing.events import golden_event
from crossdock.testing.harness import DestinationHarness
from crossdock_hull import jwt
from crossdock_hull.testing import (
    CONNECTOR_ID,
    CONNECTOR_SECRET,
    ORGANIZATION,
    FakeHullFirehose,
    strict_decode,
)

CLAIMS: dict[str, Any] = {
    "iss": CONNECTOR_ID,
    "iat": 1,
    "io.hull.subjectType": "user",
    "io.hull.asUser": {"external_id": "u"},
}
WRONG_SECRET = "not-the-connector-secret-0123456789"  # long enough for PyJWT
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def settings(url: str) -> dict[str, Any]:
    return {
        "organization": ORGANIZATION,
        "connector_id": CONNECTOR_ID,
        "connector_secret": CONNECTOR_SECRET,
        "firehose_url": url,
    }


def spare_bits_flipped(token: str) -> str:
    """The same signature bytes written with different (ignored) trailing bits."""
    last = token[-1]
    return token[:-1] + ALPHABET[ALPHABET.index(last) ^ 1]


def tampered(token: str) -> list[str]:
    return [token + "!!", token + "=", token + "A", token + ".", spare_bits_flipped(token)]


def test_strict_decode_refuses_junk_after_the_signature() -> None:
    """Defect 9: the old check (base64 decoding that skips stray characters) accepted a token
    with junk appended; the fake's own check refuses every variant."""
    token = pyjwt.encode(CLAIMS, CONNECTOR_SECRET, algorithm="HS256")
    assert strict_decode(token, CONNECTOR_SECRET) == CLAIMS
    for bad in tampered(token):
        with pytest.raises(jwt.JwtError):
            strict_decode(bad, CONNECTOR_SECRET)
    with pytest.raises(jwt.JwtError, match="signature"):
        strict_decode(pyjwt.encode(CLAIMS, WRONG_SECRET, algorithm="HS256"), CONNECTOR_SECRET)
    none_alg = pyjwt.encode(CLAIMS, None, algorithm="none")
    with pytest.raises(jwt.JwtError):
        strict_decode(none_alg, CONNECTOR_SECRET)
    expired = pyjwt.encode({**CLAIMS, "exp": 100}, CONNECTOR_SECRET, algorithm="HS256")
    with pytest.raises(jwt.JwtError, match="expired"):
        strict_decode(expired, CONNECTOR_SECRET)


async def test_fake_refuses_tampered_tokens_and_accepts_pyjwt_ones() -> None:
    headers = {
        "Hull-App-Id": CONNECTOR_ID,
        "Hull-Access-Token": CONNECTOR_SECRET,
        "Hull-Organization": ORGANIZATION,
    }
    token = pyjwt.encode(CLAIMS, CONNECTOR_SECRET, algorithm="HS256")

    def body(value: str) -> dict[str, Any]:
        entry = {
            "type": "track",
            "timestamp": "2025-03-02T10:15:04.120Z",
            "body": {"event": "X", "properties": {}},
            "headers": {"Hull-Access-Token": value},
        }
        return {
            "batch": [entry],
            "timestamp": "2025-03-02T10:15:05Z",
            "sentAt": "2025-03-02T10:15:05Z",
        }

    async with FakeHullFirehose() as fake, aiohttp.ClientSession() as session:
        for bad in tampered(token):
            async with session.post(fake.url, json=body(bad), headers=headers) as response:
                assert response.status == 400, bad
                assert "Hull-Access-Token" in (await response.json())["message"]
        assert fake.entries == []
        async with session.post(fake.url, json=body(token), headers=headers) as response:
            assert response.status == 200
        assert len(fake.entries) == 1


async def test_delivered_tokens_verify_with_pyjwt() -> None:
    """The deliverer's tokens, checked by an independent JWT library."""
    async with (
        FakeHullFirehose() as fake,
        DestinationHarness(crossdock_hull, settings(fake.url)) as h,
    ):
        await h.deliver([golden_event("identify"), golden_event("Order Completed")])
        entries = fake.requests[0].json()["batch"]
    assert entries
    for entry in entries:
        token = entry["headers"]["Hull-Access-Token"]
        assert pyjwt.get_unverified_header(token)["alg"] == "HS256"
        claims = pyjwt.decode(
            token,
            CONNECTOR_SECRET,
            algorithms=["HS256"],
            issuer=CONNECTOR_ID,
            options={"require": ["iss", "iat"]},
        )
        assert claims["iat"] <= time.time() + 5
        assert claims["io.hull.subjectType"] in ("user", "account")
        with pytest.raises(pyjwt.InvalidSignatureError):
            pyjwt.decode(token, WRONG_SECRET, algorithms=["HS256"])
