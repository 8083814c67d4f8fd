"""JMESPath functions of the ``miso`` type, declared with it (:data:`FUNCTIONS`).

They are compiled into ``miso`` mappings only (the default one and operators' overrides).
Each one follows Crossdock's rule for extra functions: it never raises on data; a value it
cannot convert gives ``null`` (and the field is left out).
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Any

import orjson

import crossdock

__all__ = [
    "FUNCTIONS",
    "miso_category",
    "miso_filters",
    "miso_keywords",
    "miso_rating",
    "miso_truncated_ip",
]

_CATEGORY_SPLIT = re.compile(r"\s*[>/]\s*")


def _text(value: Any) -> str | None:
    """A non-empty string from a string or a number (booleans and the rest give None)."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else str(value)
    return None


def miso_category(value: Any) -> list[str] | None:
    """Miso's ``category`` (an array of strings, broad to narrow).

    ``"Home & Garden > Kitchen"`` and ``"Home & Garden/Kitchen"`` split into levels; an array
    keeps its string (or number) items.
    """
    if isinstance(value, str):
        levels = [part for part in _CATEGORY_SPLIT.split(value.strip()) if part]
        return levels or None
    if isinstance(value, list):
        levels = [t for t in (_text(v) for v in value) if t is not None]
        return levels or None
    return None


def miso_rating(value: Any) -> float | None:
    """A rating as a number clamped to Miso's [0, 5] (Segment's Spec types it as a string)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(min(5.0, max(0.0, value)))


def miso_keywords(value: Any) -> str | None:
    """Search keywords: a string as is, ``query.keywords`` of an object query, else JSON text."""
    if isinstance(value, dict):
        keywords = value.get("keywords")
        if isinstance(keywords, str):
            return keywords
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode() if value else None
    if isinstance(value, list):
        return orjson.dumps(value).decode() if value else None
    return _text(value)


def miso_filters(value: Any) -> dict[str, list[str]] | None:
    """Miso's ``search.filters`` (``{field: [value, ...]}``) from Segment's
    ``filters: [{type, value}]`` or from an object of values."""
    pairs: list[tuple[Any, Any]] = []
    if isinstance(value, list):
        pairs = [(f.get("type"), f.get("value")) for f in value if isinstance(f, dict)]
    elif isinstance(value, dict):
        pairs = list(value.items())
    out: dict[str, list[str]] = {}
    for name, raw in pairs:
        key = _text(name)
        if key is None:
            continue
        for item in raw if isinstance(raw, list) else [raw]:
            text = _text(item)
            if text is not None:
                out.setdefault(key, []).append(text)
    return out or None


def miso_truncated_ip(value: Any) -> str | None:
    """An IPv4 address with its last octet zeroed (``203.0.113.9`` → ``203.0.113.0``); Miso
    must not get the full IP. IPv6 and anything else give null."""
    if not isinstance(value, str):
        return None
    try:
        address = ipaddress.IPv4Address(value.strip())
    except ValueError:
        return None
    return str(ipaddress.IPv4Address(int(address) & 0xFFFFFF00))


FUNCTIONS: tuple[crossdock.JmesFunction, ...] = tuple(
    crossdock.JmesFunction.create(fn.__name__, fn, ["any"])
    for fn in (miso_category, miso_rating, miso_keywords, miso_filters, miso_truncated_ip)
)
"""The functions the ``miso`` type declares (``DestinationType(functions=FUNCTIONS)``)."""
