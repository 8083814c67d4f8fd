"""Test kit: a strict fake of Hull's Firehose and signed Hull notifications.

:class:`FakeHullFirehose` enforces contract §7: only ``POST /``; the three connector headers
must match (401); the body needs a ``batch`` of entries plus ``timestamp`` and ``sentAt``
(400); each entry a known ``type``, an object ``body``, an ISO ``timestamp`` and a
``Hull-Access-Token`` JWT that verifies strictly (compact form, three canonical unpadded
base64url segments and nothing else, HS256, the signature segment exactly the connector
secret's, ``iss`` = connector id, ``iat``, a valid subject); ``track`` needs a user, a
non-empty ``event`` and object ``properties``; trait values cannot be nested objects
(operations excepted), at most 2,000 per entry. Accepted entries are recorded in
:attr:`~FakeHullFirehose.entries`, with the resolved identities, account links and ``event_id``
overwrites::

    async with FakeHullFirehose() as hull:
        ...  # firehose_url = hull.url
        await hull.wait_for(lambda f: len(f.entries) >= 2)

:func:`hull_notification` builds a ``user:update`` notification body carrying the connector
credentials, and :func:`notification_headers` the smart-notifier headers Hull sends with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

import orjson
from aiohttp import web
from attrs import define

from crossdock.testing.fakes import FakeVendor, RecordedRequest
from crossdock_hull import jwt

__all__ = [
    "CONNECTOR_ID",
    "CONNECTOR_SECRET",
    "ORGANIZATION",
    "FakeHullFirehose",
    "HullEntry",
    "hull_message",
    "hull_notification",
    "notification_headers",
    "strict_decode",
]

CONNECTOR_ID: Final = "5a7962e2793d3e942a03b29a"
CONNECTOR_SECRET: Final = "hull-connector-secret-0123456789"
ORGANIZATION: Final = "abc123.hullapp.io"

ENTRY_TYPES: Final = frozenset({"traits", "track", "alias", "unalias"})
OPERATIONS: Final = frozenset({"set", "setIfNull", "inc", "dec"})
MAX_ATTRIBUTES: Final = 2000
_SEGMENT: Final = re.compile(r"[A-Za-z0-9_-]+")
USER_CLAIMS: Final = ("id", "email", "external_id", "anonymous_id")
ACCOUNT_CLAIMS: Final = ("id", "external_id", "domain", "anonymous_id")


@define
class HullEntry:
    """One accepted Firehose entry: its type, body, timestamp and the verified JWT claims."""

    type: str
    body: dict[str, Any]
    timestamp: str
    claims: dict[str, Any]

    @property
    def subject(self) -> str:
        """``user`` or ``account``."""
        return str(self.claims["io.hull.subjectType"])

    @property
    def as_user(self) -> dict[str, Any] | None:
        """The user identity claims, if any."""
        return self.claims.get("io.hull.asUser")

    @property
    def as_account(self) -> dict[str, Any] | None:
        """The account identity claims, if any."""
        return self.claims.get("io.hull.asAccount")


def _claims_key(claims: Mapping[str, Any]) -> str:
    for name in ("external_id", "email", "id", "domain", "anonymous_id"):
        if claims.get(name):
            return f"{name}:{claims[name]}"
    return "?"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "message": message}, status=status)


def _iso(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _canonical_b64(segment: str) -> bytes:
    """Decode one base64url segment, refusing padding, stray characters and non-canonical
    trailing bits (so no two texts decode to the same bytes)."""
    if _SEGMENT.fullmatch(segment) is None or len(segment) % 4 == 1:
        msg = "malformed token"
        raise jwt.JwtError(msg)
    data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode() != segment:
        msg = "malformed token (non-canonical base64url)"
        raise jwt.JwtError(msg)
    return data


def strict_decode(token: str, secret: str) -> dict[str, Any]:
    """Verify an HS256 token as strictly as a careful server would, then return its claims.

    Exactly three canonical base64url segments; the header an object with ``alg`` HS256; the
    signature segment byte-for-byte the HMAC-SHA256 of ``header.claims`` under ``secret`` (junk
    appended, padding or altered spare bits all fail). Expiry is checked by :func:`jwt.decode`.
    """
    parts = token.split(".")
    if len(parts) != 3:
        msg = "malformed token"
        raise jwt.JwtError(msg)
    decoded = [_canonical_b64(part) for part in parts]
    try:
        header = orjson.loads(decoded[0])
    except orjson.JSONDecodeError:
        msg = "malformed token"
        raise jwt.JwtError(msg) from None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        msg = "token algorithm must be HS256"
        raise jwt.JwtError(msg)
    signing_input = f"{parts[0]}.{parts[1]}".encode()
    expected = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, decoded[2]):
        msg = "invalid token signature"
        raise jwt.JwtError(msg)
    return jwt.decode(token, secret)


class FakeHullFirehose(FakeVendor):
    """A strict fake of Hull's Firehose (see the module docstring).

    :attr:`entries` lists accepted entries in order; :attr:`users` maps a user key
    (``external_id:u-1``, else email, id, anonymous id) to the claims and traits seen;
    :attr:`accounts` the same for accounts; :attr:`links` maps a user key to the account key it
    belongs to (one account per user: a later link moves the user); :attr:`overwrites` counts
    ``track`` entries whose ``event_id`` was already stored. :meth:`unavailable` (503) and
    :meth:`failing` (500) switch on failures, :meth:`healthy` switches them off.
    """

    def __init__(
        self,
        *,
        connector_id: str = CONNECTOR_ID,
        connector_secret: str = CONNECTOR_SECRET,
        organization: str = ORGANIZATION,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.connector_id = connector_id
        self.connector_secret = connector_secret
        self.organization = organization
        self.entries: list[HullEntry] = []
        self.users: dict[str, dict[str, Any]] = {}
        self.accounts: dict[str, dict[str, Any]] = {}
        self.links: dict[str, str] = {}
        self.event_ids: set[str] = set()
        self.overwrites = 0

    def unavailable(self) -> None:
        """Answer 503 until :meth:`healthy`."""
        self.respond(503, {"error": "Service Unavailable"})

    def failing(self) -> None:
        """Answer 500 until :meth:`healthy`."""
        self.respond(500, {"error": "Internal Server Error"})

    def healthy(self) -> None:
        """Leave the failure modes."""
        self.respond(None)

    @property
    def events(self) -> list[HullEntry]:
        """The accepted ``track`` entries."""
        return [e for e in self.entries if e.type == "track"]

    # -- strictness -------------------------------------------------------------------------

    async def check(self, request: RecordedRequest) -> web.Response | None:
        if request.method != "POST" or request.path != "/":
            return _error(404 if request.method == "POST" else 405, "Not Found")
        headers = request.headers
        if (
            headers.get("Hull-App-Id") != self.connector_id
            or headers.get("Hull-Access-Token") != self.connector_secret
            or headers.get("Hull-Organization") != self.organization
        ):
            return _error(401, "Invalid Hull-App-Id, Hull-Access-Token or Hull-Organization")
        try:
            body = orjson.loads(request.content)
        except orjson.JSONDecodeError:
            return _error(400, "Invalid JSON body")
        problem = self._body_problem(body)
        if problem is not None:
            return _error(400, problem)
        return None

    def _body_problem(self, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "body must be an object"
        batch = body.get("batch")
        if not isinstance(batch, list) or not batch:
            return "batch must be a non-empty array"
        if not _iso(body.get("timestamp")) or not _iso(body.get("sentAt")):
            return "timestamp and sentAt must be ISO-8601 times"
        for index, entry in enumerate(batch):
            problem = self._entry_problem(entry)
            if problem is not None:
                return f"batch[{index}]: {problem}"
        return None

    def _entry_problem(self, entry: Any) -> str | None:
        if not isinstance(entry, dict):
            return "entry must be an object"
        kind = entry.get("type")
        if kind not in ENTRY_TYPES:
            return f"unknown type {kind!r}"
        body = entry.get("body")
        if not isinstance(body, dict):
            return "body must be an object"
        if not _iso(entry.get("timestamp")):
            return "timestamp must be an ISO-8601 time"
        headers = entry.get("headers")
        token = headers.get("Hull-Access-Token") if isinstance(headers, dict) else None
        if not isinstance(token, str):
            return "headers.Hull-Access-Token required"
        try:
            claims = strict_decode(token, self.connector_secret)
        except jwt.JwtError as exc:
            return f"Hull-Access-Token: {exc}"
        problem = _claims_problem(claims, self.connector_id)
        if problem is not None:
            return problem
        subject = claims["io.hull.subjectType"]
        if kind == "track":
            if subject != "user":
                return "track entries need a user subject"
            event = body.get("event")
            if not isinstance(event, str) or not event:
                return "track: event must be a non-empty string"
            if not isinstance(body.get("properties"), dict):
                return "track: properties must be an object"
        elif kind == "traits":
            if len(body) > MAX_ATTRIBUTES:
                return f"traits: more than {MAX_ATTRIBUTES} attributes"
            for name, value in body.items():
                if isinstance(value, dict) and value.get("operation") not in OPERATIONS:
                    return f"traits: {name} is a nested object"
        elif not isinstance(body.get("anonymous_id"), str) or subject != "user":
            return f"{kind}: body.anonymous_id and a user subject required"
        return None

    # -- recording --------------------------------------------------------------------------

    async def answer(self, request: RecordedRequest) -> web.Response:
        for raw in request.json()["batch"]:
            token = raw["headers"]["Hull-Access-Token"]
            entry = HullEntry(
                raw["type"], raw["body"], raw["timestamp"],
                strict_decode(token, self.connector_secret),
            )  # fmt: skip
            self._record(entry)
        return web.json_response({})

    def _record(self, entry: HullEntry) -> None:
        self.entries.append(entry)
        user = entry.as_user
        account = entry.as_account
        user_key = _claims_key(user) if user else None
        if user_key is not None and user is not None:
            record = self.users.setdefault(user_key, {"claims": {}, "traits": {}, "aliases": []})
            record["claims"].update(user)
        if entry.subject == "account" and account is not None:
            account_key = _claims_key(account)
            record = self.accounts.setdefault(account_key, {"claims": {}, "traits": {}})
            record["claims"].update(account)
            if entry.type == "traits":
                record["traits"].update(entry.body)
            if user_key is not None:
                self.links[user_key] = account_key
        elif user_key is not None:
            record = self.users[user_key]
            if entry.type == "traits":
                record["traits"].update(entry.body)
            elif entry.type == "alias":
                record["aliases"].append(entry.body["anonymous_id"])
            elif entry.type == "unalias" and entry.body["anonymous_id"] in record["aliases"]:
                record["aliases"].remove(entry.body["anonymous_id"])
        event_id = entry.body.get("event_id") if entry.type == "track" else None
        if isinstance(event_id, str):
            if event_id in self.event_ids:
                self.overwrites += 1
            self.event_ids.add(event_id)


def _claims_problem(claims: Mapping[str, Any], connector_id: str) -> str | None:
    if claims.get("iss") != connector_id:
        return "Hull-Access-Token: iss must be the connector id"
    if not isinstance(claims.get("iat"), int):
        return "Hull-Access-Token: iat required"
    subject = claims.get("io.hull.subjectType")
    if subject not in ("user", "account"):
        return "Hull-Access-Token: io.hull.subjectType must be user or account"
    as_user = claims.get("io.hull.asUser")
    as_account = claims.get("io.hull.asAccount")
    if subject == "user" and not _has_claim(as_user, USER_CLAIMS):
        return "Hull-Access-Token: io.hull.asUser needs id, email, external_id or anonymous_id"
    if subject == "account" and not _has_claim(as_account, ACCOUNT_CLAIMS):
        return "Hull-Access-Token: io.hull.asAccount needs id, external_id, domain or anonymous_id"
    if as_user is not None and not _has_claim(as_user, USER_CLAIMS):
        return "Hull-Access-Token: io.hull.asUser has no identity claim"
    return None


def _has_claim(value: Any, names: Iterable[str]) -> bool:
    return isinstance(value, dict) and any(
        isinstance(value.get(n), str) and value.get(n) for n in names
    )


# ---------------------------------------------------------------------------------------------
# Notifications


def hull_message(
    user: Mapping[str, Any],
    *,
    account: Mapping[str, Any] | None = None,
    segments: Iterable[Mapping[str, Any]] = (),
    account_segments: Iterable[Mapping[str, Any]] = (),
    changes: Mapping[str, Any] | None = None,
    events: Iterable[Mapping[str, Any]] = (),
    message_id: str | None = None,
) -> dict[str, Any]:
    """One ``user:update`` message shaped like Hull's (contract §4.2)."""
    segments = [dict(s) for s in segments]
    return {
        "user": {"segment_ids": [s["id"] for s in segments if "id" in s], **user},
        "account": dict(account or {}),
        "segments": segments,
        "account_segments": [dict(s) for s in account_segments],
        "changes": dict(
            changes
            or {"is_new": False, "user": {}, "account": {}, "segments": {}, "account_segments": {}}
        ),
        "events": [dict(e) for e in events],
        "message_id": message_id or str(uuid.uuid4()),
    }


def hull_notification(
    messages: Iterable[Mapping[str, Any]],
    *,
    secret: str = CONNECTOR_SECRET,
    connector_id: str = CONNECTOR_ID,
    organization: str = ORGANIZATION,
    channel: str = "user:update",
    notification_id: str | None = None,
) -> dict[str, Any]:
    """A notification body carrying the connector credentials (``configuration``), as Hull's
    smart notifier sends it to a connector."""
    messages = [dict(m) for m in messages]
    segments: dict[str, dict[str, Any]] = {}
    for message in messages:
        for segment in message.get("segments", []):
            segments.setdefault(segment.get("id", segment.get("name")), segment)
    return {
        "notification_id": notification_id or str(uuid.uuid4()),
        "configuration": {"id": connector_id, "organization": organization, "secret": secret},
        "connector": {"id": connector_id, "settings": {}, "private_settings": {}},
        "channel": channel,
        "messages": messages,
        "segments": list(segments.values()),
        "accounts_segments": [],
    }


def notification_headers(notification: Mapping[str, Any]) -> dict[str, str]:
    """The smart-notifier headers sent with ``notification`` (the RS256 signature itself is
    Hull's and cannot be produced here; the ``hull`` source authenticates by the connector
    secret in ``configuration``)."""
    return {
        "Content-Type": "application/json",
        "x-hull-smart-notifier": "true",
        "x-hull-smart-notifier-signature-version": "v1",
        "x-hull-smart-notifier-notification-id": str(notification.get("notification_id")),
    }
