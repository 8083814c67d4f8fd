"""Transform cost per event: Crossdock's compiled mapping beside jmespath and hand-written Python.

All engines run in the same process and run on the same event, so the ratios are meaningful
even on a loaded machine; each figure is the median over ``--repeats`` warm loops.

    .venv/bin/python bench/transform.py [--mapping bench/data/insider_like_mapping.json]
        [--event bench/data/order_completed.json] [--loops 20000] [--repeats 9]

Engines: ``compiled`` (``crossdock.compile_mapping``, nulls omitted), ``jmespath_multiselect``
(the whole mapping as one multiselect-hash expression, compiled once by jmespath 1.1),
``jmespath_per_field`` (one compiled jmespath expression per field, nested dict built in
Python), ``handwritten`` (a plain Python function for the reference mapping; only when the
mapping is the reference one).

The ``sectioned`` part runs a segmentify-like sectioned mapping (:data:`SECTIONED`: common
fields, ``[dispatch] select`` through two lookup tables, four sections, a dropped kind) with
``crossdock.compile_spec`` beside :func:`handwritten_sectioned`, over a mix of golden events
(page, order, product view, group), per event.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jmespath
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit

from crossdock.testing.events import golden_event
from crossdock.transform.mapping import _flat, compile_mapping, parse_mapping, parse_path
from crossdock.transform.sections import compile_spec

DATA = Path(__file__).resolve().parent / "data"


def multiselect_expression(mapping: dict[str, Any]) -> str:
    """The nested mapping as one JMESPath multiselect hash."""
    parts = []
    for key, value in mapping.items():
        inner = multiselect_expression(value) if isinstance(value, dict) else f"({value})"
        parts.append(f'"{key}": {inner}')
    return "{" + ", ".join(parts) + "}"


def per_field(mapping: dict[str, Any]) -> Callable[[Any], Any]:
    """One jmespath expression per field; nested output, nulls kept (like the expected file)."""
    compiled = [(parse_path(k), jmespath.compile(v)) for k, v in _flat(mapping).items()]

    def transform(event: Any) -> Any:
        out: dict[str, Any] = {}
        for path, expr in compiled:
            target = out
            for seg in path[:-1]:
                target = target.setdefault(seg, {})
            target[path[-1]] = expr.search(event)
        return out

    return transform


def handwritten(e: dict[str, Any]) -> dict[str, Any]:
    """The reference mapping written by hand (what a developer would write without JMESPath)."""
    ctx = e.get("context") or {}
    ctraits = ctx.get("traits") or {}
    traits = e.get("traits") or {}
    props = e.get("properties") or {}
    page = ctx.get("page") or {}
    email = ctraits.get("email") or traits.get("email")
    event = e.get("event")
    return {
        "identifiers": {"uuid": e.get("userId"), "email": email},
        "attributes": {
            "email": email,
            "phone_number": ctraits.get("phone") or traits.get("phone"),
            "name": ctraits.get("first_name") or traits.get("first_name"),
            "surname": ctraits.get("last_name") or traits.get("last_name"),
            "locale": ctx.get("locale"),
            "email_optin": True,
        },
        "event": {
            "event_name": "purchase" if event == "Order Completed" else event,
            "timestamp": e.get("timestamp"),
            "event_params": {
                "order_id": props.get("order_id"),
                "currency": props.get("currency"),
                "total": props.get("revenue") or props.get("total"),
                "coupon": props.get("coupon"),
                "url": page.get("url"),
                "referrer": page.get("referrer"),
                "user_agent": ctx.get("userAgent"),
                "products": [
                    {
                        "product_id": p.get("product_id"),
                        "name": p.get("name"),
                        "unit_price": p.get("price"),
                        "quantity": p.get("quantity"),
                        "taxonomy": [p.get("category")],
                        "url": p.get("url"),
                        "product_image_url": p.get("image_url"),
                    }
                    for p in props.get("products") or []
                    if (p.get("quantity") or 0) > 0
                ],
            },
        },
    }


SECTIONED = """
name = "`null`"
step = "`null`"
userId = "userId || anonymousId"
sessionId = "context.sessionId || anonymousId"
lang = "upper(context.locale)"
pageUrl = "context.page.url"

[dispatch]
select = "type == 'track' && lookup('events', event) || lookup('types', type)"

[sections.page_view.fields]
name = "'PAGE_VIEW'"
category = "lookup('page_types', name) || properties.category || name"
pageUrl = "properties.url || context.page.url"

[sections.product_view.fields]
name = "'PRODUCT_VIEW'"
productId = "properties.product_id || properties.sku"
title = "properties.name"
price = "number(properties.price)"

[sections.checkout_purchase.fields]
name = "'CHECKOUT'"
step = "'purchase'"
totalPrice = "number(properties.total) || number(properties.revenue) || `0`"
orderNo = "properties.order_id"
productList = "properties.products[].{productId: product_id, price: price, quantity: quantity}"
pageUrl = ""

[sections.custom_event.fields]
name = "'CUSTOM_EVENT'"
type = "event"

[sections.group]
drop = true

[tables.types]
page = "page_view"
track = "custom_event"
group = "group"

[tables.events]
"Product Viewed" = "product_view"
"Order Completed" = "checkout_purchase"

[tables.page_types]
Home = "Home Page"
"""

_TYPES = {"page": "page_view", "track": "custom_event", "group": "group"}
_EVENTS = {"Product Viewed": "product_view", "Order Completed": "checkout_purchase"}
_PAGE_TYPES = {"Home": "Home Page"}


def _number(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                return float(value.strip())
            except ValueError:
                return None
    return None


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        out[key] = value


def handwritten_sectioned(e: dict[str, Any]) -> dict[str, Any] | None:
    """:data:`SECTIONED` written by hand: dispatch, then common and per-kind fields."""
    kind = e.get("type")
    section = _EVENTS.get(e.get("event")) if kind == "track" else None
    section = section or _TYPES.get(kind)
    if section is None or section == "group":
        return None
    ctx = e.get("context") or {}
    props = e.get("properties") or {}
    page = ctx.get("page") or {}
    locale = ctx.get("locale")
    out: dict[str, Any] = {}
    names = {
        "page_view": "PAGE_VIEW",
        "product_view": "PRODUCT_VIEW",
        "checkout_purchase": "CHECKOUT",
        "custom_event": "CUSTOM_EVENT",
    }
    out["name"] = names[section]
    if section == "checkout_purchase":
        out["step"] = "purchase"
    _put(out, "userId", e.get("userId") or e.get("anonymousId"))
    _put(out, "sessionId", ctx.get("sessionId") or e.get("anonymousId"))
    _put(out, "lang", locale.upper() if isinstance(locale, str) else None)
    if section == "page_view":
        _put(out, "pageUrl", props.get("url") or page.get("url"))
        name = e.get("name")
        _put(out, "category", _PAGE_TYPES.get(name) or props.get("category") or name)
    elif section == "product_view":
        _put(out, "pageUrl", page.get("url"))
        _put(out, "productId", props.get("product_id") or props.get("sku"))
        _put(out, "title", props.get("name"))
        _put(out, "price", _number(props.get("price")))
    elif section == "checkout_purchase":
        total = _number(props.get("total")) or _number(props.get("revenue")) or 0
        out["totalPrice"] = total
        _put(out, "orderNo", props.get("order_id"))
        products = props.get("products")
        if isinstance(products, list):
            out["productList"] = [
                {"productId": p.get("product_id"), "price": p.get("price"),
                 "quantity": p.get("quantity")}
                for p in products
                if isinstance(p, dict)
            ]  # fmt: skip
    else:
        _put(out, "pageUrl", page.get("url"))
        _put(out, "type", e.get("event"))
    return out


def run_sectioned(loops: int, repeats: int) -> dict[str, Any]:
    """µs per event of the sectioned mapping and the hand-written one, over the same events."""
    events = [golden_event(s) for s in ("page", "order_completed", "product_viewed", "group")]
    compiled = compile_spec(parse_mapping(SECTIONED))
    for event in events:
        assert compiled(event) == handwritten_sectioned(event), "hand-written sectioned drifted"

    def over(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def each(batch: Any) -> None:
            for event in batch:
                fn(event)

        return each

    per_batch = loops // len(events)
    us = {
        name: round(measure(over(fn), events, per_batch, repeats) / len(events), 3)
        for name, fn in (("compiled", compiled), ("handwritten", handwritten_sectioned))
    }
    return {
        "events": ["page", "order_completed", "product_viewed", "group"],
        "us_per_event": us,
        "ratio_vs_compiled": {n: round(v / us["compiled"], 2) for n, v in us.items()},
    }


def measure(fn: Callable[[Any], Any], event: Any, loops: int, repeats: int) -> float:
    """Median µs per call over ``repeats`` loops of ``loops`` calls (after a warm-up loop)."""
    for _ in range(min(loops, 2000)):
        fn(event)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            fn(event)
        samples.append((time.perf_counter() - start) / loops * 1e6)
    return round(statistics.median(samples), 3)


def main() -> None:
    """Run every engine and print the result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mapping", type=Path, default=DATA / "insider_like_mapping.json")
    parser.add_argument("--event", type=Path, default=DATA / "order_completed.json")
    parser.add_argument("--loops", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    mapping = orjson.loads(args.mapping.read_bytes())
    event = orjson.loads(args.event.read_bytes())
    reference = args.mapping.resolve() == (DATA / "insider_like_mapping.json").resolve()

    engines: dict[str, Callable[[Any], Any]] = {"compiled": compile_mapping(mapping)}
    multiselect = jmespath.compile(multiselect_expression(mapping))
    engines["jmespath_multiselect"] = multiselect.search
    engines["jmespath_per_field"] = per_field(mapping)
    if reference:
        engines["handwritten"] = handwritten
        assert handwritten(event) == multiselect.search(event), "hand-written baseline drifted"

    us = {name: measure(fn, event, args.loops, args.repeats) for name, fn in engines.items()}
    result: dict[str, Any] = {
        "benchmark": "transform",
        "mapping": str(args.mapping),
        "event": str(args.event),
        "python": sys.version.split()[0],
        "loops": args.loops,
        "repeats": args.repeats,
        "us_per_event": us,
        "ratio_vs_compiled": {n: round(v / us["compiled"], 2) for n, v in us.items()},
        "sectioned": run_sectioned(args.loops, args.repeats),
    }
    emit(result)


if __name__ == "__main__":
    main()
