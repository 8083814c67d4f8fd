"""FakeMiso is as strict as contract §6: auth, path, body shape, per-record schema, atomicity."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from crossdock_miso.testing import BOT_BLOCKING, INVALID_KEY, SCHEMA_ERRORS, FakeMiso

KEY = "sk_test_123456"
OK = {"type": "product_detail_page_view", "user_id": "u", "product_ids": ["p"]}


async def post(
    fake: FakeMiso,
    body: Any,
    *,
    key: str | None = KEY,
    via: str = "header",
    path: str = "/v1/interactions",
    method: str = "POST",
) -> tuple[int, Any]:
    headers = {"X-API-KEY": key} if key and via == "header" else {}
    params = {"api_key": key} if key and via == "query" else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, fake.url + path, json=body, headers=headers, params=params
        ) as response,
    ):
        return response.status, await response.json(content_type=None)


async def test_valid_records_are_stored_with_either_auth_form() -> None:
    async with FakeMiso() as fake:
        assert await post(fake, {"data": [OK]}) == (200, {"message": "success"})
        assert await post(fake, {"data": [OK]}, via="query") == (200, {"message": "success"})
        assert fake.records == [OK, OK]


@pytest.mark.parametrize("key", [None, "sk_other_000000"])
async def test_missing_or_wrong_key_is_401(key: str | None) -> None:
    async with FakeMiso() as fake:
        assert await post(fake, {"data": [OK]}, key=key) == (401, INVALID_KEY)
        assert not fake.records


async def test_publishable_key_is_403_bot_blocking() -> None:
    async with FakeMiso() as fake:
        assert await post(fake, {"data": [OK]}, key="pk_test_123456") == (403, BOT_BLOCKING)


async def test_only_post_v1_interactions() -> None:
    async with FakeMiso() as fake:
        assert (await post(fake, {"data": [OK]}, path="/v1/interaction"))[0] == 404
        assert (await post(fake, {"data": [OK]}, method="PUT"))[0] == 405


@pytest.mark.parametrize("body", [[OK], {"records": [OK]}, {"data": OK}, "text"])
async def test_body_must_be_an_object_with_a_data_array(body: Any) -> None:
    async with FakeMiso() as fake:
        status, answer = await post(fake, body)
        assert status == 422
        assert answer["detail"][0]["loc"][0] == "body"


BAD: list[tuple[dict[str, Any], str]] = [
    ({"type": "view"}, "data.0.type is invalid."),
    ({"type": None}, "data.0.type is invalid."),
    ({"product_ids": "p"}, "data.0.product_ids is invalid."),
    ({"product_ids": [1]}, "data.0.product_ids is invalid."),
    ({"product_ids": ["p" * 513]}, "data.0.product_ids is invalid."),
    ({"product_group_ids": "g"}, "data.0.product_group_ids is invalid."),
    ({"user_id": "u" * 513}, "data.0.user_id is invalid."),
    ({"user_id": 5}, "data.0.user_id is invalid."),
    ({"anonymous_id": "a" * 1025}, "data.0.anonymous_id is invalid."),
    ({"timestamp": "2025-03-02 10:15"}, "data.0.timestamp is invalid."),
    ({"timestamp": "2025-03-02T10:15:00"}, "data.0.timestamp is invalid."),
    ({"timestamp": "2025-13-02T10:15:00Z"}, "data.0.timestamp is invalid."),
    ({"timestamp": 1700000000}, "data.0.timestamp is invalid."),
    ({"quantities": "2"}, "data.0.quantities is invalid."),
    ({"quantities": [1, 2]}, "data.0.quantities is invalid."),
    ({"quantities": ["1"]}, "data.0.quantities is invalid."),
    ({"revenue": "9.5"}, "data.0.revenue is invalid."),
    ({"duration": True}, "data.0.duration is invalid."),
    ({"rating": 5.5}, "data.0.rating is invalid."),
    ({"rating": "4"}, "data.0.rating is invalid."),
    ({"category": "Kitchen"}, "data.0.category is invalid."),
    ({"category": ["Kitchen", 3]}, "data.0.category is invalid."),
    ({"search": "mug"}, "data.0.search is invalid."),
    ({"search": {"filters": {}}}, "data.0.search is invalid."),
    ({"search": {"keywords": "m", "filters": {"c": "blue"}}}, "data.0.search.filters is invalid."),
    ({"type": "custom"}, "data.0.custom_action_name is invalid."),
    ({"context": {"page": {"title": "t"}}}, "data.0.context.page is invalid."),
    ({"context": {"truncated_ip": "2001:db8::"}}, "data.0.context.truncated_ip is invalid."),
    ({"context": "web"}, "data.0.context is invalid."),
    ({"user_id": None}, "data.0.user_id is invalid. neither user_id nor anonymous_id"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
async def test_each_schema_rule_fails_the_whole_request(
    change: dict[str, Any], message: str
) -> None:
    record = {k: v for k, v in {**OK, **change}.items() if v is not None}
    async with FakeMiso() as fake:
        status, answer = await post(fake, {"data": [record, OK]})
        assert status == 422
        assert answer["errors"] is True
        assert answer["message"] == SCHEMA_ERRORS
        assert any(m.startswith(message) for m in answer["data"]), answer["data"]
        assert all(m.startswith("data.0") for m in answer["data"])
        assert not fake.records  # atomic: nothing inserted


async def test_messages_name_every_bad_record_index() -> None:
    records = [OK, {**OK, "rating": 9}, OK, "nope", {**OK, "type": "x", "revenue": "1"}]
    async with FakeMiso() as fake:
        status, answer = await post(fake, {"data": records})
        assert status == 422
        assert [m.split(" ")[0] for m in answer["data"]] == [
            "data.1.rating", "data.3", "data.4.type", "data.4.revenue",
        ]  # fmt: skip


async def test_valid_variants_pass() -> None:
    records = [
        {**OK, "quantities": 2, "timestamp": "2025-03-02T10:15:00.073876Z"},
        {**OK, "product_ids": ["a", "b"], "quantities": [1, 2.5],
         "timestamp": "2025-03-02T10:15:00+02:00", "anonymous_id": "a"},
        {"type": "search", "anonymous_id": "a", "search": {"keywords": "m",
                                                            "filters": {"c": ["blue"]}}},
        {"type": "custom", "user_id": "u", "custom_action_name": "Signed Up"},
        {"type": "rate", "user_id": "u", "product_ids": ["p"], "rating": 0},
        {"type": "category_page_view", "user_id": "u", "category": ["A", "B"],
         "context": {"page": {"url": "https://x"}, "truncated_ip": "1.1.1.0"}},
    ]  # fmt: skip
    async with FakeMiso() as fake:
        assert await post(fake, {"data": records}) == (200, {"message": "success"})
        assert fake.records == records


async def test_failure_modes_switch_on_and_off() -> None:
    async with FakeMiso() as fake:
        fake.rate_limited(3)
        async with aiohttp.ClientSession() as session:
            url = fake.url + "/v1/interactions"
            async with session.post(url, json={"data": [OK]}, headers={"X-API-KEY": KEY}) as r:
                assert r.status == 429
                assert r.headers["Retry-After"] == "3"
        fake.failing()
        assert (await post(fake, {"data": [OK]}))[0] == 500
        fake.unavailable()
        assert (await post(fake, {"data": [OK]}))[0] == 503
        fake.healthy()
        assert (await post(fake, {"data": [OK]}))[0] == 200
        assert fake.records == [OK]
