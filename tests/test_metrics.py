"""Metrics through prometheus_client: every family and every configured source's and
destination's series from the start, process metrics and build info on a live daemon, batch
observations, and how several processes' values combine (``--workers``)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

import crossdock
from crossdock import metrics as metrics_store
from crossdock.metrics import FAMILIES, MULTIPROC_ENV, Metrics
from crossdock.testing.helpers import basic_auth

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[set[str], Samples]:
    """(family names as exposed, (sample name, labels) → value); fails on a malformed text."""
    families = list(text_string_to_metric_families(text))
    samples = {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}
    return {f.name for f in families}, samples


def exposed(family_name: str) -> str:
    """The family name the parser reports (counters without ``_total``)."""
    return family_name.removesuffix("_total")


CONFIG = """
[[sources]]
id = "web"
type = "segment"
write_keys = ["wk-metrics-0123456789"]

[[sources]]
id = "hook"
type = "webhook"

[[destinations]]
id = "sink"
plugin = "file"
[destinations.settings]
path = "{workdir}/out.ndjson"

[[destinations]]
id = "never"
plugin = "webhook"
sources = ["hook"]
[destinations.settings]
url = "http://127.0.0.1:9/in"
"""


async def test_a_fresh_daemon_lists_every_series_at_zero_with_process_and_build_info(
    crossdock_daemon,
) -> None:
    daemon = crossdock_daemon(CONFIG)
    async with aiohttp.ClientSession() as session, session.get(daemon.url + "/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    names, samples = parse(text)
    assert {exposed(f.name) for f in FAMILIES} <= names
    for source in ("web", "hook"):
        for name in ("crossdock_events_received_total", "crossdock_events_deduplicated_total",
                     "crossdock_events_looped_total"):  # fmt: skip
            assert samples[(name, frozenset({("source", source)}))] == 0
        key = ("crossdock_ingest_duration_seconds_count", frozenset({("source", source)}))
        assert samples[key] == 0
    for destination in ("sink", "never"):
        labels = frozenset({("destination", destination)})
        for name in ("crossdock_events_delivered_total", "crossdock_events_filtered_total",
                     "crossdock_queue_pending", "crossdock_queue_lag_seconds",
                     "crossdock_destination_paused", "crossdock_destination_down",
                     "crossdock_end_to_end_latency_seconds_count",
                     "crossdock_delivery_duration_seconds_count"):  # fmt: skip
            assert samples[(name, labels)] == 0, name
        for outcome in metrics_store.DELIVERY_OUTCOMES:
            key = ("crossdock_delivery_requests_total", labels | {("outcome", outcome)})
            assert samples[key] == 0
    assert samples[("crossdock_ingest_in_flight", frozenset())] == 0
    assert samples[("process_resident_memory_bytes", frozenset())] > 0
    assert samples[("process_cpu_seconds_total", frozenset())] >= 0
    build = [k for k in samples if k[0] == "crossdock_build_info"]
    assert len(build) == 1
    assert ("version", crossdock.__version__) in build[0][1]
    assert samples[build[0]] == 1


async def test_counts_after_a_request_are_exact(crossdock_daemon) -> None:
    daemon = crossdock_daemon(CONFIG)
    batch = [{"type": "track", "userId": "u", "event": "E", "messageId": f"m{i}"} for i in range(3)]
    async with aiohttp.ClientSession() as session:
        async with session.post(
            daemon.url + "/v1/batch",
            json={"batch": batch},
            headers={"Authorization": basic_auth("wk-metrics-0123456789")},
        ):
            pass  # fmt: skip
        async with session.get(daemon.url + "/metrics") as r:
            _, samples = parse(await r.text())
    assert samples[("crossdock_events_received_total", frozenset({("source", "web")}))] == 3
    assert samples[("crossdock_events_received_total", frozenset({("source", "hook")}))] == 0
    key = ("crossdock_ingest_duration_seconds_count", frozenset({("source", "web")}))
    assert samples[key] == 1


def test_a_batch_observation_counts_every_event_in_its_bucket() -> None:
    metrics = Metrics(destinations=["d"])
    name = "crossdock_end_to_end_latency_seconds"
    metrics.observe(name, ("d",), 0.02, 5)
    metrics.observe(name, ("d",), 0.02)
    metrics.observe(name, ("d",), 5000.0, 2)
    _, samples = parse(metrics.render().decode())
    labels = frozenset({("destination", "d")})
    assert samples[(name + "_bucket", labels | {("le", "0.01")})] == 0
    assert samples[(name + "_bucket", labels | {("le", "0.025")})] == 6
    assert samples[(name + "_bucket", labels | {("le", "3600.0")})] == 6
    assert samples[(name + "_bucket", labels | {("le", "+Inf")})] == 8
    assert samples[(name + "_count", labels)] == 8
    assert samples[(name + "_sum", labels)] == pytest.approx(0.02 * 6 + 10000.0)


def test_get_and_total_read_counters_and_gauges() -> None:
    metrics = Metrics()
    metrics.inc("crossdock_events_retried_total", ("d", "timeout"))
    metrics.inc("crossdock_events_retried_total", ("d", "http_503"), 2)
    metrics.set("crossdock_queue_pending", ("d",), 7)
    assert metrics.get("crossdock_events_retried_total", ("d", "http_503")) == 2
    assert metrics.get("crossdock_events_retried_total", ("d", "connection")) == 0
    assert metrics.total("crossdock_events_retried_total") == 3
    assert metrics.get("crossdock_queue_pending", ("d",)) == 7


# One ``--workers`` process: its own Metrics on the shared directory, some updates, exit.
CHILD = textwrap.dedent("""
    import sys
    from crossdock import metrics
    received, in_flight, paused, pending = (float(a) for a in sys.argv[1:5])
    m = metrics.Metrics(sources=["web"], destinations=["sink", "idle"])
    m.inc("crossdock_events_received_total", ("web",), received)
    m.set("crossdock_ingest_in_flight", (), in_flight)
    m.set("crossdock_destination_paused", ("sink",), paused)
    m.set("crossdock_queue_pending", ("sink",), pending)
    metrics.register_worker_process(int(sys.argv[5]))
    print(__import__("os").getpid())
""")


def run_child(path: Path, *args: float) -> int:
    env = {MULTIPROC_ENV: str(path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], env=env, check=True,
                         capture_output=True, text=True)  # fmt: skip
    return int(out.stdout)


def test_processes_combine_counters_by_sum_and_gauges_by_meaning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "counter_999999.db").write_bytes(b"stale from a previous run")
    (tmp_path / "worker_7.pid").write_text("1")
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    path, made = metrics_store.prepare_multiprocess_dir()
    assert (path, made) == (str(tmp_path), False)
    assert list(tmp_path.iterdir()) == []

    first = run_child(tmp_path, 12, 1, 0, 5, 0)
    run_child(tmp_path, 8, 2, 1, 7, 1)  # later: its queue reading is the freshest
    names, samples = parse(Metrics().render().decode())
    web, sink = frozenset({("source", "web")}), frozenset({("destination", "sink")})
    assert samples[("crossdock_events_received_total", web)] == 20
    assert samples[("crossdock_ingest_in_flight", frozenset())] == 3  # livesum
    assert samples[("crossdock_destination_paused", sink)] == 1  # livemax
    assert samples[("crossdock_queue_pending", sink)] == 7  # livemostrecent
    idle = frozenset({("destination", "idle")})
    assert samples[("crossdock_events_delivered_total", idle)] == 0
    assert {exposed(f.name) for f in FAMILIES} <= names  # no process has a sample of some
    assert [k for k in samples if k[0] == "crossdock_build_info"]
    # Both processes exited: their pid files stay but they have no process_* any more.
    assert not [k for k in samples if k[0].startswith("process_")]

    metrics_store.process_exited(str(tmp_path), first)
    _, samples = parse(Metrics().render().decode())
    assert samples[("crossdock_events_received_total", web)] == 20  # counters keep a dead share
    assert samples[("crossdock_ingest_in_flight", frozenset())] == 2  # live gauges forget it


def test_live_workers_report_process_metrics_labelled_by_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    metrics_store.register_worker_process(3)  # this test process stands for worker 3
    _, samples = parse(Metrics().render().decode())
    assert samples[("process_resident_memory_bytes", frozenset({("worker", "3")}))] > 0


def test_the_supervisor_makes_and_removes_its_own_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    path, made = metrics_store.prepare_multiprocess_dir()
    assert made
    assert Path(path).is_dir()
    metrics_store.remove_multiprocess_dir(path)
    assert not Path(path).exists()


def test_the_cost_bench_reports_every_variant() -> None:
    bench = Path(__file__).resolve().parent.parent / "bench" / "metrics_cost.py"
    out = subprocess.run([sys.executable, str(bench), "--calls", "200", "--renders", "2"],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    result = json.loads(out)
    assert result["dict"]["inc_ns"] > 0
    for variant in ("old", "prometheus", "prometheus-mp"):
        assert set(result[variant]) >= {"inc_ns", "observe_ns", "render_us", "render_bytes"}
    assert result["prometheus-mp"]["processes"] == 2
