"""Metrics through prometheus_client: every family and every configured source's and
destination's series from the start, process metrics and build info on a live daemon, batch
observations, and how several processes' values combine (``--workers``)."""

from __future__ import annotations

import ast
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
from crossdock.testing.helpers import basic_auth, wait_until

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


# ---------------------------------------------------------------------------------------------
# Reason-labelled families: every closed set of reasons at zero from the start


SECTIONED = (
    CONFIG
    + """
[[destinations]]
id = "sections"
plugin = "file"
[destinations.settings]
path = "{workdir}/sections.ndjson"
[destinations.mapping.dispatch]
select = "lookup('kinds', event)"
[destinations.mapping.sections.order]
where = "properties.order_id != null"
[destinations.mapping.sections.order.fields]
orderId = "properties.order_id"
[destinations.mapping.sections.audit]
drop = true
[destinations.tables.kinds]
"Order Completed" = "order"
"Audit" = "audit"
"""
)


def reason_series(samples: Samples, name: str, owner: tuple[str, str]) -> dict[str, float]:
    """``reason`` (or ``operation``) → value of ``name``'s series of ``owner``."""
    return {
        value: v
        for (sample, labels), v in samples.items()
        if sample == name and owner in labels
        for key, value in labels
        if key in ("reason", "operation")
    }


async def test_every_closed_reason_is_at_zero_from_the_start(crossdock_daemon) -> None:
    daemon = crossdock_daemon(SECTIONED)
    async with aiohttp.ClientSession() as session, session.get(daemon.url + "/metrics") as r:
        _, samples = parse(await r.text())
    rejected = "crossdock_requests_rejected_total"
    for source, kind in (("web", "segment"), ("hook", "webhook")):
        got = reason_series(samples, rejected, ("source", source))
        expected = {*metrics_store.REJECT_REASONS, *metrics_store.SOURCE_REJECT_REASONS[kind]}
        assert got == dict.fromkeys(expected, 0.0), source
    for destination in ("sink", "never", "sections"):
        owner = ("destination", destination)
        for name, reasons in (
            ("crossdock_events_dead_lettered_total", metrics_store.DEAD_LETTER_REASONS),
            ("crossdock_events_retried_total", metrics_store.RETRY_REASONS),
            ("crossdock_queue_write_retries_total", metrics_store.QUEUE_WRITE_OPERATIONS),
        ):
            assert reason_series(samples, name, owner) == dict.fromkeys(reasons, 0.0), name
    dropped = "crossdock_events_dropped_total"
    # the file destination's default mapping is a plain JMESPath mapping
    assert reason_series(samples, dropped, ("destination", "sink")) == {"null payload": 0.0}
    kinds = ("alias", "group", "identify", "other", "page", "screen", "track")
    assert reason_series(samples, dropped, ("destination", "sections")) == dict.fromkeys(
        ["section order: null payload", "section order: where false",
         *(f"unknown section (type {k})" for k in kinds)], 0.0,
    )  # fmt: skip

    # A refusal and a drop land on the declared series (same label values as the code emits).
    async with aiohttp.ClientSession() as session:
        auth = {"Authorization": basic_auth("wk-metrics-0123456789")}
        async with session.post(daemon.url + "/v1/track", json={"type": "track"},
                                headers=auth) as r:  # fmt: skip
            assert r.status == 400
            code = (await r.json())["code"]
        order = {"type": "track", "userId": "u", "event": "Order Completed",
                 "properties": {"order_id": None, "total": 1}}  # fmt: skip
        async with session.post(daemon.url + "/v1/track", json=order, headers=auth) as r:
            assert r.status == 200
        text = ""

        async def dropped_once() -> bool:
            nonlocal text
            async with session.get(daemon.url + "/metrics") as r:
                text = await r.text()
            owner = ("destination", "sections")
            return reason_series(parse(text)[1], dropped, owner)["section order: where false"] == 1

        await wait_until(dropped_once, timeout=20, what="the drop counted")
    _, samples = parse(text)
    assert code in metrics_store.REJECT_REASONS
    assert reason_series(samples, rejected, ("source", "web"))[code] == 1
    # no series besides the declared ones appeared for the drop
    assert len(reason_series(samples, dropped, ("destination", "sections"))) == 9


def test_drop_reasons_are_closed_for_the_core_transformers_only() -> None:
    assert metrics_store.drop_reasons(lambda event: None) == ("mapping",)
    plain = crossdock.compile_mapping({"x": "a"})
    assert metrics_store.drop_reasons(plain) == ("null payload",)

    class Own:
        def __call__(self, event: object) -> None:
            return None

        def drop_reason(self, event: object) -> str:
            return "no type"

    assert metrics_store.drop_reasons(Own()) == ()  # a plugin's own reasons: an open set


# The closed sets must hold every reason the code emits: read the emitting code (its literal
# reasons, parameters followed to their call sites in the module, IfExp branches, f-strings on
# a parameter). A reason this cannot read fails the test, so a new kind of emission is looked at.

CORE = Path(crossdock.__file__).resolve().parent


class Reasons:
    """The string values an expression of one module can take."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tree = ast.parse(path.read_text())
        self.functions = {
            f.name: f
            for f in ast.walk(self.tree)
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        self.open: set[str] = set()  # f-string patterns on something not a parameter

    def enclosing(self, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        """The innermost function holding ``node``."""
        holding = [
            f
            for f in ast.walk(self.tree)
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
            and any(n is node for n in ast.walk(f))
        ]
        return min(holding, key=lambda f: len(list(ast.walk(f))), default=None)

    def values(self, node: ast.expr, function: ast.AST | None) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.IfExp):
            return self.values(node.body, function) | self.values(node.orelse, function)
        if isinstance(node, ast.JoinedStr):
            return self.joined(node, function)
        if isinstance(node, ast.Name) and function is not None:
            params = [a.arg for a in (*function.args.args, *function.args.kwonlyargs)]
            if node.id in params:
                return self.arguments(function, node.id)
            assigned = [
                a.value for a in ast.walk(function) if isinstance(a, ast.Assign)
                for t in a.targets if isinstance(t, ast.Name) and t.id == node.id
            ]  # fmt: skip
            if assigned:
                return set().union(*(self.values(v, function) for v in assigned))
        raise AssertionError(f"{self.path.name}:{node.lineno}: cannot read {ast.unparse(node)!r}")

    def joined(self, node: ast.JoinedStr, function: ast.AST | None) -> set[str]:
        parts: list[set[str]] = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                parts.append({str(part.value)})
                continue
            try:
                parts.append(self.values(part.value, function))  # type: ignore[attr-defined]
            except AssertionError:
                self.open.add(ast.unparse(node))
                return set()
        out = {""}
        for options in parts:
            out = {a + b for a in out for b in options}
        return out

    def arguments(self, function: ast.FunctionDef | ast.AsyncFunctionDef, param: str) -> set[str]:
        """What the module's calls of ``function`` pass as ``param`` (and its default)."""
        args = function.args
        positional = [a.arg for a in args.args if a.arg != "self"]
        found: set[str] = set()
        defaults = dict(zip([a.arg for a in args.args][-len(args.defaults):] if args.defaults
                            else [], args.defaults, strict=True))  # fmt: skip
        defaults.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                         if d is not None})  # fmt: skip
        if param in defaults:
            found |= self.values(defaults[param], function)
        for call in ast.walk(self.tree):
            if not isinstance(call, ast.Call) or _called(call) != function.name:
                continue
            caller = self.enclosing(call)
            given = [k.value for k in call.keywords if k.arg == param]
            index = positional.index(param) if param in positional else None
            if index is not None and index < len(call.args):
                given.append(call.args[index])
            for value in given:
                found |= self.values(value, caller)
        return found

    def emitted(self, callee: str, *, keyword: str | None = None, index: int | None = None,
                default: str | None = None, skip: tuple[str, ...] = ()) -> set[str]:  # fmt: skip
        """Every value passed to ``callee`` as ``keyword`` or positional ``index``, but those
        written as one of ``skip``."""
        found: set[str] = set()
        for call in ast.walk(self.tree):
            if not isinstance(call, ast.Call) or _called(call) != callee:
                continue
            given = [k.value for k in call.keywords if k.arg == keyword] if keyword else []
            if index is not None and index < len(call.args):
                given.append(call.args[index])
            if not given and default is not None:
                found.add(default)
            for value in given:
                if ast.unparse(value) not in skip:
                    found |= self.values(value, self.enclosing(call))
        return found

    def counted(self, family: str, *, skip: tuple[str, ...] = ()) -> set[str]:
        """The second label of every ``*.inc(family, (owner, reason))``, but those written as
        one of ``skip``."""
        found: set[str] = set()
        for call in ast.walk(self.tree):
            if (_called(call) == "inc" and call.args and isinstance(call.args[0], ast.Constant)
                    and call.args[0].value == family):  # fmt: skip
                labels = call.args[1]
                assert isinstance(labels, ast.Tuple), ast.unparse(call)
                if ast.unparse(labels.elts[1]) in skip:
                    continue
                found |= self.values(labels.elts[1], self.enclosing(call))
        return found


def _called(node: ast.AST) -> str | None:
    if not isinstance(node, ast.Call):
        return None
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def test_the_closed_sets_hold_every_reason_the_delivery_code_emits() -> None:
    worker = Reasons(CORE / "deliver" / "worker.py")
    dead = worker.counted("crossdock_events_dead_lettered_total")
    assert dead == set(metrics_store.DEAD_LETTER_REASONS)
    writes = worker.counted("crossdock_queue_write_retries_total")
    assert writes == set(metrics_store.QUEUE_WRITE_OPERATIONS)
    # retries: the words of retry_reason, and its open http_<status>
    outcomes = Reasons(CORE / "deliver" / "outcomes.py")
    function = outcomes.functions["retry_reason"]
    words = set().union(*(
        outcomes.values(r.value, function) for r in ast.walk(function)
        if isinstance(r, ast.Return) and r.value is not None
    ))  # fmt: skip
    assert words == set(metrics_store.RETRY_REASONS)
    assert outcomes.open == {"f'http_{outcome.status}'"}
    assert not worker.open


def test_the_closed_sets_hold_every_reason_ingest_emits() -> None:
    ingest = CORE / "ingest"
    everywhere: set[str] = set()
    for path in sorted(ingest.glob("*.py")):
        if path.name == "body.py":
            continue
        module = Reasons(path)
        # normalize re-raises an _Invalid (read below) as an IngestError with its code
        everywhere |= module.emitted("IngestError", keyword="code", default="bad_request",
                                     skip=("exc.code",))  # fmt: skip
        everywhere |= module.emitted("_Invalid", index=2)
        # ``exc.code``: an IngestError's code, read from every IngestError here
        everywhere |= module.counted("crossdock_requests_rejected_total", skip=("exc.code",))
        assert not module.open, path
    assert everywhere <= set(metrics_store.REJECT_REASONS), everywhere - set(
        metrics_store.REJECT_REASONS
    )
    body = Reasons(ingest / "body.py")
    body_codes = body.emitted("IngestError", keyword="code", default="bad_request")
    assert body_codes == {"too_large", "invalid_encoding", "invalid_json"}
    for name, kind in (("segment.py", "segment"), ("segment_webhook.py", "segment-webhook"),
                       ("webhook.py", "webhook")):  # fmt: skip
        module = Reasons(ingest / "sources" / name)
        codes = module.emitted("IngestError", keyword="code", default="bad_request")
        declared = {*metrics_store.REJECT_REASONS, *metrics_store.SOURCE_REJECT_REASONS[kind]}
        assert codes | body_codes <= declared, (kind, (codes | body_codes) - declared)
        assert not module.open, name
