"""The production-like benchmark's parts do what its figures rely on (no timings asserted).

SDK-shaped ids and bodies, the wrk Lua generator (fresh ids per request; skipped without wrk),
the dedupe pre-fill in the queue's own schema, the open-loop generator, the profile summary.
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest
from aiohttp import web

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import constant_rate  # noqa: E402
import dedupe_fill  # noqa: E402
import profile_summary  # noqa: E402
import sdk_events  # noqa: E402
import wrk_runner  # noqa: E402

from crossdock.queue.sqlite import SqliteQueue  # noqa: E402

AJS = re.compile(r"^ajs-next-[0-9a-f]{32}$")


def _is_uuid4(text: str) -> bool:
    try:
        value = uuid.UUID(text)
    except ValueError:
        return False
    return value.version == 4 and str(value) == text


def _check_ids(doc: dict, kind: str) -> list[str]:
    events = doc.get("batch", [doc])
    ids = [e.get("messageId") for e in events]
    if kind == "none":
        assert ids == [None] * len(events)
        return []
    check = AJS.match if kind == "ajs" else _is_uuid4
    assert all(isinstance(i, str) and check(i) for i in ids), ids[:3]
    return ids


def test_templates_fill_with_fresh_sdk_ids() -> None:
    templates = sdk_events.batch_templates(30, 100)
    assert {kind for kind, _ in templates} == {"ajs", "uuid", "none"}
    assert sdk_events.mean_events(templates) == 100
    rng = random.Random(5)
    seen: set[str] = set()
    for kind, text in templates:
        doc = orjson.loads(sdk_events.fill(kind, text, rng))
        ids = _check_ids(doc, kind)
        assert not seen & set(ids)
        seen.update(ids)
        names = {e["event"] for e in doc["batch"]}
        assert names == {"Product Viewed", "Order Completed"}
    product = orjson.loads(sdk_events.fill(*sdk_events.track_templates(1)[0], rng))
    assert 300 <= len(orjson.dumps(product)) <= 420  # the ~350-byte product event


class _Capture:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        return web.Response(text="{}")


async def test_wrk_script_sends_fresh_ids_in_every_request(tmp_path: Path) -> None:
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    templates = sdk_events.batch_templates(6, 20)
    path = sdk_events.write_templates(tmp_path / "t.txt", templates)
    capture = _Capture()
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_post("/v1/batch", capture.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        script = str(BENCH / "wrk" / "sdk_bodies.lua")
        url = f"http://127.0.0.1:{port}/v1/batch"
        proc = await asyncio.create_subprocess_exec(
            wrk, "-t1", "-c2", "-d1s", "-s", script, url, "--", str(path),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
    finally:
        await runner.cleanup()
    assert proc.returncode == 0, err
    assert b"WRKJSON " in out
    assert len(capture.bodies) >= 5
    kinds = {library["name"]: kind for kind, library in sdk_events.LIBRARY.items()}
    seen: set[str] = set()
    for body in capture.bodies:
        doc = orjson.loads(body)
        kind = kinds[doc["batch"][0]["context"]["library"]["name"]]
        ids = _check_ids(doc, kind)
        assert len(set(ids)) == len(ids)
        assert not seen & set(ids), "an id was sent twice"
        seen.update(ids)


async def test_prefilled_ids_are_duplicates_to_the_queue(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    dedupe_fill.fill(path, 3000)
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT id, message_id FROM dedupe ORDER BY id").fetchall()
        ((oldest, newest),) = conn.execute("SELECT min(seen_at), max(seen_at) FROM dedupe")
    assert len(rows) == 3000 == len({m for _, m in rows})
    assert all(AJS.match(m) or _is_uuid4(m) for _, m in rows)
    assert oldest < newest
    queue = SqliteQueue(path)
    await queue.open([])
    try:
        old = rows[0][1]
        result = await queue.append([{"messageId": old}, {"messageId": "fresh-1"}])
        assert (result.stored, result.duplicates) == (1, 1)
    finally:
        await queue.close()


async def test_constant_rate_answers_every_request() -> None:
    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="{}")

    app = web.Application()
    app.router.add_post("/v1/batch", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        body = b'{"batch": []}'
        request = (
            b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        result = await constant_rate.run_constant(port, [request] * 20, rate=400)
    finally:
        await runner.cleanup()
    assert result["requests"] == 20
    assert result["errors"] == 0
    assert result["latency_ms"]["p50"] <= result["latency_ms"]["p99"] <= result["latency_ms"]["max"]


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert constant_rate.percentile(values, 99) == 99.0
    assert constant_rate.percentile(values, 50) == 50.0
    assert constant_rate.percentile([], 99) == 0.0


def test_profile_summary_counts_busy_share_per_thread() -> None:
    text = (
        "thread (0x1a): MainThread;run (crossdock/web/app.py:1);loads (orjson:0) 30\n"
        "thread (0x1b): crossdock-sqlite-writer_0;_write (crossdock/queue/sqlite.py:9) 50\n"
        "thread (0x1a): MainThread;handle (crossdock/ingest/handler.py:89) 10\n"
    )
    result = profile_summary.summarize(text, rate=100, seconds=1)
    assert result["crossdock-sqlite-writer"]["busy_share_of_a_core"] == 0.5
    assert result["MainThread"]["samples"] == 40
    assert result["MainThread"]["top_own_code"][0] == ["run (crossdock/web/app.py:1)", 30]


def test_missing_wrk_exits_non_zero_saying_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(wrk_runner.shutil, "which", lambda name: None)
    monkeypatch.setattr(wrk_runner, "FALLBACK", tmp_path / "no-wrk")
    with pytest.raises(SystemExit) as info:
        wrk_runner.wrk_path()
    assert info.value.code == 2
    assert "apt-get install wrk" in capsys.readouterr().err


def test_mapped_phase_maps_and_the_plain_one_sends_stored_bytes(tmp_path: Path) -> None:
    # The two delivering phases measure what they say: the sink destination's default mapping
    # is the identity (stored bytes), and MAPPED replaces it with five fields (decoded path).
    import production
    from _common import SOURCE, sink_destination

    from crossdock.config.load import parse_config
    from crossdock.deliver.stored import sends_stored_events
    from crossdock.plugins.registry import load_registry

    registry = load_registry(entrypoints=False)
    event = {
        "type": "track",
        "event": "Product Viewed",
        "userId": "u1",
        "messageId": "m1",
        "properties": {"product_id": "sku-1", "price": 89.0, "name": "Shoes"},
    }
    plain = parse_config(SOURCE + sink_destination(9), registry, {}, base_dir=tmp_path)
    identity = registry.make_transformer(plain.destinations[0])
    assert sends_stored_events(identity)
    text = SOURCE + sink_destination(9) + production.MAPPED
    mapped = parse_config(text, registry, {}, base_dir=tmp_path)
    transformer = registry.make_transformer(mapped.destinations[0])
    assert not sends_stored_events(transformer)
    assert transformer(event) == {
        "event_name": "Product Viewed",
        "user": "u1",
        "id": "m1",
        "product": "sku-1",
        "price": 89.0,
    }


def test_summary_reads_every_phase_the_run_records() -> None:
    # summarize() runs only after minutes of wrk; a phase added to main() but not to the
    # summary (or the reverse) must fail here, not at the end of a benchmark run.
    import production

    def phase(*rates: float) -> dict:
        return {"batch_segments": [{"events_per_s": r, "requests_per_s": r / 100} for r in rates]}

    results = {
        "bare": {
            "batch": {"events_per_s": 400_000.0},
            "batch_static_body": {"events_per_s": 400_000.0},
            "track": {"requests_per_s": 10_000.0},
            "generated_vs_static": 1.0,
        },
        "empty": phase(50_000, 50_000),
        "full": {**phase(40_000, 60_000), "track": {"requests_per_s": 5_000.0}},
        "delivering": {**phase(40_000), "end_to_end_events_per_s": 30_000.0},
        "delivering_mapped": {**phase(30_000), "end_to_end_events_per_s": 20_000.0},
        "workers2": phase(80_000),
        "delivering_workers2": {**phase(60_000), "end_to_end_events_per_s": 45_000.0},
        "latency": {"latency_ms": {"p99": 12.0}},
    }
    summary = production.summarize(results)
    assert summary["batch_full_vs_bare"] == 0.125
    assert summary["ingest_under_delivery_vs_solo"] == 0.8
    assert summary["workers2_vs_one"] == 1.6
    assert summary["workers2_end_to_end_events_per_s"] == 45_000.0
    assert summary["workers2_ingest_under_delivery_vs_solo"] == 0.75
    assert set(production.TARGETS) <= set(summary)
