"""The JMESPath functions of the ``hull`` destination type (:data:`FUNCTIONS`), callable from its
mappings only: the default ``mapping.toml`` and operators' ``[destinations.mapping]`` overrides.

Each follows Crossdock's rule for mapping functions: never raise on data; a value that cannot be
converted gives ``null`` (the field is then left out).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import crossdock

__all__ = [
    "FUNCTIONS",
    "hull_attributes",
    "hull_claim",
    "hull_email",
    "hull_opted_out",
    "hull_properties",
]

RENAMED_TRAITS: Final[Mapping[str, str]] = {
    "firstname": "first_name",
    "lastname": "last_name",
    "createdat": "created_at",
}
"""Top-level trait names (compared lower-cased) Hull's Segment connector renames."""

DROPPED_TRAITS: Final = frozenset({"id", "external_id", "guest_id", "uniqToken", "visitToken"})
"""Top-level traits Hull's Segment connector never stores (they are identity, not data)."""

OPERATIONS: Final = frozenset({"set", "setIfNull", "inc", "dec"})
"""Operations a trait value may carry (``{"operation": "inc", "value": 1}``)."""

_EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def hull_opted_out(integrations: Any) -> bool:
    """Whether Segment ``integrations`` opt Hull out (``Hull: false``, or ``All: false`` without
    ``Hull: true``): the loop guard Hull's own Segment connector applies."""
    if not isinstance(integrations, dict):
        return False
    hull = integrations.get("Hull")
    if hull is False:
        return True
    return integrations.get("All") is False and not hull


def hull_attributes(traits: Any) -> dict[str, Any]:
    """Hull attributes from Segment traits (``{}`` for anything but an object): nulls dropped,
    nested objects flattened with ``/`` (``address.city`` → ``address/city``), operation objects
    kept, identity traits dropped and ``firstName``/``lastName``/``createdAt`` renamed (top level
    only)."""
    out: dict[str, Any] = {}
    if not isinstance(traits, dict):
        return out
    for key, value in traits.items():
        if key in DROPPED_TRAITS:
            continue
        _put(out, RENAMED_TRAITS.get(key.lower(), key), value)
    return out


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, dict):
        if value.get("operation") in OPERATIONS and "value" in value:
            out[key] = value
            return
        for sub, inner in value.items():
            _put(out, f"{key}/{sub}", inner)
        return
    out[key] = value


def hull_properties(properties: Any, name: Any = None) -> dict[str, Any]:
    """An event's properties (``{}`` for anything but an object), with ``name`` (a page's or
    screen's name) set when it is not null."""
    out = dict(properties) if isinstance(properties, dict) else {}
    if name is not None:
        out["name"] = name
    return out


def hull_claim(value: Any) -> str | None:
    """An identity claim (``external_id``, ``anonymous_id``, ``domain``): a non-empty string,
    else null (the claim is left out)."""
    return value if isinstance(value, str) and value else None


def hull_email(value: Any) -> str | None:
    """The ``email`` claim: trimmed and lower-cased, only when it looks like an email address."""
    if isinstance(value, str) and _EMAIL.match(value.strip()):
        return value.strip().lower()
    return None


FUNCTIONS: Final = (
    crossdock.JmesFunction.create("hull_opted_out", hull_opted_out, ["any"]),
    crossdock.JmesFunction.create("hull_attributes", hull_attributes, ["any"]),
    crossdock.JmesFunction.create("hull_properties", hull_properties, ["any", "any?"]),
    crossdock.JmesFunction.create("hull_claim", hull_claim, ["any"]),
    crossdock.JmesFunction.create("hull_email", hull_email, ["any"]),
)
"""Declared with the ``hull`` destination type (``DestinationType(functions=FUNCTIONS)``)."""
