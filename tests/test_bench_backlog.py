"""The backlog, isolation and NATS benchmarks' parts do what their figures rely on (no timings).

The counting sink that fails on command (distinct messageIds, duplicates, refusals), the RSS
sampler, the on-demand SDK batches, the NATS benchmark's ratios; and a short run of the NATS
benchmark's two measurements (skipped without wrk or nats-server).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import backlog  # noqa: E402
import nats_production  # noqa: E402
from fault_sinks import FaultSink  # noqa: E402

from crossdock.queue.nats_server import NatsServer, nats_unavailable  # noqa: E402


async def test_fault_sink_counts_distinct_ids_and_fails_on_command() -> None:
    async with FaultSink(503) as sink, aiohttp.ClientSession() as http:
        events = [{"messageId": "a"}, {"messageId": "b"}]
        async with http.post(sink.url + "/events", data=orjson.dumps(events)) as response:
            assert response.status == 503
        async with http.post(sink.url + "/mode/200") as response:
            assert (await response.json())["refused"] == 1
        for body in (events, [{"messageId": "b"}, {"messageId": "c"}], {"messageId": "d"}):
            async with http.post(sink.url + "/events", data=orjson.dumps(body)) as response:
                assert response.status == 200
        async with http.get(sink.url + "/count") as response:
            count = await response.json()
    assert count["events"] == 5
    assert count["unique"] == 4
    assert count["duplicates"] == 1
    assert count["refused"] == 1
    assert 0 < count["first_at"] <= count["last_at"]


def test_rss_sampler_reads_vmrss_by_phase() -> None:
    pid = os.getpid()
    own = backlog.proc_status_kib(pid, "VmRSS")
    assert own > 1000
    with backlog.RssSampler(pid, interval=0.01) as sampler:
        while len(sampler.samples) < 3:
            time.sleep(0.005)
        sampler.phase = "second"
        while sampler.samples[-1][1] != "second":
            time.sleep(0.005)
    summary = sampler.summary()
    assert set(summary["max_mib_by_phase"]) == {"start", "second"}
    assert summary["max_mib"] >= own / 1024 / 2
    assert backlog.proc_status_kib(2**22 + 12345, "VmRSS") == 0  # no such process


def test_sdk_batches_are_requests_with_fresh_ids() -> None:
    make = backlog.SdkBatches(seed=3)
    seen: set[str] = set()
    without_ids = 0
    for index in range(60):
        request = make(index)
        head, _, body = request.partition(b"\r\n\r\n")
        assert head.startswith(b"POST /v1/batch HTTP/1.1")
        assert f"Content-Length: {len(body)}".encode() in head
        batch = orjson.loads(body)["batch"]
        assert len(batch) == 100
        ids = [e["messageId"] for e in batch if "messageId" in e]
        without_ids += not ids
        assert not seen & set(ids)
        seen.update(ids)
    assert len(seen) + without_ids * 100 == 6000
    assert without_ids > 0


def test_nats_summary_divides_means_of_the_same_run() -> None:
    def rows(solo: float, under: float, e2e: float) -> dict[str, list[dict[str, object]]]:
        return {
            "solo": [{"events_per_s": solo}],
            "delivering": [{"ingest": {"events_per_s": under}, "end_to_end_events_per_s": e2e}],
        }

    summary = nats_production.summarize(
        {"sqlite": rows(20_000, 18_000, 10_000), "nats": rows(15_000, 12_000, 7_000)}
    )
    assert summary["nats_vs_sqlite_solo_ingest"] == 0.75
    assert summary["nats_vs_sqlite_end_to_end"] == 0.7
    assert summary["sqlite"]["ingest_under_delivery_vs_solo"] == 0.9
    assert summary["nats"]["ingest_under_delivery_vs_solo"] == 0.8


@pytest.mark.slow
def test_nats_benchmark_measures_both_queues(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    reason = nats_unavailable()
    if reason:
        pytest.skip(reason)
    if os.environ.get("CROSSDOCK_TEST_NATS_URL"):
        pytest.skip("needs its own nats-server (CPU is measured)")
    args = argparse.Namespace(seconds=1.0, connections=4, ids=0)
    nats = NatsServer().start()
    try:
        run = nats_production.Run(args, tmp_path, nats)
        for queue in nats_production.QUEUES:
            solo = nats_production.measure_solo(run, queue, "t")
            assert solo["ok_requests"] > 0
            assert solo["errors"] == 0
            delivering = nats_production.measure_delivering(run, queue, "t")
            assert delivering["events_delivered_unique"] >= delivering["events_accepted"] > 0
            assert delivering["duplicates"] == 0
    finally:
        nats.stop()


async def test_deliver_cost_drains_every_variant_on_both_queues(nats_url: str) -> None:
    """``deliver_cost.py``'s measurements: each variant delivers every stored event through
    the worker (the drain waits for all of them) and reports its CPU figures."""
    import deliver_cost

    for events, runs in (
        await deliver_cost.measure_sqlite(300, 1, False),
        await deliver_cost.measure_nats(nats_url, 300, 1, False),
    ):
        assert events == 300
        assert set(runs) == set(deliver_cost.VARIANTS)
        for variant in deliver_cost.VARIANTS:
            (figures,) = runs[variant]
            assert figures["events_per_s"] > 0
            assert figures["cpu_us_per_event"] > 0
