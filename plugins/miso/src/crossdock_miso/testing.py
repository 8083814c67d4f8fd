"""``FakeMiso``: a strict fake of Miso's Interaction Upload API for tests (contract §6).

Built on :class:`crossdock.testing.fakes.FakeVendor`: a real aiohttp server on 127.0.0.1::

    async with FakeMiso() as miso:
        ...  # point a miso destination at base_url = miso.url, api_key = miso.secret_key
        await miso.wait_for(1)
        assert miso.records[0]["type"] == "checkout"

It answers like Miso: only ``POST /v1/interactions``; the key from the ``api_key`` query
parameter or the ``X-API-KEY`` header must be a configured secret key (else 401
``{"message": "invalid api key."}``; a publishable key gets Miso's 403 bot-blocking answer);
a body that is not ``{"data": [...]}`` gets FastAPI's 422 ``{"detail": [...]}``; a record that
breaks the schema makes the whole request fail with 422
``{"errors": true, "message": …, "data": ["data.<i>.<field> is invalid. …", …]}`` and nothing
is stored. Otherwise 200 ``{"message": "success"}`` and every record is appended to
:attr:`records`. :meth:`rate_limited`, :meth:`failing` and :meth:`unavailable` switch on 429
(with ``Retry-After``), 500 and 503; :meth:`healthy` switches them off.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from crossdock.testing.fakes import FakeVendor, RecordedRequest

from .schema import INTERACTION_TYPES, MAX_ANONYMOUS_ID, MAX_PRODUCT_ID, MAX_USER_ID

__all__ = [
    "BOT_BLOCKING",
    "INVALID_KEY",
    "SCHEMA_ERRORS",
    "FakeMiso",
    "invalid_answer",
    "record_messages",
]

PATH = "/v1/interactions"
INVALID_KEY = {"message": "invalid api key."}
BOT_BLOCKING = {
    "message": "Request is denied due to bot blocking. Please only access this API from a real "
    "browser or use Secret API Key instead."
}
SCHEMA_ERRORS = (
    "None of the records were inserted because at least one of them contained schema errors. "
    "Please see the `data` field for details."
)
_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$"
)


def invalid_answer(messages: Iterable[str] = ("data.0.type is invalid. 'x' is not valid",)) -> dict:
    """A scripted 422 in Miso's shape (for ``FakeVendor.script``)."""
    body = {"errors": True, "message": SCHEMA_ERRORS, "data": list(messages)}
    return {"status": 422, "body": body}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _date_time(value: Any) -> bool:
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    except ValueError:
        return False
    return True


def _ipv4(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def _short(value: Any) -> str:
    return orjson.dumps(value).decode()[:80]


def record_messages(record: Any) -> list[str]:
    """What Miso says about one record, as ``<field> is invalid. …`` (without ``data.<i>.``)."""
    if not isinstance(record, dict):
        return [f"is invalid. {_short(record)} is not of type 'object'"]
    out: list[str] = []

    def bad(field: str, why: str) -> None:
        out.append(f"{field} is invalid. {why}")

    kind = record.get("type")
    if "type" not in record:
        bad("type", "'type' is a required property")
    elif kind not in INTERACTION_TYPES:
        bad("type", f"{_short(kind)} is not one of the interaction types")
    for key in ("product_ids", "product_group_ids"):
        if key not in record:
            continue
        ids = record[key]
        if not _is_strings(ids):
            bad(key, f"{_short(ids)} is not of type 'array' of 'string'")
        elif any(len(i) > MAX_PRODUCT_ID for i in ids):
            bad(key, f"an item is longer than {MAX_PRODUCT_ID} characters")
    for key, limit in (("user_id", MAX_USER_ID), ("anonymous_id", MAX_ANONYMOUS_ID)):
        if key not in record:
            continue
        if not isinstance(record[key], str):
            bad(key, f"{_short(record[key])} is not of type 'string'")
        elif len(record[key]) > limit:
            bad(key, f"is longer than {limit} characters")
    if not isinstance(record.get("user_id"), str) and not isinstance(
        record.get("anonymous_id"), str
    ):
        bad("user_id", "neither user_id nor anonymous_id is given")
    if "timestamp" in record and not _date_time(record["timestamp"]):
        bad("timestamp", f"{_short(record['timestamp'])} should match the 'date-time' format")
    if "quantities" in record:
        quantities = record["quantities"]
        if isinstance(quantities, list):
            if not all(_is_number(q) for q in quantities):
                bad("quantities", f"{_short(quantities)} is not an array of numbers")
            elif len(quantities) != len(record.get("product_ids") or []):
                bad("quantities", "must have one quantity per product_ids item")
        elif not _is_number(quantities):
            bad("quantities", f"{_short(quantities)} is not of type 'number'")
    for key in ("revenue", "duration"):
        if key in record and not _is_number(record[key]):
            bad(key, f"{_short(record[key])} is not of type 'number'")
    if "rating" in record and not (_is_number(record["rating"]) and 0 <= record["rating"] <= 5):
        bad("rating", f"{_short(record['rating'])} is not a number in [0, 5]")
    if "category" in record and not _is_strings(record["category"]):
        bad("category", f"{_short(record['category'])} is not of type 'array' of 'string'")
    if "search" in record:
        search = record["search"]
        if not isinstance(search, dict) or not isinstance(search.get("keywords"), str):
            bad("search", "must be an object with a string 'keywords'")
        elif "filters" in search and not (
            isinstance(search["filters"], dict)
            and all(_is_strings(v) for v in search["filters"].values())
        ):
            bad("search.filters", "must be an object of arrays of strings")
    if kind == "custom" and not isinstance(record.get("custom_action_name"), str):
        bad("custom_action_name", "'custom_action_name' is a required property")
    if "context" in record:
        context = record["context"]
        if not isinstance(context, dict):
            bad("context", f"{_short(context)} is not of type 'object'")
        else:
            page = context.get("page")
            if page is not None and not (isinstance(page, dict) and "url" in page):
                bad("context.page", "'url' is a required property")
            if "truncated_ip" in context and not _ipv4(context["truncated_ip"]):
                bad("context.truncated_ip", f"{_short(context['truncated_ip'])} is not an 'ipv4'")
    return out


class FakeMiso(FakeVendor):
    """A strict fake of ``POST /v1/interactions`` (see the module docstring).

    ``secret_keys`` are accepted; ``publishable_keys`` get the 403 bot-blocking answer.
    :attr:`records` holds every stored record; :attr:`refused` the 422 bodies it answered.
    """

    def __init__(
        self,
        secret_keys: Iterable[str] = ("sk_test_123456",),
        publishable_keys: Iterable[str] = ("pk_test_123456",),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.secret_keys = set(secret_keys)
        self.publishable_keys = set(publishable_keys)
        self.records: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []

    @property
    def secret_key(self) -> str:
        """One accepted secret key (for settings)."""
        return sorted(self.secret_keys)[0]

    def rate_limited(self, seconds: int = 2) -> None:
        """Answer 429 with ``Retry-After`` until :meth:`healthy`."""
        self.respond(429, {"message": "Too Many Requests"}, {"Retry-After": str(seconds)})

    def failing(self) -> None:
        """Answer 500 until :meth:`healthy`."""
        self.respond(500, {"message": "Internal Server Error"})

    def unavailable(self) -> None:
        """Answer 503 until :meth:`healthy`."""
        self.respond(503, {"message": "Service Unavailable"})

    def healthy(self) -> None:
        """Leave the failure modes."""
        self.respond(None)

    def reset(self) -> None:
        """Forget requests, answers, stored records and refusals."""
        super().reset()
        self.records.clear()
        self.refused.clear()

    async def check(self, request: RecordedRequest) -> web.Response | None:
        if request.path != PATH:
            return web.json_response({"detail": "Not Found"}, status=404)
        if request.method != "POST":
            return web.json_response({"detail": "Method Not Allowed"}, status=405)
        key = request.query.get("api_key") or request.headers.get("X-API-KEY")
        if key in self.publishable_keys:
            return web.json_response(BOT_BLOCKING, status=403)
        if key not in self.secret_keys:
            return web.json_response(INVALID_KEY, status=401)
        try:
            body = orjson.loads(request.content)
        except orjson.JSONDecodeError:
            return _detail(["body"], "Expecting value: invalid JSON", "value_error.jsondecode")
        if not isinstance(body, dict):
            return _detail(["body"], "value is not a valid dict", "type_error.dict")
        if "data" not in body:
            return _detail(["body", "data"], "field required", "value_error.missing")
        if not isinstance(body["data"], list):
            return _detail(["body", "data"], "value is not a valid list", "type_error.list")
        messages = [
            f"data.{i}.{m}" if not m.startswith("is invalid") else f"data.{i} {m}"
            for i, record in enumerate(body["data"])
            for m in record_messages(record)
        ]
        if messages:
            answer = {"errors": True, "message": SCHEMA_ERRORS, "data": messages}
            self.refused.append(answer)
            return web.json_response(answer, status=422)
        return None

    async def answer(self, request: RecordedRequest) -> web.Response:
        self.records.extend(request.json()["data"])
        return web.json_response({"message": "success"})


def _detail(loc: list[Any], msg: str, type_: str) -> web.Response:
    return web.json_response({"detail": [{"loc": loc, "msg": msg, "type": type_}]}, status=422)
