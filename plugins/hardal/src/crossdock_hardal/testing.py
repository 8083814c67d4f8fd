"""Test kit of the ``hardal`` source: Hardal's Custom API destination, played in tests.

:data:`BODY_TEMPLATE` is the request format the README tells operators to paste into Hardal
(tests check the README holds it verbatim). :func:`render` substitutes ``##name##`` variables
as Hardal does: a variable inside quotes becomes JSON string content, one outside quotes (only
``##properties##``) becomes JSON; a variable with no value becomes ``""`` (or ``{}`` outside
quotes). :func:`hardal_body` renders the template for one event, so tests post exactly what a
Hardal user's destination would.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

__all__ = ["BODY_TEMPLATE", "TOKEN", "hardal_body", "render"]

TOKEN: Final = "hardal-test-token-0123"
"""A source token for tests."""

BODY_TEMPLATE: Final = """{
  "event_name": "##event_name##",
  "properties": ##properties##,
  "created_at": "##created_at##",
  "user_id": "##user_id##",
  "session_id": "##session_id##",
  "page": {
    "url": "##page.url##",
    "title": "##page.title##",
    "referrer": "##page.referrer##"
  },
  "user": {
    "email": "##user.email##",
    "phone": "##user.phone##",
    "first_name": "##user.first_name##",
    "last_name": "##user.last_name##",
    "gender": "##user.gender##",
    "birthday": "##user.birthday##",
    "segments": "##user.segments##"
  }
}"""
"""The Custom API request format of the README (one destination for every event)."""

_VARIABLE: Final = re.compile(r'("?)##([A-Za-z0-9_.]+)##("?)')


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def render(template: str, variables: Mapping[str, Any]) -> bytes:
    """``template`` with each ``##name##`` replaced from ``variables`` (see the module
    docstring); the result is the request body Hardal would post."""

    def substitute(match: re.Match[str]) -> str:
        opening, name, closing = match.groups()
        value = variables.get(name)
        if opening and closing:
            return orjson.dumps(_text(value)).decode()
        inner = orjson.dumps(value if value is not None else {}).decode()
        return opening + inner + closing

    return _VARIABLE.sub(substitute, template).encode()


def hardal_body(
    event_name: str,
    properties: Mapping[str, Any] | None = None,
    *,
    created_at: str = "2025-03-02T10:15:04Z",
    user_id: str = "",
    session_id: str = "",
    page: Mapping[str, Any] | None = None,
    user: Mapping[str, Any] | None = None,
    template: str = BODY_TEMPLATE,
) -> bytes:
    """The body Hardal posts for one event with the README's template: an anonymous visitor
    has ``user_id=""``, absent page and user attributes are ``""``."""
    variables: dict[str, Any] = {
        "event_name": event_name,
        "properties": dict(properties or {}),
        "created_at": created_at,
        "user_id": user_id,
        "session_id": session_id,
    }
    for key, value in (page or {}).items():
        variables[f"page.{key}"] = value
    for key, value in (user or {}).items():
        variables[f"user.{key}"] = value
    return render(template, variables)
