"""The strict fake refuses what Product Fruits' webhook intake would (contract §6)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import aiohttp
import orjson
import pytest

from crossdock_productfruits.testing import DEFAULT_SECRET, FakeProductFruits

IDENTIFY = {"type": "identify", "userId": "u-1", "traits": {"email": "ana@example.com"}}


def signed(body: bytes, secret: str = DEFAULT_SECRET) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Signature": hmac.new(secret.encode(), body, hashlib.sha1).hexdigest(),
    }


async def post(url: str, body: bytes, headers: dict[str, str], method: str = "POST") -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=body, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


async def test_signed_message_is_accepted_and_matched() -> None:
    async with FakeProductFruits() as pf:
        body = orjson.dumps(IDENTIFY)
        assert await post(pf.webhook_url, body, signed(body)) == (200, {"success": True})
        assert pf.messages == [IDENTIFY]
        assert [m.how for m in pf.matches] == ["created"]
        assert pf.user(username="u-1").email == "ana@example.com"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Type": "application/json"}, 401),  # no signature
        ({"Content-Type": "application/json", "X-Signature": "0" * 40}, 401),
        (signed(orjson.dumps(IDENTIFY), "another-secret"), 401),
        ({**signed(orjson.dumps(IDENTIFY)), "Content-Type": "text/plain"}, 415),
    ],
)
async def test_unsigned_or_mis_signed_requests_are_refused(headers: dict, status: int) -> None:
    async with FakeProductFruits() as pf:
        code, answer = await post(pf.webhook_url, orjson.dumps(IDENTIFY), headers)
        assert code == status
        assert answer["error"]
        assert pf.messages == []
        assert pf.matches == []


async def test_signature_is_over_the_raw_bytes_not_a_reserialization() -> None:
    async with FakeProductFruits() as pf:
        pretty = orjson.dumps(IDENTIFY, option=orjson.OPT_INDENT_2)
        compact_signature = signed(orjson.dumps(IDENTIFY))
        assert (await post(pf.webhook_url, pretty, compact_signature))[0] == 401
        assert (await post(pf.webhook_url, pretty, signed(pretty)))[0] == 200


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ([IDENTIFY], "Expected one Segment message, got a batch"),
        ("identify", "Expected a JSON object"),
        ({"type": "delete", "userId": "u-1"}, "type must be one of"),
        ({"userId": "u-1"}, "type must be one of"),
        ({"type": "track", "userId": "u-1"}, "event is required for track"),
        ({"type": "identify", "userId": "u-1", "traits": "x"}, "traits must be an object"),
        ({"type": "track", "userId": 7, "event": "X"}, "userId must be a string"),
    ],
)
async def test_malformed_messages_are_400(message: Any, error: str) -> None:
    async with FakeProductFruits() as pf:
        body = orjson.dumps(message)
        code, answer = await post(pf.webhook_url, body, signed(body))
        assert code == 400
        assert answer["error"].startswith(error)
        assert pf.messages == []


async def test_invalid_json_is_400() -> None:
    async with FakeProductFruits() as pf:
        body = b"{not json"
        assert (await post(pf.webhook_url, body, signed(body)))[0] == 400


async def test_only_post_on_the_webhook_path() -> None:
    async with FakeProductFruits() as pf:
        body = orjson.dumps(IDENTIFY)
        assert (await post(pf.url + "/other", body, signed(body)))[0] == 404
        assert (await post(pf.webhook_url, body, signed(body), method="PUT"))[0] == 405


async def test_messages_without_user_or_email_are_accepted_but_unmatched() -> None:
    async with FakeProductFruits() as pf:
        message = {"type": "track", "anonymousId": "a-1", "event": "Report Exported"}
        body = orjson.dumps(message)
        assert (await post(pf.webhook_url, body, signed(body)))[0] == 200
        assert pf.unmatched == [message]
        assert pf.users == []


async def test_context_email_matches_on_track() -> None:
    async with FakeProductFruits() as pf:
        message = {"type": "track", "anonymousId": "a-1", "event": "Report Exported",
                   "context": {"traits": {"email": "ana@example.com"}}}  # fmt: skip
        body = orjson.dumps(message)
        for _ in range(2):
            await post(pf.webhook_url, body, signed(body))
        assert [m.how for m in pf.matches] == ["created", "email"]
        assert pf.user(email="ana@example.com").events == ["Report Exported"] * 2


async def test_other_types_are_accepted_and_ignored() -> None:
    async with FakeProductFruits() as pf:
        body = orjson.dumps({"type": "page", "userId": "u-1", "name": "Home"})
        assert (await post(pf.webhook_url, body, signed(body)))[0] == 200
        assert len(pf.messages) == 1
        assert pf.matches == []


async def test_failure_modes_come_after_the_signature_check() -> None:
    async with FakeProductFruits() as pf:
        body = orjson.dumps(IDENTIFY)
        pf.unavailable()
        assert (await post(pf.webhook_url, body, signed(body)))[0] == 503
        assert (await post(pf.webhook_url, body, signed(body, "bad")))[0] == 401
        pf.healthy()
        assert (await post(pf.webhook_url, body, signed(body)))[0] == 200
