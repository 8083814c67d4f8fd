"""The deployment files, checked without a container engine (docs/deployment.md, "What is
checked, and how").

- ``Dockerfile``: its ENTRYPOINT + CMD and HEALTHCHECK commands run in this virtualenv against
  the image's own config (``deploy/crossdock.toml``), with the image's paths mapped to a
  temporary directory; its COPY sources exist and survive ``.dockerignore``; the plugins of the
  ``PLUGINS`` build argument exist.
- ``compose.yaml``: parses, every file it mounts exists, and the pieces agree with each other
  (NATS URL, scrape target, rule files, Grafana provisioning); its Crossdock config
  (``examples/compose.toml``) runs against a real nats-server.
- ``deploy/systemd/crossdock.service``: ``systemd-analyze verify`` (where installed) reports
  nothing, and its ExecStartPre and ExecStart commands run.
- ``deploy/grafana/crossdock.json`` and ``deploy/prometheus/alerts.yml``: every metric and label
  they use exists in a live daemon's ``/metrics``; ``promtool check`` where promtool is installed
  (``$CROSSDOCK_PROMTOOL`` or PATH).
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from crossdock.testing.daemon import free_port
from crossdock.testing.helpers import basic_auth, post_json, read_ndjson, wait_until

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WRITE_KEY = "deploy-write-key-0123456789"
# Prometheus' own series the rules and dashboard may use besides Crossdock's.
PROMETHEUS_SERIES = {"up"}
# Labels Prometheus adds at scrape time, and the histogram bucket label.
SCRAPE_LABELS = {"instance", "job", "le"}


# --- Dockerfile ---------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    return instructions


def instruction(keyword: str) -> str:
    """The arguments of the last ``keyword`` instruction (the one that counts)."""
    found = [args for kw, args in dockerfile() if kw == keyword]
    assert found, f"Dockerfile has no {keyword}"
    return found[-1]


def exec_form(args: str) -> list[str]:
    """A JSON (exec form) argument list; the image relies on it (no shell in between)."""
    value = json.loads(args)
    assert isinstance(value, list), args
    return value


def image_paths(tmp: Path, port: int) -> dict[str, str]:
    """The image's paths and port, mapped to this test's venv, directories and port."""
    return {
        "/opt/crossdock/bin/": f"{BIN}/",
        "/etc/crossdock/": f"{tmp}/etc/",
        "/var/lib/crossdock": f"{tmp}/var",
        "0.0.0.0:8088": f"127.0.0.1:{port}",
        "127.0.0.1:8088": f"127.0.0.1:{port}",
    }


def mapped(text: str, paths: dict[str, str]) -> str:
    for old, new in paths.items():
        text = text.replace(old, new)
    return text


def install_config(source: Path, paths: dict[str, str]) -> None:
    """Put ``source`` where the image (or the unit) reads its config, paths mapped."""
    etc = Path(mapped("/etc/crossdock/", paths))
    etc.mkdir(parents=True, exist_ok=True)
    Path(mapped("/var/lib/crossdock", paths)).mkdir(parents=True, exist_ok=True)
    (etc / "crossdock.toml").write_text(mapped(source.read_text(), paths))


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; the ones still running are killed at teardown."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def start(command: list[str], cwd: Path, log: Path, started: list, env: dict[str, str]):
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=cwd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    started.append(process)
    return process


def run_until_ok(command: list[str], process: subprocess.Popen[bytes], log: Path) -> None:
    """Run ``command`` (a health check) until it exits 0; fail with the log if the daemon died."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"daemon exited {process.returncode}:\n{log.read_text()}"
        if subprocess.run(command, capture_output=True, timeout=10).returncode == 0:
            return
        time.sleep(0.1)
    pytest.fail(f"{command} never succeeded:\n{log.read_text()}")


def test_dockerfile_shape() -> None:
    froms = [args for kw, args in dockerfile() if kw == "FROM"]
    assert all("${PYTHON_IMAGE}" in f for f in froms)
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.\d+-slim\b", (ROOT / "Dockerfile").read_text())
    assert instruction("USER") not in ("root", "0")
    assert instruction("VOLUME").split() == ["/var/lib/crossdock"]
    config = tomllib.loads((ROOT / "deploy/crossdock.toml").read_text())
    assert config["queue"]["path"].startswith("/var/lib/crossdock/"), "the queue is on the volume"
    assert "/ready" in instruction("HEALTHCHECK")


def test_dockerfile_plugins_and_copy_sources_exist() -> None:
    plugins = re.search(r'^ARG PLUGINS="([^"]*)"', (ROOT / "Dockerfile").read_text(), re.M)
    assert plugins, "the PLUGINS build argument has a default"
    for name in plugins.group(1).split():
        assert (ROOT / "plugins" / name / "pyproject.toml").is_file(), name
    ignored = [p for p in (ROOT / ".dockerignore").read_text().splitlines()
               if p.strip() and not p.startswith("#")]  # fmt: skip
    copies = [args.split() for kw, args in dockerfile() if kw == "COPY"]
    sources = [s for parts in copies if not parts[0].startswith("--from") for s in parts[:-1]]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not any(fnmatch.fnmatch(source.rstrip("/"), p) for p in ignored), source
    # What pip needs to build the plugins is not ignored either.
    assert not any(fnmatch.fnmatch("plugins/segmentify/src", p) for p in ignored)


def test_image_entrypoint_and_healthcheck_run(tmp_path: Path, processes) -> None:
    port = free_port()
    paths = image_paths(tmp_path, port)
    install_config(ROOT / "deploy/crossdock.toml", paths)
    command = [mapped(a, paths) for a in exec_form(instruction("ENTRYPOINT"))]
    command += [mapped(a, paths) for a in exec_form(instruction("CMD"))]
    healthcheck = instruction("HEALTHCHECK")
    check = [mapped(a, paths) for a in exec_form(healthcheck[healthcheck.index("CMD") + 3 :])]
    volume = Path(paths["/var/lib/crossdock"])
    log = tmp_path / "daemon.log"

    assert subprocess.run(check, capture_output=True, timeout=10).returncode != 0, "no daemon yet"
    daemon = start(command, volume, log, processes, {"CROSSDOCK_WRITE_KEY": WRITE_KEY})
    run_until_ok(check, daemon, log)

    async def send() -> None:
        async with aiohttp.ClientSession() as session:
            event = {"type": "track", "userId": "u1", "event": "Deployed", "messageId": "d-1"}
            status, _ = await post_json(session, f"http://127.0.0.1:{port}/v1/track", event,
                                        auth=basic_auth(WRITE_KEY))  # fmt: skip
            assert status == 200
        out = volume / "events.ndjson"
        await wait_until(lambda: out.exists() and len(read_ndjson(out)) == 1, timeout=20)

    asyncio.run(send())
    assert (volume / "crossdock.db").is_file(), "the queue lives on the volume"
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, log.read_text()
    assert subprocess.run(check, capture_output=True, timeout=10).returncode != 0


# --- systemd --------------------------------------------------------------------------------


def unit() -> dict[str, list[str]]:
    """The unit's settings (key -> every value, in order)."""
    settings: dict[str, list[str]] = {}
    for line in (ROOT / "deploy/systemd/crossdock.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_systemd_unit_settings() -> None:
    settings = unit()
    assert settings["Type"] == ["exec"] or settings["Type"] == ["notify"]
    assert settings["Restart"] == ["on-failure"]
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome"):
        assert settings[key] == ["true"], key
    assert settings["ProtectSystem"] == ["strict"]
    queue = tomllib.loads((ROOT / "deploy/crossdock.toml").read_text())["queue"]["path"]
    assert any(queue.startswith(p + "/") for p in settings["ReadWritePaths"]), "queue writable"
    assert settings["User"] != ["root"]


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    # verify checks that the commands exist: point them at this venv.
    text = (ROOT / "deploy/systemd/crossdock.service").read_text()
    copy = tmp_path / "crossdock.service"
    copy.write_text(text.replace("/opt/crossdock/bin/", f"{BIN}/"))
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    # Bad values are warnings with exit 0: any output at all is a failure.
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


@pytest.mark.slow
def test_systemd_commands_run(tmp_path: Path, processes) -> None:
    settings = unit()
    port = free_port()
    paths = image_paths(tmp_path, port)
    install_config(ROOT / "deploy/crossdock.toml", paths)
    env = {"CROSSDOCK_WRITE_KEY": WRITE_KEY}
    state = Path(mapped(settings["WorkingDirectory"][0], paths))
    (pre,) = settings["ExecStartPre"]
    checked = subprocess.run([mapped(a, paths) for a in shlex.split(pre)], cwd=state,
                             env={**os.environ, **env}, capture_output=True, text=True,
                             timeout=60)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (exec_start,) = settings["ExecStart"]
    log = tmp_path / "daemon.log"
    daemon = start([mapped(a, paths) for a in shlex.split(exec_start)], state, log, processes, env)
    ready = [
        str(BIN / "python"),
        "-c",
        f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/ready')",
    ]
    run_until_ok(ready, daemon, log)
    daemon.send_signal(signal.SIGTERM)  # KillSignal, to the supervisor (KillMode=mixed)
    assert daemon.wait(60) == 0, log.read_text()


# --- compose ----------------------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def bind_mounts(service: dict) -> dict[str, str]:
    """Target -> host path of a service's bind mounts (short syntax, ``./`` sources)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = source
    return mounts


def test_compose_parses_and_references_existing_files() -> None:
    spec = compose()
    assert set(spec["services"]) >= {"crossdock", "nats", "prometheus", "grafana"}
    for name, service in spec["services"].items():
        for target, source in bind_mounts(service).items():
            assert (ROOT / source).exists(), f"{name}: {source} (mounted at {target})"
        if "build" in service:
            context = ROOT / service["build"]["context"]
            assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file()
            plugins = service["build"].get("args", {}).get("PLUGINS", "").split()
            assert all((ROOT / "plugins" / p / "pyproject.toml").is_file() for p in plugins)
    for volume in (v.split(":")[0] for s in spec["services"].values()
                   for v in s.get("volumes", []) if not v.startswith("./")):  # fmt: skip
        assert volume in spec["volumes"], volume


def test_compose_pieces_agree() -> None:
    spec = compose()
    services = spec["services"]
    crossdock = services["crossdock"]
    config_path = bind_mounts(crossdock)["/etc/crossdock/crossdock.toml"]
    config = tomllib.loads((ROOT / config_path).read_text())
    assert config["queue"]["backend"] == "nats"
    assert "--jetstream" in services["nats"]["command"]
    assert re.fullmatch(r"nats://nats:\d+", config["queue"]["url"])
    listen_port = int(config["server"]["listen"].rsplit(":", 1)[1])
    assert any(p.endswith(f":{listen_port}") for p in crossdock["ports"])
    # Prometheus scrapes the crossdock service on its port and loads the mounted rules.
    prometheus_mounts = bind_mounts(services["prometheus"])
    prometheus = yaml.safe_load((ROOT / prometheus_mounts["/etc/prometheus/prometheus.yml"])
                                .read_text())  # fmt: skip
    for rule_file in prometheus["rule_files"]:
        assert rule_file in prometheus_mounts, rule_file
    (job,) = prometheus["scrape_configs"]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["crossdock"]
    assert sd["port"] == listen_port
    # Grafana: the datasource the dashboard names, and the provider reads the mounted dashboard.
    grafana = bind_mounts(services["grafana"])
    provisioning = ROOT / grafana["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards/crossdock.yml").read_text())
    (provider,) = providers["providers"]
    dashboard_target = next(t for t, s in grafana.items() if s.endswith("crossdock.json"))
    assert Path(dashboard_target).parent == Path(provider["options"]["path"])
    uids = {t["datasource"]["uid"] for t in dashboard_targets(dashboard())}
    assert uids == {source["uid"]}


# --- metrics of the dashboard and the alert rules ---------------------------------------------


def dashboard() -> dict:
    return json.loads((ROOT / "deploy/grafana/crossdock.json").read_text())


def dashboard_targets(board: dict) -> list[dict]:
    return [t for panel in board["panels"] for t in panel.get("targets", [])]


def expressions() -> dict[str, str]:
    """Every PromQL expression of the dashboard (panels and variables) and the alert rules."""
    board = dashboard()
    found = {f"dashboard {t['refId']} of {p['title']!r}": t["expr"]
             for p in board["panels"] for t in p.get("targets", [])}  # fmt: skip
    for var in board["templating"]["list"]:
        query = var["query"]
        found[f"dashboard variable {var['name']}"] = (
            query["query"] if isinstance(query, dict) else query
        )
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            found[f"alert {rule['alert']}"] = rule["expr"]
    return found


METRIC = re.compile(r"\b((?:crossdock|process|python)_[a-zA-Z0-9_]+|up)\b(?!\s*\()")
SELECTOR = re.compile(r"\b(crossdock_[a-zA-Z0-9_]+)\s*\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


def exposition(text: str) -> tuple[set[str], dict[str, set[str]]]:
    """The sample names of a text exposition, and each family's label names (``le`` aside)."""
    names: set[str] = set()
    labels: dict[str, set[str]] = {}
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
        names.add(name)
        family = name if name in families else next(
            (name[: -len(s)] for s in SUFFIXES if name.endswith(s) and name[: -len(s)] in families),
            name,
        )  # fmt: skip
        label_names = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', line)) - {"le"}
        labels.setdefault(family, set()).update(label_names)
        labels.setdefault(name, set()).update(label_names)
    return names | families, labels


def check_expressions(text: str) -> list[str]:
    """Problems: metrics the expressions use that the exposition lacks, and labels they group
    by or match on that none of their metrics carry."""
    names, labels = exposition(text)
    problems = []
    for where, expr in expressions().items():
        used = set(METRIC.findall(expr))
        if not used:
            problems.append(f"{where}: uses no metric: {expr}")
        missing = sorted(u for u in used - PROMETHEUS_SERIES if u not in names)
        if missing:
            problems.append(f"{where}: {missing} not in /metrics")
            continue
        # Labels can only be checked on families that have samples (a family without any,
        # e.g. dead letters before the first one, lists no label names).
        if any(u not in labels for u in used - PROMETHEUS_SERIES):
            continue
        unknown = used_labels(expr) - SCRAPE_LABELS.union(*(labels.get(u, set()) for u in used))
        if unknown:
            problems.append(f"{where}: labels {sorted(unknown)} not on {sorted(used)}")
    return problems


def used_labels(expr: str) -> set[str]:
    """The label names an expression matches on, groups by, or reads with label_values."""
    found = {m.split("=")[0].strip(" !~") for _, matchers in SELECTOR.findall(expr)
             for m in matchers.split(",") if m.strip()}  # fmt: skip
    found |= {g.strip() for group in GROUPING.findall(expr) for g in group.split(",") if g.strip()}
    found |= set(re.findall(r"label_values\([^,]+,\s*(\w+)\)", expr))
    return found


def synthetic(skip_metric: str = "", bare_metric: str = "") -> str:
    """An exposition with every metric the expressions use, each with every label they use;
    ``skip_metric`` left out, ``bare_metric`` without labels."""
    metrics = {m for e in expressions().values() for m in METRIC.findall(e)} - PROMETHEUS_SERIES
    label_names = set().union(*(used_labels(e) for e in expressions().values())) - SCRAPE_LABELS
    text = ""
    for metric in sorted(metrics - {skip_metric}):
        pairs = "" if metric == bare_metric else ",".join(f'{n}="x"' for n in sorted(label_names))
        text += f"# TYPE {metric} gauge\n{metric}{{{pairs}}} 0\n"
    return text


def test_expression_check_catches_unknown_metrics_and_labels() -> None:
    """The checker itself: complete input passes, a missing metric and a label the expressions
    group by that the metric lacks are both reported."""
    assert check_expressions(synthetic()) == []
    missing = check_expressions(synthetic(skip_metric="crossdock_events_delivered_total"))
    assert missing
    assert all("crossdock_events_delivered_total'] not in /metrics" in p for p in missing)
    bare = check_expressions(synthetic(bare_metric="crossdock_queue_pending"))
    assert bare
    assert all("labels ['destination'] not on ['crossdock_queue_pending']" in p for p in bare)


COMPOSE_STREAM = "deploytest"


async def load_and_scrape(url: str, out: Path) -> str:
    """One accepted event (delivered to ``out``) and one refused request; then ``/metrics``."""
    async with aiohttp.ClientSession() as session:
        event = {"type": "track", "userId": "u1", "event": "Scraped", "messageId": "m-1"}
        status, _ = await post_json(session, url + "/v1/track", event, auth=basic_auth(WRITE_KEY))
        assert status == 200
        status, _ = await post_json(session, url + "/v1/track", event, auth=basic_auth("wrong"))
        assert status == 401
        await wait_until(lambda: out.exists() and len(read_ndjson(out)) == 1, timeout=20)
        async with session.get(url + "/metrics") as response:
            return await response.text()


def test_dashboard_and_alert_metrics_exist_in_live_daemon(
    tmp_path: Path, nats_url: str, processes
) -> None:
    """examples/compose.toml against a real nats-server, after one accepted and one refused
    request and a delivery; every metric and label the dashboard and the rules use is there."""
    port = free_port()
    paths = {**image_paths(tmp_path, port), "nats://nats:4222": nats_url,
             'stream = "crossdock"': f'stream = "{COMPOSE_STREAM}"'}  # fmt: skip
    install_config(ROOT / "examples/compose.toml", paths)
    volume = Path(paths["/var/lib/crossdock"])
    log = tmp_path / "daemon.log"
    config = Path(paths["/etc/crossdock/"]) / "crossdock.toml"
    command = [str(BIN / "crossdock"), "run", "-c", str(config)]
    daemon = start(command, volume, log, processes, {"CROSSDOCK_WRITE_KEY": WRITE_KEY})
    url = f"http://127.0.0.1:{port}"
    ready = [str(BIN / "python"), "-c", f"import urllib.request as u; u.urlopen('{url}/ready')"]
    run_until_ok(ready, daemon, log)
    text = asyncio.run(load_and_scrape(url, volume / "events.ndjson"))
    assert check_expressions(text) == []
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, log.read_text()


def promtool() -> str:
    tool = os.environ.get("CROSSDOCK_PROMTOOL") or shutil.which("promtool")
    if not tool:
        pytest.skip("promtool not installed (Debian package prometheus; or $CROSSDOCK_PROMTOOL)")
    return tool


def test_promtool_checks_rules_and_config(tmp_path: Path) -> None:
    tool = promtool()
    rules = ROOT / "deploy/prometheus/alerts.yml"
    result = subprocess.run([tool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    config = (ROOT / "deploy/prometheus/prometheus.yml").read_text()
    copy = tmp_path / "prometheus.yml"
    copy.write_text(config.replace("/etc/prometheus/alerts.yml", str(rules)))
    result = subprocess.run([tool, "check", "config", str(copy)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
