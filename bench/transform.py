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

from crossdock.transform.mapping import _flat, compile_mapping, parse_path

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
    }
    emit(result)


if __name__ == "__main__":
    main()
