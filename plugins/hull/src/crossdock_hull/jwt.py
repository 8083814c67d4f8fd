"""HS256 JSON Web Tokens, as Hull's Firehose uses for the per-entry identity claims.

Small on purpose: compact serialization, ``alg`` HS256 only, no other algorithm is accepted
when decoding (so ``alg: none`` or key-confusion tricks fail).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import orjson

_HEADER = (
    base64.urlsafe_b64encode(orjson.dumps({"typ": "JWT", "alg": "HS256"})).rstrip(b"=").decode()
)


class JwtError(ValueError):
    """A token that is malformed, not HS256, wrongly signed or outside its validity window."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        msg = "malformed token"
        raise JwtError(msg) from exc


def encode(claims: dict[str, Any], secret: str) -> str:
    """Sign ``claims`` with HS256 and ``secret``; return the compact token."""
    signing_input = f"{_HEADER}.{_b64(orjson.dumps(claims))}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def decode(token: str, secret: str, *, now: float | None = None) -> dict[str, Any]:
    """Verify an HS256 ``token`` with ``secret`` and return its claims.

    Checks ``exp`` and ``nbf`` when present. Raises :class:`JwtError` otherwise.
    """
    parts = token.split(".")
    if len(parts) != 3:
        msg = "malformed token"
        raise JwtError(msg)
    try:
        header = orjson.loads(_unb64(parts[0]))
        claims = orjson.loads(_unb64(parts[1]))
    except orjson.JSONDecodeError as exc:
        msg = "malformed token"
        raise JwtError(msg) from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        msg = "token algorithm must be HS256"
        raise JwtError(msg)
    expected = hmac.new(secret.encode(), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _unb64(parts[2])):
        msg = "invalid token signature"
        raise JwtError(msg)
    if not isinstance(claims, dict):
        msg = "token claims must be an object"
        raise JwtError(msg)
    moment = time.time() if now is None else now
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if exp is not None and (not isinstance(exp, int | float) or moment >= exp):
        msg = "token expired"
        raise JwtError(msg)
    if nbf is not None and (not isinstance(nbf, int | float) or moment < nbf):
        msg = "token not yet valid"
        raise JwtError(msg)
    return claims
