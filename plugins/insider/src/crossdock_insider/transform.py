"""Spec event → one Insider user object (``identifiers``, ``attributes``, ``events``).

The transformer compiles the destination's mapping (the plugin's ``mapping.toml`` with the
operator's ``[destinations.mapping]`` overrides, ``where`` and ``tables``) once with
:func:`crossdock.compile_mapping`, then normalises what the mapping produced:

- ``event.*`` becomes the ``events`` array. The event name is put in Insider's form (lower case,
  spaces → ``_``, only ``[a-z0-9._-]``). Names listed in the ``per_product_events`` table give one
  event per element of ``properties.products``: the ``event.*`` fields are evaluated again on the
  event with that product's fields laid over the other properties, so all of them share
  ``event_group_id``.
- ``attributes.custom`` and ``event.event_params.custom``, when mapped as whole objects, hold
  "everything else": keys listed in ``standard_traits`` / ``standard_properties`` are removed.
  Custom keys are lower-cased with spaces → ``_``; nested objects are flattened one level
  (``company.name`` → ``company_name``); arrays of objects and nulls are left out.
- Values get the types Insider documents: identifiers and string params as strings (an invalid
  e-mail or phone number is dropped from ``identifiers``), ``birthday`` as
  ``YYYY-MM-DDT00:00:00Z``, ``language`` with ``_``, ``country`` as ISO alpha-2, prices as
  numbers, ``quantity`` as an integer.

An event that yields neither attributes nor events is dropped (``None``). Every event yields its
own user object, so Insider's per-user errors map back to exactly one Crossdock event.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import crossdock

EMAIL_RE = re.compile(r"^.+@.+\..+$")
PHONE_RE = re.compile(r"^\+[1-9]\d{6,14}$")
EVENT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_NAME_JUNK = re.compile(r"[^a-z0-9._-]")
_DATE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})")

STRING_PARAMS = frozenset(
    {
        "product_id", "name", "currency", "event_group_id", "url", "product_image_url",
        "referrer", "user_agent", "session_id", "locale", "color", "size", "shipping_cost",
        "promotion_name", "campaign_id", "campaign_name",
    }
)  # fmt: skip
FLOAT_PARAMS = frozenset({"unit_price", "unit_sale_price", "promotion_discount"})
STRING_ATTRIBUTES = frozenset(
    {"email", "phone_number", "name", "surname", "gender", "city", "lo", "language", "country"}
)
BOOLEAN_ATTRIBUTES = frozenset({"gdpr_optin", "email_optin", "sms_optin", "whatsapp_optin"})


def event_name(value: Any) -> str | None:
    """Insider's form of an event name: lower case, trimmed, spaces → ``_``, characters outside
    ``[a-z0-9._-]`` dropped, leading ``.``/``_``/``-`` dropped. ``None`` if nothing is left."""
    if not isinstance(value, str):
        return None
    name = _NAME_JUNK.sub("", "_".join(value.strip().lower().split()))
    name = name.lstrip("._-")
    return name or None


class InsiderTransformer:
    """The transformer of an ``insider`` destination (see the module docstring)."""

    def __init__(self, destination: crossdock.Destination) -> None:
        fields = dict(destination.mapping)
        tables = destination.tables
        self.mapping = crossdock.compile_mapping(fields, where=destination.where, tables=tables)
        # Only the event fields are evaluated again per product (without ``where``).
        event_fields = {k: v for k, v in fields.items() if k == "event" or k.startswith("event.")}
        self.event_mapping = crossdock.compile_mapping(event_fields, tables=tables)
        self.per_product = _truthy_keys(tables.get("per_product_events", {}))
        self.standard_traits = _truthy_keys(tables.get("standard_traits", {}))
        self.standard_properties = _truthy_keys(tables.get("standard_properties", {}))
        self.country_codes = {
            str(k).lower(): v for k, v in tables.get("country_codes", {}).items() if v
        }
        # An empty expression means "no field" (how removed defaults can look).
        self.rest_attributes = bool(fields.get("attributes.custom"))
        self.rest_params = bool(fields.get("event.event_params.custom"))
        self.not_append = bool(getattr(destination.settings, "not_append", False))

    def matches(self, event: crossdock.Event) -> bool:
        """Whether the destination's ``where`` holds (the worker counts the rest as filtered)."""
        return self.mapping.matches(event)

    def __call__(self, event: crossdock.Event) -> dict[str, Any] | None:
        """The user object for ``event``, or ``None`` when there is nothing to send."""
        out = self.mapping(event)
        if not isinstance(out, dict):
            return None
        user: dict[str, Any] = {}
        identifiers = self._identifiers(out.get("identifiers"))
        if identifiers:
            user["identifiers"] = identifiers
        if out.get("insider_id") is not None:
            user["insider_id"] = _string(out["insider_id"])
        attributes = self._attributes(out.get("attributes"))
        if attributes:
            user["attributes"] = attributes
        events = self._events(event, out.get("event"))
        if events:
            user["events"] = events
        if not attributes and not events:
            return None
        if self.not_append:
            user["not_append"] = True
        return user

    # -- identifiers --------------------------------------------------------------------------

    def _identifiers(self, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict):
            return {}
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if key == "custom":
                custom = {
                    _custom_key(k): _string(v)
                    for k, v in (value.items() if isinstance(value, dict) else ())
                    if _scalar(v)
                }
                if custom:
                    out["custom"] = custom
            elif key == "email":
                if isinstance(value, str) and EMAIL_RE.match(value.strip()):
                    out["email"] = value.strip()
            elif key == "phone_number":
                if isinstance(value, str) and PHONE_RE.match(value):
                    out["phone_number"] = value
            elif key == "uuid":
                if _scalar(value) and _string(value):
                    out["uuid"] = _string(value)
            else:  # an operator's key: sent as is, Insider answers if it is wrong
                out[key] = value
        return out

    # -- attributes ---------------------------------------------------------------------------

    def _attributes(self, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict):
            return {}
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if key == "custom":
                if not isinstance(value, dict):
                    continue
                skip = self.standard_traits if self.rest_attributes else frozenset()
                custom = _custom(value, skip)
                if custom:
                    out["custom"] = custom
                continue
            cleaned = self._attribute(key, value)
            if cleaned is not None:
                out[key] = cleaned
        return out

    def _attribute(self, key: str, value: Any) -> Any:
        if key == "birthday":
            return _birthday(value)
        if key == "language":
            return value.replace("-", "_") if isinstance(value, str) and value else None
        if key == "country":
            return self._country(value)
        if key == "phone_number":
            return value if isinstance(value, str) and PHONE_RE.match(value) else None
        if key in BOOLEAN_ATTRIBUTES:
            return value if isinstance(value, bool) else None
        if key == "age":
            return _number(value)
        if key in STRING_ATTRIBUTES:
            return _string(value) if _scalar(value) else None
        return value

    def _country(self, value: Any) -> str | None:
        if not isinstance(value, str):
            return None
        text = value.strip()
        if len(text) == 2 and text.isalpha():
            return text.upper()
        code = self.country_codes.get(text.lower())
        return code.upper() if isinstance(code, str) and len(code) == 2 else None

    # -- events -------------------------------------------------------------------------------

    def _events(self, event: crossdock.Event, raw: Any) -> list[dict[str, Any]]:
        if not isinstance(raw, dict) or raw.get("event_name") is None:
            return []
        name = event_name(raw["event_name"])
        if name is None:
            # Raised, not dropped: the core dead-letters the event with this reason.
            raise ValueError("the event name has no character Insider accepts ([a-z0-9._-])")
        products = _products(event) if name in self.per_product else None
        if not products:
            return [self._event(name, raw)]
        properties = {k: v for k, v in event["properties"].items() if k != "products"}
        events = []
        for product in products:
            line = {**event, "properties": {**properties, **product}}
            mapped = self.event_mapping(line)
            events.append(self._event(name, mapped.get("event") if mapped else None))
        return events

    def _event(self, name: str, raw: Any) -> dict[str, Any]:
        raw = raw if isinstance(raw, dict) else {}
        out: dict[str, Any] = {"event_name": name}
        for key, value in raw.items():
            if key == "event_name":
                continue
            if key == "event_params":
                params = self._params(value)
                if params:
                    out["event_params"] = params
            elif key == "timestamp":
                if isinstance(value, str):
                    out["timestamp"] = value
            else:
                out[key] = value
        return out

    def _params(self, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict):
            return {}
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if key == "custom":
                continue
            cleaned = _param(key, value)
            if cleaned is not None:
                out[key] = cleaned
        custom_raw = raw.get("custom")
        if isinstance(custom_raw, dict):
            skip = self.standard_properties if self.rest_params else frozenset()
            custom = _custom(custom_raw, skip)
            if "variant_id" in out and self.rest_params:
                custom.pop("variant", None)  # numeric variants travel as variant_id only
            if custom:
                out["custom"] = custom
        return out


# ---------------------------------------------------------------------------------------------
# Value helpers


def _truthy_keys(table: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(k for k, v in table.items() if v)


def _products(event: crossdock.Event) -> list[dict[str, Any]]:
    properties = event.get("properties")
    products = properties.get("products") if isinstance(properties, dict) else None
    if not isinstance(products, list):
        return []
    return [p for p in products if isinstance(p, dict)]


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and not (
        isinstance(value, float) and not math.isfinite(value)
    )


def _string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(value: Any) -> int | float | None:
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


def _param(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key in STRING_PARAMS:
        return _string(value) if _scalar(value) else None
    if key in FLOAT_PARAMS:
        number = _number(value)
        return None if number is None else float(number)
    if key == "quantity":
        number = _number(value)
        return int(number) if number is not None and float(number).is_integer() else None
    if key == "variant_id":
        return _number(value)
    if key == "taxonomy":
        items = value if isinstance(value, list) else [value]
        strings = [_string(v) for v in items if _scalar(v)]
        return strings or None
    return value


def _birthday(value: Any) -> str | None:
    """``YYYY-MM-DDT00:00:00Z`` from a date or date-time string (its calendar date)."""
    if not isinstance(value, str):
        return None
    found = _DATE_RE.match(value.strip())
    return f"{found.group(1)}T00:00:00Z" if found else None


def _custom_key(key: Any) -> str:
    return "_".join(str(key).strip().lower().split())


def _custom(values: Mapping[str, Any], skip: frozenset[str]) -> dict[str, Any]:
    """Custom attributes or params: standard keys removed, keys normalised, nested objects
    flattened one level, nulls and arrays of objects left out."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in skip:
            continue
        name = _custom_key(key)
        if not name:
            continue
        if isinstance(value, dict):
            for sub_key, sub_value in value.items():
                cleaned = _custom_value(sub_value)
                sub_name = _custom_key(sub_key)
                if cleaned is not None and sub_name:
                    out[f"{name}_{sub_name}"] = cleaned
            continue
        cleaned = _custom_value(value)
        if cleaned is not None:
            out[name] = cleaned
    return out


def _custom_value(value: Any) -> Any:
    if _scalar(value):
        return value
    if isinstance(value, list) and value and all(_scalar(v) for v in value):
        return value
    return None
