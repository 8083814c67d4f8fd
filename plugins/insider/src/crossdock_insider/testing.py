"""``FakeInsider``: a strict local fake of Insider's Upsert User Data API, for tests.

Built on :class:`crossdock.testing.fakes.FakeVendor` (a real aiohttp server on 127.0.0.1).
It enforces the rules of ``contracts/insider.md`` §8 with Insider's statuses and error shapes::

    async with FakeInsider(partner_name="acme", request_token="tok") as fake:
        ...  # point the destination's base_url at fake.url
        assert fake.users[0]["identifiers"]["uuid"] == "u-1"

Request level (in this order): only ``POST /api/user/v1/upsert`` (else 404); ``X-PARTNER-NAME``
lower case and equal to ``partner_name`` (else 400 "Partner is invalid."); ``X-REQUEST-TOKEN``
equal to ``request_token`` (else 401 "Partner token authentication failed."); ``Content-Type:
application/json``; a body over 5,000,000 bytes, not JSON, without ``users``, or with more
than 1,000 users → 400 ``{"error": ...}``.

User level: every user is checked and the answer is **200** with ``successful.count`` and
``fail.count``/``fail.errors`` keyed ``users.<i>.<path>.<rule>`` (identifiers or insider_id;
identifier keys, uuid type, e-mail, E.164 phone; attributes not empty and typed, ``birthday``
ending in ``Z``, custom attributes under ``custom``; event names, RFC 3339 timestamps,
``purchase`` and ``cart_page_view`` required params, ``taxonomy`` an array of strings, typed
default params). Valid users land in :attr:`users`; refused ones in :attr:`failed_users`.

Switchable failures: :meth:`rate_limited` (429, ``Retry-After`` optional), :meth:`forbidden`
(403), :meth:`server_error` (500), :meth:`unavailable` (503); :meth:`healthy` ends them.

Stricter than Insider where it would silently accept data it then mis-files or ignores
(INFERRED from the contract's notes): an unknown root attribute, an unknown key in a user
object, and a default attribute or event param of the wrong type are refused here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from crossdock.testing.fakes import FakeVendor, RecordedRequest

__all__ = ["FakeInsider"]

UPSERT_PATH = "/api/user/v1/upsert"
MAX_BODY_BYTES = 5_000_000
MAX_USERS = 1000

PHONE_RULE = r"regexp(^\+[1-9]\d{6,14}$)"
PHONE_RE = re.compile(r"^\+[1-9]\d{6,14}$")
EMAIL_RE = re.compile(r"^.+@.+\..+$")
EVENT_NAME_RULE = "regexp(^[a-z0-9][a-zA-Z0-9._-]*$)"
# The contract says to treat any upper-case letter as invalid (the sample rejects homepageView).
EVENT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
RFC3339_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")

IDENTIFIER_KEYS = frozenset({"uuid", "email", "phone_number", "custom"})
USER_KEYS = frozenset({"identifiers", "insider_id", "attributes", "events", "not_append", "append"})
ENVELOPE_KEYS = frozenset({"users", "skip_hook", "error_callback_endpoint", "platform"})

_STRING, _NUMBER, _BOOL = "string", "number", "boolean"
DEFAULT_ATTRIBUTES: dict[str, str] = {
    "email": _STRING, "phone_number": _STRING, "name": _STRING, "surname": _STRING,
    "birthday": _STRING, "gender": _STRING, "age": _NUMBER, "language": _STRING,
    "country": _STRING, "city": _STRING, "gdpr_optin": _BOOL, "email_optin": _BOOL,
    "sms_optin": _BOOL, "whatsapp_optin": _BOOL, "static_segment_id": "number[]",
    "lo": _STRING, "custom": "object",
    # Accepted at the root by Segment's destination (INFERRED in the contract).
    "app_version": _STRING, "idfa": _STRING, "model": _STRING, "last_ip": _STRING,
    "carrier": _STRING, "os_version": _STRING, "platform": _STRING, "timezone": _STRING,
    "locale": _STRING,
}  # fmt: skip
DEFAULT_PARAMS: dict[str, str] = {
    "product_id": _STRING, "name": _STRING, "taxonomy": "string[]", "currency": _STRING,
    "unit_price": _NUMBER, "unit_sale_price": _NUMBER, "quantity": "integer",
    "event_group_id": _STRING, "url": _STRING, "product_image_url": _STRING,
    "variant_id": _NUMBER, "referrer": _STRING, "user_agent": _STRING, "session_id": _STRING,
    "locale": _STRING, "color": _STRING, "size": _STRING, "shipping_cost": _STRING,
    "promotion_name": _STRING, "promotion_discount": _NUMBER, "campaign_id": "any",
    "campaign_name": "any", "custom": "object",
}  # fmt: skip
Add = Callable[[str, str], None]
"""Records one error: ``add(key relative to the user, message)``."""

REQUIRED_PARAMS = {
    "purchase": ("event_group_id", "unit_sale_price", "currency", "quantity"),
    "cart_page_view": ("event_group_id", "unit_sale_price", "currency"),
}


class FakeInsider(FakeVendor):
    """A strict fake of ``POST /api/user/v1/upsert`` (see the module docstring)."""

    def __init__(
        self,
        partner_name: str = "acme",
        request_token: str = "ucd-test-token-0123456789",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.partner_name = partner_name
        self.request_token = request_token
        self.users: list[dict[str, Any]] = []
        self.failed_users: list[tuple[dict[str, Any], dict[str, list[str]]]] = []
        self.bodies: list[dict[str, Any]] = []

    # -- failure modes --------------------------------------------------------------------------

    def rate_limited(self, retry_after: int | None = None) -> None:
        """Answer 429 ``{"error": "rejected: too many requests"}`` until :meth:`healthy`."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        self.respond(429, {"error": "rejected: too many requests"}, headers)

    def forbidden(self) -> None:
        """Answer 403 ``{"error": "Invalid api key"}`` until :meth:`healthy`."""
        self.respond(403, {"error": "Invalid api key"})

    def server_error(self) -> None:
        """Answer 500 with Insider's unknown-error body until :meth:`healthy`."""
        self.respond(500, SERVER_ERROR)

    def unavailable(self) -> None:
        """Answer 503 until :meth:`healthy`."""
        self.respond(503, b"Service Unavailable")

    def healthy(self) -> None:
        """Leave the failure modes."""
        self.respond(None)

    # -- request checks -------------------------------------------------------------------------

    async def check(self, request: RecordedRequest) -> web.Response | None:
        """Request-level rules: route, partner, token, content type, size, envelope."""
        if request.path != UPSERT_PATH:
            return web.json_response({"error": "not found"}, status=404)
        if request.method != "POST":
            return web.json_response({"error": "method not allowed"}, status=405)
        partner = request.headers.get("X-PARTNER-NAME", "")
        if partner != partner.lower() or partner != self.partner_name or not partner:
            return web.json_response(PARTNER_INVALID, status=400)
        if request.headers.get("X-REQUEST-TOKEN", "") != self.request_token:
            return web.json_response(TOKEN_FAILED, status=401)
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return _bad("content type must be application/json: bad request")
        if len(request.content) > MAX_BODY_BYTES:
            return _bad("request body is bigger than maximum allowed size 5,000,000 bytes")
        try:
            body = orjson.loads(request.content)
        except orjson.JSONDecodeError:
            return _bad("invalid request body: bad request")
        if not isinstance(body, dict) or not isinstance(body.get("users"), list):
            return _bad(USERS_UNDEFINED)
        if not body["users"]:
            return _bad(USERS_UNDEFINED)
        if len(body["users"]) > MAX_USERS:
            return _bad(f"users must contain at most {MAX_USERS} items: bad request")
        if "skip_hook" in body and not isinstance(body["skip_hook"], bool):
            return _bad("skip_hook must be boolean: bad request")
        unknown = sorted(set(body) - ENVELOPE_KEYS)
        if unknown:
            return _bad(f"unknown field {unknown[0]}: bad request")
        return None

    async def answer(self, request: RecordedRequest) -> web.Response:
        """Validate every user; 200 with the successful and failed counts."""
        body = request.json()
        self.bodies.append(body)
        errors: dict[str, list[str]] = {}
        ok = 0
        for i, user in enumerate(body["users"]):
            found = validate_user(user)
            if found:
                prefixed = {f"users.{i}.{key}": messages for key, messages in found.items()}
                errors.update(prefixed)
                self.failed_users.append((user, prefixed))
            else:
                ok += 1
                self.users.append(user)
        failed = len(body["users"]) - ok
        data: dict[str, Any] = {
            "successful": {"count": ok} if ok else {},
            "fail": {"count": failed, "errors": errors} if failed else {},
        }
        return web.json_response({"data": data})

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event of the accepted users, in order."""
        return [e for u in self.users for e in u.get("events", [])]


PARTNER_INVALID = {"success": False, "message": "Partner is invalid."}
TOKEN_FAILED = {"success": False, "message": "Partner token authentication failed."}
SERVER_ERROR = {
    "success": False,
    "message": "The request processing has failed because of an unknown error.",
}
USERS_UNDEFINED = "users must be defined: bad request"


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


# ---------------------------------------------------------------------------------------------
# User validation: {"<path>.<rule>": [messages]} relative to the user


def validate_user(user: Any) -> dict[str, list[str]]:
    """Insider's per-user errors for one user object (empty: valid)."""
    errors: dict[str, list[str]] = {}

    def add(key: str, message: str) -> None:
        errors.setdefault(key, []).append(message)

    if not isinstance(user, dict):
        add("type", "user must be an object")
        return errors
    for key in sorted(set(user) - USER_KEYS):
        add(f"{key}.unknown", f"unknown user field: {key}")
    for flag in ("not_append", "append"):
        if flag in user and not isinstance(user[flag], bool):
            add(f"{flag}.boolean", f"{flag} must be boolean")
    identifiers, insider_id = user.get("identifiers"), user.get("insider_id")
    if not identifiers and not insider_id:
        add("identifiers.required", "either insider_id or idenifiers must be specified")
        add("insider_id.required", "either insider_id or idenifiers must be specified")
    if insider_id is not None and not isinstance(insider_id, str):
        add("insider_id.string", f"insider_id must be string: {insider_id}")
    if identifiers is not None:
        _check_identifiers(identifiers, add)
    has_attributes, has_events = "attributes" in user, "events" in user
    if not has_attributes and not has_events:
        add("attributes.required", "either attributes or events must be specified")
    if has_attributes:
        _check_attributes(user["attributes"], add)
    if has_events:
        _check_events(user["events"], add)
    return errors


def _check_identifiers(identifiers: Any, add: Add) -> None:
    if not isinstance(identifiers, dict):
        add("identifiers.object", "identifiers must be an object")
        return
    for key, value in identifiers.items():
        if key not in IDENTIFIER_KEYS:
            add("identifiers.*.oneof", "key must be one of phone_number(pn), email(em) or uuid")
        elif key == "uuid" and not isinstance(value, str):
            add("identifiers.uuid.string", f"uuid must be string: {value}")
        elif key == "email" and not (isinstance(value, str) and EMAIL_RE.match(value)):
            add("identifiers.email.email", f"not a valid email address: {value}")
        elif key == "phone_number" and not (isinstance(value, str) and PHONE_RE.match(value)):
            add(f"identifiers.*.{PHONE_RULE}", f"user has an invalid phone number: {value}")
        elif key == "custom":
            if not isinstance(value, dict) or not value:
                add("identifiers.custom.object", "custom identifiers must be a non-empty object")
            else:
                for name, item in value.items():
                    if not isinstance(item, str):
                        add(f"identifiers.custom.{name}.string", f"{name} must be string: {item}")


def _check_attributes(attributes: Any, add: Add) -> None:
    if not isinstance(attributes, dict) or not attributes:
        add("attributes.min", "attributes must hold at least one attribute")
        return
    for key, value in attributes.items():
        kind = DEFAULT_ATTRIBUTES.get(key)
        if kind is None:
            add(f"attributes.{key}.default", f"{key} is not a default attribute; use custom")
        elif not _typed(value, kind):
            add(f"attributes.{key}.{kind}", f"{key} must be {kind}: {value}")
        elif key == "birthday" and not (value.endswith("Z") and RFC3339_RE.match(value)):
            add("attributes.birthday.datetime", f"birthday must be RFC 3339 in UTC (Z): {value}")
        elif key == "phone_number" and not PHONE_RE.match(value):
            add(f"attributes.phone_number.{PHONE_RULE}", f"invalid phone number: {value}")
        elif key == "custom" and not value:
            add("attributes.custom.min", "custom must hold at least one attribute")


def _check_events(events: Any, add: Add) -> None:
    if not isinstance(events, list) or not events:
        add("events.array", "events must be a non-empty array")
        return
    for j, event in enumerate(events):
        at = f"events.{j}"
        if not isinstance(event, dict):
            add(f"{at}.object", "event must be an object")
            continue
        name = event.get("event_name")
        if not isinstance(name, str):
            add(f"{at}.event_name.required", "event_name is required")
        elif not EVENT_NAME_RE.match(name):
            add(f"{at}.event_name.{EVENT_NAME_RULE}", f"invalid event name: {name}")
        timestamp = event.get("timestamp")
        if timestamp is None:
            add(f"{at}.timestamp.required", "timestamp is required")
        elif not (isinstance(timestamp, str) and _rfc3339(timestamp)):
            add(f"{at}.timestamp.rfc3339", f"timestamp must be RFC 3339: {timestamp}")
        for key in sorted(set(event) - {"event_name", "timestamp", "event_params"}):
            add(f"{at}.{key}.unknown", f"unknown event field: {key}")
        params = event.get("event_params", {})
        if not isinstance(params, dict):
            add(f"{at}.event_params.object", "event_params must be an object")
            continue
        for key in REQUIRED_PARAMS.get(name, ()) if isinstance(name, str) else ():
            if params.get(key) is None:
                add(f"{at}.event_params.*.required", f"{key} parameter is required on {name} event")
        for key, value in params.items():
            kind = DEFAULT_PARAMS.get(key)
            if kind is None:
                add(f"{at}.event_params.{key}.default", f"{key} is not a default param; use custom")
            elif key == "taxonomy" and not _typed(value, kind):
                add(f"{at}.event_params.taxonomy.array", "taxonomy must be an array of strings")
            elif not _typed(value, kind):
                add(f"{at}.event_params.{key}.{kind}", f"{key} must be {kind}: {value}")


def _typed(value: Any, kind: str) -> bool:
    if kind == "any":
        return True
    if kind == _STRING:
        return isinstance(value, str)
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "string[]":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "number[]":
        return isinstance(value, list) and all(_typed(v, _NUMBER) for v in value)
    return False


def _rfc3339(text: str) -> bool:
    if not RFC3339_RE.match(text):
        return False
    try:
        datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    except ValueError:
        return False
    return True
