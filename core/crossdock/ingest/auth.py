"""Checking what a sender presents (keys, tokens, HMAC signatures) in constant time.

Public through :mod:`crossdock`. Every comparison runs over every candidate, so the time taken
tells nothing about which key or how much of it matched.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable

from aiohttp import web

__all__ = ["basic_user", "bearer_token", "secret_in", "signature_valid"]


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def secret_in(candidate: str | bytes, secrets: Iterable[str | bytes]) -> bool:
    """Whether ``candidate`` equals one of ``secrets``, comparing every one in constant time."""
    probe = _bytes(candidate)
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(probe, _bytes(secret))
    return found


def basic_user(request: web.Request) -> str | None:
    """The user name of an ``Authorization: Basic`` header (colon optional), or ``None``."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0]


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or ``None``."""
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def signature_valid(
    secret: str | bytes,
    signature: str | None,
    messages: Iterable[bytes],
    *,
    digest: str = "sha256",
) -> bool:
    """Whether ``signature`` is the hex HMAC (``digest``: ``sha1``, ``sha256``, …) of one of
    ``messages`` under ``secret``. Case and surrounding spaces of the hex are ignored; every
    message is checked, in constant time. A missing or empty signature is never valid."""
    if not signature:
        return False
    given = signature.strip().lower().encode()
    key = _bytes(secret)
    valid = False
    for message in messages:
        expected = hmac.new(key, message, digest).hexdigest().encode()
        valid |= hmac.compare_digest(given, expected)
    return valid
