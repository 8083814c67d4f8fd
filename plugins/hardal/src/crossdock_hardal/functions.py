"""The JMESPath functions of the ``hardal`` source type (:data:`FUNCTIONS`), callable from its
mapping only: the default ``mapping.toml`` and operators' ``[sources.mapping]`` overrides.

Crossdock's rule for mapping functions holds: never raise on data; a value that cannot be
converted gives ``null`` (the field is then left out).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

import crossdock

__all__ = [
    "FUNCTIONS",
    "anonymous_id",
    "event_digest",
    "message_id",
    "number",
    "product",
    "products",
    "rest",
    "text_id",
    "traits",
    "url_path",
]

PRODUCT_KEYS: Final = {
    # Spec product field: Hardal (GA4) names first, then Spec names
    "product_id": ("item_id", "product_id", "id"),
    "sku": ("sku",),
    "name": ("item_name", "name"),
    "category": ("item_category", "category"),
    "brand": ("item_brand", "brand"),
    "variant": ("item_variant", "variant"),
    "price": ("price",),
    "quantity": ("quantity",),
    "coupon": ("coupon",),
    "position": ("index", "position"),
    "url": ("url", "item_url"),
    "image_url": ("image_url", "item_image", "image"),
}
"""How one Hardal item becomes one Spec product: the first key present wins."""

NUMERIC: Final = frozenset({"price", "quantity", "position"})
IDS: Final = frozenset({"product_id", "sku"})

TRANSLATED: Final = frozenset(
    {
        "items",
        "value",
        "transaction_id",
        "search_term",
        "item_list_id",
        "item_list_name",
        "shipping_tier",
        "payment_type",
        "page_category",
        "page_type",
        *(key for keys in PRODUCT_KEYS.values() for key in keys if key.startswith("item_")),
    }
)
"""Hardal property names that the mapping translates into Spec names (left out of the rest)."""

TRAIT_NAMES: Final = {
    "first_name": "firstName",
    "firstname": "firstName",
    "last_name": "lastName",
    "lastname": "lastName",
    "birth_date": "birthday",
    "birthdate": "birthday",
    "phone_number": "phone",
    "user_name": "username",
    "created_at": "createdAt",
}
"""Hardal user attribute names → Spec trait names; other attributes keep their name."""


def text_id(value: Any) -> str | None:
    """An id as text: strings as they are (``""`` → null), integers and integral floats as
    digits (``7.0`` → ``"7"``); anything else null."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def number(value: Any) -> int | float | None:
    """A number from a number or numeric text (``"24.95"`` → ``24.95``, ``"2"`` → ``2``);
    null for anything else (booleans, ``NaN``, ``"abc"``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("+-").isdigit() and text.isascii():
            return int(text)
        try:
            parsed = float(text)
        except ValueError:
            return None
        return parsed if math.isfinite(parsed) else None
    return None


def _one(item: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, keys in PRODUCT_KEYS.items():
        value = next((item[k] for k in keys if item.get(k) is not None), None)
        if field in NUMERIC:
            value = number(value)
        elif field in IDS:
            value = text_id(value)
        if value is not None:
            out[field] = value
    return out


def products(items: Any) -> list[dict[str, Any]] | None:
    """Hardal ``items`` as Spec ``products``: ``item_id`` → ``product_id``, ``item_name`` →
    ``name``, ``item_category`` → ``category``… price and quantity as numbers. Items that are
    not objects are left out; null when ``items`` is not an array."""
    if not isinstance(items, list):
        return None
    return [_one(item) for item in items if isinstance(item, dict)]


def product(properties: Any) -> dict[str, Any]:
    """The one product of a single-product event: the first of ``properties.items``, else the
    product fields of ``properties`` itself (``item_id``/``product_id``, ``price``…), as Spec
    product fields. ``{}`` when there is none."""
    if not isinstance(properties, dict):
        return {}
    items = properties.get("items")
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict):
                return _one(item)
    return _one(properties)


def rest(properties: Any) -> dict[str, Any]:
    """``properties`` without the Hardal names the mapping translates (``items``, ``value``,
    ``transaction_id``, ``item_*``…): what passes through as Spec properties."""
    if not isinstance(properties, dict):
        return {}
    return {k: v for k, v in properties.items() if k not in TRANSLATED}


def traits(user: Any) -> dict[str, Any] | None:
    """Hardal user attributes as Spec traits (``first_name`` → ``firstName``, ``birth_date`` →
    ``birthday``, ``phone_number`` → ``phone``; others keep their name); ``segments`` given as
    comma-separated text becomes an array. Null when there is none."""
    if not isinstance(user, dict) or not user:
        return None
    out: dict[str, Any] = {}
    for key, value in user.items():
        name = TRAIT_NAMES.get(key.lower(), key) if isinstance(key, str) else key
        if name == "segments" and isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        out[name] = value
    return out


def url_path(url: Any) -> str | None:
    """The path of a URL (``https://shop.example/a?b`` → ``/a``; no path → ``/``)."""
    if not isinstance(url, str) or not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme and not url.startswith("/"):
        return None
    return parts.path or "/"


def event_digest(event: Any) -> str | None:
    """A hex SHA-256 over the whole Hardal event (keys sorted): the same event sent twice has
    the same digest."""
    try:
        data = orjson.dumps(event, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return None
    return hashlib.sha256(data).hexdigest()


def message_id(event: Any) -> str | None:
    """A ``messageId`` derived from the event (``hardal-<32 hex>``) when it has a
    ``created_at``, so a request Hardal resends is deduplicated; null otherwise (the core then
    draws a random one: without a time, two equal events may be two real ones)."""
    if not isinstance(event, dict) or event.get("created_at") is None:
        return None
    digest = event_digest(event)
    return None if digest is None else f"hardal-{digest[:32]}"


def anonymous_id(event: Any) -> str | None:
    """An ``anonymousId`` for an event with neither ``user_id`` nor ``session_id``:
    ``hardal-anon-<24 hex>`` derived from the event (stable across resends; such a visitor
    cannot be linked to its other events)."""
    digest = event_digest(event)
    return None if digest is None else f"hardal-anon-{digest[:24]}"


FUNCTIONS: Final = [
    crossdock.JmesFunction.create("hardal_id", text_id, ["any"]),
    crossdock.JmesFunction.create("hardal_number", number, ["any"]),
    crossdock.JmesFunction.create("hardal_products", products, ["any"]),
    crossdock.JmesFunction.create("hardal_product", product, ["any"]),
    crossdock.JmesFunction.create("hardal_rest", rest, ["any"]),
    crossdock.JmesFunction.create("hardal_traits", traits, ["any"]),
    crossdock.JmesFunction.create("hardal_url_path", url_path, ["any"]),
    crossdock.JmesFunction.create("hardal_message_id", message_id, ["any"]),
    crossdock.JmesFunction.create("hardal_anonymous_id", anonymous_id, ["any"]),
]
"""The functions declared with the ``hardal`` source type."""
