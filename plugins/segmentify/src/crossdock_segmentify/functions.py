"""The JMESPath functions of the ``segmentify`` type (:data:`FUNCTIONS`), callable from its
mappings only: the default ``mapping.toml`` and operators' ``[destinations.mapping]`` overrides.

Each follows Crossdock's rule for mapping functions: never raise on data; a value that cannot be
converted gives ``null`` (the field is then left out).
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

import crossdock

__all__ = [
    "FUNCTIONS",
    "birth_date",
    "flat_params",
    "language",
    "operating_system",
    "product_list",
    "segments",
    "session_id",
    "string_id",
    "total_price",
]


def string_id(value: Any) -> str | None:
    """An id as Segmentify wants it: a non-empty string (numbers become text, ``7.0`` → ``"7"``)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def session_id(user: Any, timestamp: Any) -> str | None:
    """A stable session id for ``user`` on the UTC day of ``timestamp``.

    A decimal string like the ids Segmentify's key endpoint hands out: the first 63 bits of
    SHA-256 over the user id and the ``YYYY-MM-DD`` day (the whole text if it is not ISO 8601).
    """
    user_text = string_id(user)
    if user_text is None:
        return None
    day = timestamp[:10] if isinstance(timestamp, str) else ""
    digest = hashlib.sha256(f"{user_text}\n{day}".encode()).digest()
    return str(int.from_bytes(digest[:8], "big") >> 1)


def language(locale: Any) -> str | None:
    """The upper-case ISO 639-1 language of a locale: ``en-US`` → ``EN``, ``pt_BR`` → ``PT``."""
    if not isinstance(locale, str):
        return None
    match = re.match(r"\s*([A-Za-z]{2,3})(?:[-_]|$)", locale)
    return match.group(1).upper() if match else None


_OS_PATTERNS = (
    ("iOS", re.compile(r"iPhone|iPad|iPod")),
    ("Android", re.compile(r"Android")),
    ("Windows", re.compile(r"Windows")),
    ("Mac OS", re.compile(r"Macintosh|Mac OS X")),
    ("Chrome OS", re.compile(r"CrOS")),
    ("Linux", re.compile(r"Linux")),
)


def operating_system(name: Any, user_agent: Any) -> str | None:
    """``context.os.name`` when set, else the OS family read from the user agent."""
    if isinstance(name, str) and name:
        return name
    if isinstance(user_agent, str):
        for family, pattern in _OS_PATTERNS:
            if pattern.search(user_agent):
                return family
    return None


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            parsed = float(value.strip())
        except ValueError:
            return None
        return parsed if math.isfinite(parsed) else None
    return None


def product_list(products: Any) -> list[dict[str, Any]]:
    """Spec ``products[]`` → ``[{productId, price, quantity}]`` (``[]`` when there are none).

    ``productId`` is ``product_id``, else ``sku``; items without either are left out, and so
    are prices and quantities that are not numbers.
    """
    if not isinstance(products, list):
        return []
    out: list[dict[str, Any]] = []
    for product in products:
        if not isinstance(product, dict):
            continue
        pid = string_id(product.get("product_id")) or string_id(product.get("sku"))
        if pid is None:
            continue
        item: dict[str, Any] = {"productId": pid}
        price = _number(product.get("price"))
        if price is not None:
            item["price"] = price
        quantity = _number(product.get("quantity"))
        if quantity is not None:
            item["quantity"] = quantity
        out.append(item)
    return out


def total_price(products: Any) -> float | int | None:
    """Sum of price * quantity over Spec ``products[]`` (quantity 1 when absent); ``null`` without
    any priced product."""
    if not isinstance(products, list):
        return None
    total: float = 0
    priced = False
    for product in products:
        if not isinstance(product, dict):
            continue
        price = _number(product.get("price"))
        if price is None:
            continue
        quantity = _number(product.get("quantity"))
        total += price * (1 if quantity is None else quantity)
        priced = True
    if not priced:
        return None
    return round(total, 6)


def flat_params(properties: Any) -> dict[str, Any] | None:
    """``properties`` as a flat key/value map: nested objects become dotted keys
    (``{"a": {"b": 1}}`` → ``{"a.b": 1}``); arrays and scalars are kept; nulls left out."""
    if not isinstance(properties, dict):
        return None
    out: dict[str, Any] = {}

    def walk(prefix: str, value: dict[str, Any]) -> None:
        for key, item in value.items():
            name = f"{prefix}{key}"
            if isinstance(item, dict):
                walk(f"{name}.", item)
            elif item is not None:
                out[name] = item

    walk("", properties)
    return out


_ISO_DATE = re.compile(r"\s*(\d{4}-\d{2}-\d{2})(?:[T ]|$)")


def birth_date(value: Any) -> str | None:
    """A birth date as text: the ``YYYY-MM-DD`` day of an ISO 8601 date or date-time (the day
    as written, no time-zone shift), any other non-empty text as is, else ``null``."""
    if not isinstance(value, str) or not value.strip():
        return None
    match = _ISO_DATE.match(value)
    return match.group(1) if match else value.strip()


def segments(value: Any) -> list[str] | None:
    """Segmentify ``segments`` (an array of strings): an array's items as ids (numbers become
    text; nulls, empty strings and objects left out), or comma-separated text split; ``null``
    when nothing is left."""
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        return None
    out = [
        text.strip()
        for text in (string_id(item) for item in items)
        if text is not None and text.strip()
    ]
    return out or None


FUNCTIONS = [
    crossdock.JmesFunction.create("segmentify_id", string_id, ["any"]),
    crossdock.JmesFunction.create("segmentify_session_id", session_id, ["any", "any"]),
    crossdock.JmesFunction.create("segmentify_lang", language, ["any"]),
    crossdock.JmesFunction.create("segmentify_os", operating_system, ["any", "any"]),
    crossdock.JmesFunction.create("segmentify_products", product_list, ["any"]),
    crossdock.JmesFunction.create("segmentify_total", total_price, ["any"]),
    crossdock.JmesFunction.create("segmentify_params", flat_params, ["any"]),
    crossdock.JmesFunction.create("segmentify_birthdate", birth_date, ["any"]),
    crossdock.JmesFunction.create("segmentify_segments", segments, ["any"]),
]
"""Declared with the destination type (``DestinationType(functions=FUNCTIONS)``)."""
