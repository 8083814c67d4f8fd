"""Miso's interaction schemas (contract §2): which fields each ``type`` has, and their types.

:func:`shape` runs after the mapping and makes a payload match its type strictly (the fields
the type does not have are removed, values that cannot be sent are left out rather than
poisoning a batch). :func:`problem` is the check the deliverer makes before sending: a record
it names is rejected on its own and never sent.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "INTERACTION_TYPES",
    "MAX_ANONYMOUS_ID",
    "MAX_PRODUCT_ID",
    "MAX_USER_ID",
    "NEEDS_PRODUCTS",
    "problem",
    "shape",
]

INTERACTION_TYPES = frozenset(
    {
        "product_detail_page_view", "search", "add_to_cart", "remove_from_cart", "checkout",
        "refund", "subscribe", "unsubscribe", "add_to_collection", "remove_from_collection",
        "read", "watch", "listen", "like", "dislike", "share", "bookmark", "complete", "rate",
        "feedback", "impression", "viewable_impression", "click", "submit", "home_page_view",
        "category_page_view", "promo_page_view", "product_image_view", "custom",
    }
)  # fmt: skip

MAX_USER_ID = 512
MAX_ANONYMOUS_ID = 1024
MAX_PRODUCT_ID = 512

_NO_PRODUCTS = frozenset({"search", "category_page_view", "home_page_view", "feedback"})
_EXTRA: dict[str, frozenset[str]] = {
    "product_detail_page_view": frozenset({"duration"}),
    "search": frozenset({"search"}),
    "add_to_cart": frozenset({"quantities"}),
    "checkout": frozenset({"revenue", "quantities"}),
    "read": frozenset({"duration"}),
    "watch": frozenset({"duration"}),
    "listen": frozenset({"duration"}),
    "rate": frozenset({"rating"}),
    "feedback": frozenset({"question_id", "result_type", "value"}),
    "home_page_view": frozenset({"duration"}),
    "category_page_view": frozenset({"duration", "category"}),
    "promo_page_view": frozenset({"duration"}),
    "custom": frozenset({"custom_action_name"}),
}
_TYPED = frozenset().union(*_EXTRA.values(), {"product_ids", "product_group_ids"})

NEEDS_PRODUCTS = frozenset(
    {
        "product_detail_page_view", "add_to_cart", "remove_from_cart", "checkout", "refund",
        "add_to_collection", "remove_from_collection", "share", "rate", "click",
        "product_image_view", "like", "dislike", "bookmark",
    }
)  # fmt: skip
"""Types sent only with a product: without ``product_ids`` (or ``product_group_ids``) such a
record says nothing, so it is rejected before sending ("no product_ids")."""

_CAMPAIGN = ("name", "source", "medium", "term", "content")


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        return value
    return None


def _id(value: Any) -> str | None:
    if isinstance(value, str):
        return value if value else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _ids(value: Any) -> list[str] | None:
    items = value if isinstance(value, list) else [value]
    out = [i for i in (_id(v) for v in items) if i is not None]
    return out or None


def _quantities(value: Any, count: int) -> list[float | int] | None:
    """A list parallel to ``product_ids``; a bad quantity counts as 1 (Miso's default)."""
    items = value if isinstance(value, list) else [value]
    if not count or len(items) != count:
        return None
    out: list[float | int] = []
    for item in items:
        number = _number(item)
        out.append(number if number is not None and number > 0 else 1)
    return out


def _strings(value: Any) -> list[str] | None:
    if not isinstance(value, list):
        return None
    out = [v for v in value if isinstance(v, str) and v]
    return out or None


def _search(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    out: dict[str, Any] = {}
    if isinstance(value.get("keywords"), str):
        out["keywords"] = value["keywords"]
    filters = value.get("filters")
    if isinstance(filters, dict):
        clean = {k: _strings(v) for k, v in filters.items() if isinstance(k, str)}
        clean = {k: v for k, v in clean.items() if v}
        if clean:
            out["filters"] = clean
    return out or None


def _context(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    out = dict(value)
    page = out.get("page")
    if not (isinstance(page, dict) and isinstance(page.get("url"), str) and page["url"]):
        out.pop("page", None)
    else:
        out["page"] = {k: v for k, v in page.items() if isinstance(v, str)}
    campaign = out.get("campaign")
    if isinstance(campaign, dict):
        kept = {k: campaign[k] for k in _CAMPAIGN if isinstance(campaign.get(k), str)}
        if kept:
            out["campaign"] = kept
        else:
            out.pop("campaign")
    elif campaign is not None:
        out.pop("campaign")
    for key in ("truncated_ip", "locale", "region", "user_agent"):
        if key in out and not isinstance(out[key], str):
            out.pop(key)
    if "custom_context" in out and not isinstance(out["custom_context"], dict):
        out.pop("custom_context")
    return out or None


def shape(payload: Any) -> dict[str, Any] | None:
    """Make a mapped payload a strict Miso record of its ``type``; ``None`` when it has no type
    (the event is not one Miso gets: dropped on purpose)."""
    if not isinstance(payload, dict):
        return None
    kind = payload.get("type")
    if not isinstance(kind, str) or not kind:
        return None
    record = dict(payload)
    if kind in INTERACTION_TYPES:
        allowed = _EXTRA.get(kind, frozenset())
        if kind not in _NO_PRODUCTS:
            allowed = allowed | {"product_ids", "product_group_ids"}
        for key in _TYPED - allowed:
            record.pop(key, None)
    for key in ("user_id", "anonymous_id", "miso_id", "custom_action_name"):
        if key in record:
            value = _id(record[key])
            if value is None:
                del record[key]
            else:
                record[key] = value
    for key in ("product_ids", "product_group_ids"):
        if key in record:
            ids = _ids(record[key])
            if ids is None:
                del record[key]
            else:
                record[key] = ids
    if "quantities" in record:
        quantities = _quantities(record["quantities"], len(record.get("product_ids", ())))
        if quantities is None:
            del record["quantities"]
        else:
            record["quantities"] = quantities
    for key in ("revenue", "duration"):
        if key in record:
            number = _number(record[key])
            if number is None:
                del record[key]
            else:
                record[key] = number
    if "rating" in record:
        rating = _number(record["rating"])
        if rating is None:
            del record["rating"]
        else:
            record["rating"] = min(5.0, max(0.0, float(rating)))
    if "category" in record:
        category = _strings(record["category"])
        if category is None:
            del record["category"]
        else:
            record["category"] = category
    for key, clean in (("search", _search), ("context", _context)):
        if key in record:
            value = clean(record[key])
            if value is None:
                del record[key]
            else:
                record[key] = value
    if "timestamp" in record and not isinstance(record["timestamp"], str):
        del record["timestamp"]
    return record


def problem(record: Any) -> str | None:
    """Why ``record`` must not be sent, or ``None``. These records are rejected one by one
    before the request, so they never make Miso refuse their batch-mates."""
    if not isinstance(record, dict):
        return "a Miso record must be a JSON object"
    kind = record.get("type")
    if kind not in INTERACTION_TYPES:
        return f"type {str(kind)[:64]!r} is not a Miso interaction type"
    user_id, anonymous_id = record.get("user_id"), record.get("anonymous_id")
    if not (isinstance(user_id, str) and user_id) and not (
        isinstance(anonymous_id, str) and anonymous_id
    ):
        return "neither user_id nor anonymous_id: Miso would merge every such user into one"
    if isinstance(user_id, str) and len(user_id) > MAX_USER_ID:
        return f"user_id is longer than {MAX_USER_ID} characters"
    if isinstance(anonymous_id, str) and len(anonymous_id) > MAX_ANONYMOUS_ID:
        return f"anonymous_id is longer than {MAX_ANONYMOUS_ID} characters"
    for key in ("product_ids", "product_group_ids"):
        ids = record.get(key)
        too_long = (
            [i for i in ids if isinstance(i, str) and len(i) > MAX_PRODUCT_ID]
            if isinstance(ids, list)
            else []
        )
        if too_long:
            return f"{key}: an id is longer than {MAX_PRODUCT_ID} characters"
    has_products = record.get("product_ids") or record.get("product_group_ids")
    if kind in NEEDS_PRODUCTS and not has_products:
        return f"no product_ids ({kind} needs the product the user acted on)"
    if kind == "rate" and not isinstance(record.get("rating"), int | float):
        return "rate needs a numeric rating"
    if kind == "custom" and not record.get("custom_action_name"):
        return "custom needs custom_action_name"
    if kind == "search":
        search = record.get("search")
        if not (isinstance(search, dict) and search.get("keywords")):
            return "search needs search.keywords"
    return None
