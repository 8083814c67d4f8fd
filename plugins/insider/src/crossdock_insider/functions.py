"""The JMESPath functions of the ``insider`` type (:data:`FUNCTIONS`), callable from its mappings
only: the default ``mapping.toml`` and operators' ``[destinations.mapping]`` overrides.

They put values in the form and type Insider's Upsert User Data API documents. Each follows
Crossdock's rule for mapping functions: never raise on data; a value that cannot be converted
gives ``null`` (the field is then left out). The one exception is :func:`insider_required`,
whose job is to dead-letter an event that lacks what Insider requires
(:class:`crossdock.Unsendable`, with the reason the mapping names). The names start with
``insider_`` so they never clash with another plugin's functions.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import crossdock

__all__ = [
    "FUNCTIONS",
    "insider_boolean",
    "insider_country",
    "insider_custom",
    "insider_date",
    "insider_email",
    "insider_event_name",
    "insider_int",
    "insider_key",
    "insider_language",
    "insider_number",
    "insider_required",
    "insider_string",
    "insider_strings",
    "insider_traits",
]

EMAIL_RE = re.compile(r"^.+@.+\..+$")
_NAME_JUNK = re.compile(r"[^a-z0-9._-]")
_DATE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})")


def _falsy(value: Any) -> bool:
    """JMESPath's false: null, false, and an empty string, array or object."""
    return value is None or value is False or (isinstance(value, str | list | dict) and not value)


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and not (
        isinstance(value, float) and not math.isfinite(value)
    )


def insider_string(value: Any) -> str | None:
    """A string, number or boolean as text (``7.0`` → ``"7"``, ``true`` → ``"true"``)."""
    if isinstance(value, str):
        return value
    if not _scalar(value):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def insider_strings(value: Any) -> list[str] | None:
    """An array of strings (``taxonomy``): a single value becomes a one-item array; items that
    are not strings, numbers or booleans are left out; null when nothing is left."""
    items = value if isinstance(value, list) else [value]
    strings = [insider_string(v) for v in items if _scalar(v)]
    return [s for s in strings if s is not None] or None


def insider_number(value: Any) -> int | float | None:
    """A finite number; numeric strings converted (``"33"`` → ``33``, ``"9.90"`` → ``9.9``)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        if not math.isfinite(number):
            return None
        return int(number) if number.is_integer() and "." not in value else number
    return None


def insider_int(value: Any) -> int | None:
    """A whole number as an integer (``quantity``): ``"3"`` and ``3.0`` → ``3``, ``2.5`` → null."""
    number = insider_number(value)
    return int(number) if number is not None and float(number).is_integer() else None


def insider_boolean(value: Any) -> bool | None:
    """``true`` or ``false`` as they are (opt-in attributes); anything else is null."""
    return value if isinstance(value, bool) else None


def insider_email(value: Any) -> str | None:
    """A trimmed e-mail address that looks like one (``.+@.+\\..+``), else null: Insider refuses
    the whole user for an invalid e-mail identifier."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text if EMAIL_RE.match(text) else None


def insider_date(value: Any) -> str | None:
    """``YYYY-MM-DDT00:00:00Z`` (``birthday``) from a string that starts with a calendar date."""
    if not isinstance(value, str):
        return None
    found = _DATE_RE.match(value.strip())
    return f"{found.group(1)}T00:00:00Z" if found else None


def insider_language(value: Any) -> str | None:
    """A locale with ``_`` (``en-US`` → ``en_US``); null for an empty or non-string value."""
    return value.replace("-", "_") if isinstance(value, str) and value else None


def insider_country(value: Any) -> str | None:
    """A two-letter country code upper-cased (ISO 3166-1 alpha-2), else null (names go through
    the ``country_codes`` table first: ``lookup('country_codes', insider_key(name))``)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text.upper() if len(text) == 2 and text.isalpha() else None


def insider_key(value: Any) -> str | None:
    """A string trimmed and lower-cased, the form of the ``country_codes`` table's keys."""
    return value.strip().lower() if isinstance(value, str) else None


def insider_event_name(value: Any) -> str | None:
    """Insider's form of an event name: lower case, trimmed, spaces → ``_``, characters outside
    ``[a-z0-9._-]`` dropped, then leading ``.``/``_``/``-`` dropped. ``""`` when nothing is left
    (the default mapping dead-letters such an event through :func:`insider_required`); null for
    a non-string."""
    if not isinstance(value, str):
        return None
    name = _NAME_JUNK.sub("", "_".join(value.strip().lower().split()))
    return name.lstrip("._-")


def insider_traits(first: Any, second: Any = None) -> dict[str, Any] | None:
    """The user traits an event carries: the keys of ``second`` laid over those of ``first``
    (``insider_traits(context.traits, traits)``: an identify's traits win over the context's);
    a value that is not an object counts as none; null when nothing is left."""
    merged: dict[str, Any] = {}
    for traits in (first, second):
        if isinstance(traits, dict):
            merged.update(traits)
    return merged or None


def insider_required(value: Any, reason: Any, required: Any = True) -> Any:
    """``value``, unless it is null or ``""`` while ``required`` is true (JMESPath truth; true
    when left out): then the event is dead-lettered with ``reason``
    (``insider_required(currency, 'no currency', lookup('currency_required', name))``).
    ``reason`` is the mapping's literal text, never event data."""
    if (value is not None and value != "") or _falsy(required):
        return value
    raise crossdock.Unsendable(reason if isinstance(reason, str) and reason else "missing value")


@functools.lru_cache(maxsize=4096)
def _custom_key(key: str) -> str:
    # Cached: the same few property and trait names come back on every event.
    return "_".join(key.strip().lower().split())


def _custom_value(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is bool:  # the common cases first
        return value
    if _scalar(value):
        return value
    if kind is list and value and all(_scalar(v) for v in value):
        return value
    return None


def insider_custom(value: Any, skip: Any = None) -> dict[str, Any] | None:
    """Custom attributes or event params from an object, leaving out the keys in ``skip`` (an
    array): keys lower-cased with spaces → ``_``; nested objects flattened one level
    (``company.name`` → ``company_name``); nulls, objects deeper down and arrays of objects left
    out. Null when nothing is left."""
    if not isinstance(value, dict):
        return None
    skipped = frozenset(k for k in skip if isinstance(k, str)) if isinstance(skip, list) else ()
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in skipped:
            continue
        name = _custom_key(key if isinstance(key, str) else str(key))
        if not name:
            continue
        if isinstance(item, dict):
            for sub_key, sub_item in item.items():
                cleaned = _custom_value(sub_item)
                sub_name = _custom_key(sub_key if isinstance(sub_key, str) else str(sub_key))
                if cleaned is not None and sub_name:
                    out[f"{name}_{sub_name}"] = cleaned
            continue
        cleaned = _custom_value(item)
        if cleaned is not None:
            out[name] = cleaned
    return out or None


FUNCTIONS: list[crossdock.JmesFunction] = [
    crossdock.JmesFunction.create("insider_boolean", insider_boolean, ["any"]),
    crossdock.JmesFunction.create("insider_country", insider_country, ["any"]),
    crossdock.JmesFunction.create("insider_custom", insider_custom, ["any", "any?"]),
    crossdock.JmesFunction.create("insider_date", insider_date, ["any"]),
    crossdock.JmesFunction.create("insider_email", insider_email, ["any"]),
    crossdock.JmesFunction.create("insider_event_name", insider_event_name, ["any"]),
    crossdock.JmesFunction.create("insider_int", insider_int, ["any"]),
    crossdock.JmesFunction.create("insider_key", insider_key, ["any"]),
    crossdock.JmesFunction.create("insider_language", insider_language, ["any"]),
    crossdock.JmesFunction.create("insider_number", insider_number, ["any"]),
    crossdock.JmesFunction.create("insider_required", insider_required, ["any", "any", "any?"]),
    crossdock.JmesFunction.create("insider_string", insider_string, ["any"]),
    crossdock.JmesFunction.create("insider_strings", insider_strings, ["any"]),
    crossdock.JmesFunction.create("insider_traits", insider_traits, ["any", "any?"]),
]
"""Declared with the ``insider`` type: ``DestinationType(functions=FUNCTIONS)``."""
