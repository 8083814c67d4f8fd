"""Traffic as the SDKs send it: realistic events and random messageIds, or none.

- analytics.js (``@segment/analytics-next``) makes ``ajs-next-`` + 32 hex digits (an md5);
- analytics-python and analytics-node make a UUID4;
- a curl user or a hand-rolled client sends none, and Crossdock makes a UUID4.

Batches come from one SDK each (:data:`ID_MIX`: the share of batches per kind). Events are the
``shared/bench`` "Order Completed" (~1.9 KB) and ~350-byte "Product Viewed" events, one order
per :data:`ORDER_EVERY` events.

Bodies are built as *templates*: the JSON of a body with :data:`PLACEHOLDER` where each
messageId goes, so a load generator (``wrk/sdk_bodies.lua``, or :func:`fill` in Python) puts a
fresh random id there for every request. The template file has one template per line:
``<kind>\\t<template>``.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
PLACEHOLDER = "@MID@"
KINDS = ("ajs", "uuid", "none")
ID_MIX = {"ajs": 0.6, "uuid": 0.3, "none": 0.1}
"""Share of batches (and of single events) per messageId kind."""
ORDER_EVERY = 10
LIBRARY = {
    "ajs": {"name": "analytics.js", "version": "npm:next-1.70.0"},
    "uuid": {"name": "analytics-python", "version": "2.3.3"},
    "none": {"name": "curl", "version": "8.5.0"},
}
SENT_AT = "2026-11-22T12:00:01.000Z"


def new_id(kind: str, rng: random.Random) -> str:
    """A messageId as the SDK of ``kind`` makes it (``kind`` is ``ajs`` or ``uuid``)."""
    if kind == "ajs":
        return f"ajs-next-{rng.getrandbits(128):032x}"
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _order(index: int, kind: str) -> dict:
    doc = orjson.loads((HERE / "data" / "order_completed.json").read_bytes())
    doc["userId"] = f"user_{index % 50_000:06d}"
    doc["context"]["library"] = LIBRARY[kind]
    return doc


def _product(index: int, kind: str) -> dict:
    sku = 1000 + index % 900
    return {
        "type": "track",
        "event": "Product Viewed",
        "userId": f"user_{index % 50_000:06d}",
        "timestamp": "2026-11-22T12:00:00.000Z",
        "properties": {
            "product_id": f"sku-{sku}",
            "name": "Running Shoes",
            "price": 89.0,
            "currency": "USD",
            "category": "Shoes",
        },
        "context": {
            "library": LIBRARY[kind],
            "page": {"url": f"https://shop.example.com/p/{sku}"},
        },
    }


def event_template(index: int, kind: str) -> dict:
    """Event ``index`` of a stream: an order every :data:`ORDER_EVERY`, else a product view."""
    doc = _order(index, kind) if index % ORDER_EVERY == ORDER_EVERY - 1 else _product(index, kind)
    doc.pop("messageId", None)
    if kind != "none":
        doc["messageId"] = PLACEHOLDER
    return doc


def _kind(rng: random.Random) -> str:
    return rng.choices(KINDS, weights=[ID_MIX[k] for k in KINDS])[0]


def batch_templates(count: int, per_request: int, seed: int = 12) -> list[tuple[str, str]]:
    """``count`` ``(kind, template)`` pairs of ``/v1/batch`` bodies of ``per_request`` events."""
    rng = random.Random(seed)
    out = []
    for r in range(count):
        kind = _kind(rng)
        events = [event_template(r * per_request + i, kind) for i in range(per_request)]
        out.append((kind, orjson.dumps({"batch": events, "sentAt": SENT_AT}).decode()))
    return out


def track_templates(count: int, seed: int = 13) -> list[tuple[str, str]]:
    """``count`` ``(kind, template)`` pairs of single-event ``/v1/track`` bodies."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        kind = _kind(rng)
        doc = event_template(i, kind)
        del doc["type"]
        out.append((kind, orjson.dumps(doc).decode()))
    return out


def write_templates(path: Path, templates: list[tuple[str, str]]) -> Path:
    """Write the template file the wrk script reads."""
    path.write_text("".join(f"{kind}\t{text}\n" for kind, text in templates))
    return path


def fill(kind: str, template: str, rng: random.Random) -> bytes:
    """A body from a template with a fresh id at every placeholder (the Python generator)."""
    parts = template.split(PLACEHOLDER)
    out = [parts[0]]
    for part in parts[1:]:
        out.append(new_id(kind, rng))
        out.append(part)
    return "".join(out).encode()


def mean_events(templates: list[tuple[str, str]]) -> float:
    """Events per body, on average (``/v1/batch`` bodies count their array)."""
    counts = []
    for _, text in templates:
        doc = orjson.loads(text)
        counts.append(len(doc["batch"]) if "batch" in doc else 1)
    return sum(counts) / len(counts)
