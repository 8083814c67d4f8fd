"""The ``crossdock`` command via ``main(argv)`` with captured output (and once as a process)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

import crossdock
from crossdock.cli.main import main
from crossdock.plugins.discovery import BUILTIN_PLUGINS

SECRET_KEY = "hk_live_TOPSECRET_998877"
SIGNING = "whsec_SIGNING_556677"

HOOK_CONFIG = """
[queue]
path = "q.db"

[[sources]]
id = "web"
type = "segment"
write_keys = ["wk-test"]

[[destinations]]
id = "hook"
plugin = "webhook"
[destinations.settings]
url = "https://hooks.example.com/events"
secret = "${HOOK_SIGNING}"
[destinations.settings.headers]
X-Api-Key = "${HOOK_KEY}"
Authorization = "Bearer ${HOOK_KEY}"
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("CROSSDOCK_CONFIG", raising=False)
    monkeypatch.delenv("CROSSDOCK_DISABLE_PLUGINS", raising=False)


@pytest.fixture
def hook_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_KEY", SECRET_KEY)
    monkeypatch.setenv("HOOK_SIGNING", SIGNING)
    path = tmp_path / "crossdock.toml"
    path.write_text(HOOK_CONFIG)
    return path


def test_init_then_check(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    assert (tmp_path / "crossdock.toml").exists()
    assert main(["init"]) == 1  # never overwrites without --force
    assert "exists" in capsys.readouterr().err
    assert main(["init", "--force"]) == 0
    capsys.readouterr()
    assert main(["check"]) == 0
    assert capsys.readouterr().out.strip() == "ok: 1 sources, 1 destinations"


def test_init_plugin_writes_a_distribution(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--plugin", "acme"]) == 0
    root = tmp_path / "crossdock-acme"
    assert (root / "pyproject.toml").is_file()
    assert (root / "src" / "crossdock_acme" / "mapping.toml").is_file()
    assert (root / "tests" / "test_acme.py").is_file()
    assert "crossdock-acme" in capsys.readouterr().out
    assert main(["init", "--plugin", "acme"]) == 1  # never overwrites without --force
    assert "use --force" in capsys.readouterr().err
    assert main(["init", "--plugin", "acme", "--force"]) == 0
    assert main(["init", "--plugin", "acme", "--dir", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "src" / "crossdock_acme" / "__init__.py").is_file()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Acme", "'Acme' is not a lower-case slug"),
        ("acme_cloud", "'acme_cloud' is not a lower-case slug"),
        ("acme--cloud", "'acme--cloud' is not a lower-case slug"),
        ("acme-", "'acme-' is not a lower-case slug"),
        ("1acme", "'1acme' is not a lower-case slug"),
        ("crossdock-acme", "without the crossdock prefix (like 'acme')"),
        ("webhook", "'webhook' is the name of a built-in type"),
        ("a" * 25, "is longer than 24 characters"),
    ],
)
def test_init_plugin_refuses_a_bad_name_precisely(tmp_path, monkeypatch, capsys, name, message):
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--plugin", name]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_init_plugin_arguments_go_together(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["init", "x.toml", "--plugin", "acme"]) == 2
    assert "use --dir" in capsys.readouterr().err
    assert main(["init", "--dir", "d"]) == 2
    assert "--dir goes with --plugin" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["init", "--plugin", "acme", "--dir", "file", "--force"]) == 1
    assert list(tmp_path.iterdir()) == [tmp_path / "file"]


def test_check_config_env_var(tmp_path, monkeypatch, capsys):
    path = tmp_path / "elsewhere.toml"
    assert main(["init", str(path)]) == 0
    monkeypatch.setenv("CROSSDOCK_CONFIG", str(path))
    capsys.readouterr()
    assert main(["check"]) == 0
    assert "ok: 1 sources" in capsys.readouterr().out


def test_check_lists_every_problem_without_values(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(
        f"""
[server]
listen = "{SECRET_KEY}"
[[sources]]
id = "web"
type = "segment"
write_keys = []
[[destinations]]
id = "x"
plugin = "no-such-vendor"
[[destinations]]
id = "hook"
plugin = "webhook"
[destinations.settings]
url = "{SECRET_KEY}"
"""
    )
    assert main(["check", "-c", str(path)]) == 1
    out = capsys.readouterr().out
    assert "server.listen: expected host:port" in out
    assert "sources[0].write_keys: must have at least 1 item(s)" in out
    assert 'destinations[0].plugin: unknown destination type "no-such-vendor"' in out
    assert "destinations[1].settings.url: expected an http:// or https:// URL" in out
    assert SECRET_KEY not in out


def test_check_missing_file(tmp_path, capsys):
    assert main(["check", "-c", str(tmp_path / "nope.toml")]) == 1
    assert "file not found" in capsys.readouterr().out


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["check", "--no-such-flag"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["test", "hook"])  # --event is required
    assert info.value.code == 2
    assert main([]) == 2


def test_run_refuses_fewer_than_one_worker(hook_config, capsys):
    assert main(["run", "-c", str(hook_config), "--workers", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err


def test_run_refuses_invalid_config(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('[queue]\nbackend = "kafka"\n')
    assert main(["run", "-c", str(path)]) == 1
    assert "queue.backend: must be one of sqlite, nats" in capsys.readouterr().err


def test_plugins_json_lists_builtins_with_version(capsys):
    code = main(["plugins", "--json"])
    rows = {r["name"]: r for r in orjson.loads(capsys.readouterr().out)}
    for name in BUILTIN_PLUGINS:
        assert rows[name]["distribution"] == "crossdock"
        assert rows[name]["version"] == crossdock.__version__
        assert rows[name]["status"] == "ok", rows[name]
    assert rows["crossdock.deliver.destinations.file"]["destination_types"] == ["file"]
    assert rows["crossdock.ingest.sources.segment"]["source_types"] == ["segment"]
    assert "crossdock_make_transformer" in rows["crossdock.transform.default"]["hooks"]
    assert code == (1 if any(r["status"].startswith("failed") for r in rows.values()) else 0)


def test_plugins_table(capsys):
    main(["plugins"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "PLUGIN",
        "DISTRIBUTION",
        "VERSION",
        "SOURCES",
        "DESTINATIONS",
        "HOOKS",
        "STATUS",
    ]
    file_row = next(
        line for line in lines if line.startswith("crossdock.deliver.destinations.file")
    )
    assert file_row.split()[1:5] == ["crossdock", crossdock.__version__, "-", "file"]
    # aligned: the status column starts at the same offset on every row
    offsets = {line.rindex(" ok") for line in lines[1:] if line.endswith(" ok")}
    assert len(offsets) == 1


def test_test_prints_request_with_secrets_masked(hook_config, tmp_path, capsys):
    event = tmp_path / "event.json"
    event.write_bytes(
        orjson.dumps(
            {"type": "track", "event": "Clicked", "userId": "u1", "properties": {"k": SECRET_KEY}}
        )
    )
    assert main(["test", "hook", "--event", str(event), "-c", str(hook_config)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("POST https://hooks.example.com/events\n")
    assert "X-Api-Key: ***" in out
    assert "Authorization: Bearer ***" in out
    assert "X-Signature: " in out
    assert '"event": "Clicked"' in out  # pretty-printed JSON body
    assert SECRET_KEY not in out
    assert SIGNING not in out
    assert "dry run" in out


def test_test_unknown_destination(hook_config, tmp_path, capsys):
    event = tmp_path / "e.json"
    event.write_text('{"type": "track", "event": "x", "userId": "u"}')
    assert main(["test", "nope", "--event", str(event), "-c", str(hook_config)]) == 1
    assert 'unknown destination "nope" (known: hook)' in capsys.readouterr().err


def test_test_invalid_event(hook_config, tmp_path, capsys):
    event = tmp_path / "e.json"
    event.write_text('{"type": "track", "userId": "u"}')
    assert main(["test", "hook", "--event", str(event), "-c", str(hook_config)]) == 1
    assert "event 0: invalid: event: required for track" in capsys.readouterr().out


async def _dead_letter_two(path: Path) -> None:
    from crossdock.queue import DeadLetter
    from crossdock.queue.sqlite import SqliteQueue

    queue = SqliteQueue(path)
    await queue.open(["hook"])
    events = [
        {"type": "track", "event": f"e{i}", "userId": "u", "messageId": f"m{i}"} for i in range(2)
    ]
    await queue.append(events)
    fetched = await queue.fetch("hook", 10, time.time())
    assert len(fetched) == 2
    dead = [
        DeadLetter(seq=q.seq, event=q.event, reason=f"bad key {SECRET_KEY}", attempts=1, status=400)
        for q in fetched
    ]
    await queue.settle("hook", [], dead=dead)
    await queue.close()


def test_dlq_list_replay_purge(hook_config, capsys):
    pytest.importorskip("crossdock.queue.sqlite")
    asyncio.run(_dead_letter_two(hook_config.parent / "q.db"))
    config = ["-c", str(hook_config)]

    assert main(["dlq", "list", "--json", *config]) == 0
    rows = orjson.loads(capsys.readouterr().out)
    assert [r["event"]["event"] for r in rows] == ["e0", "e1"]
    assert all(r["destination"] == "hook" and r["status"] == 400 for r in rows)
    assert all(SECRET_KEY not in r["reason"] for r in rows)

    assert main(["dlq", "list", "hook", *config]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:2] == ["ID", "DESTINATION"]
    assert SECRET_KEY not in table

    assert main(["dlq", "replay", "hook", "--id", str(rows[0]["id"]), *config]) == 0
    assert capsys.readouterr().out.strip() == "replayed 1 event(s)"
    assert main(["dlq", "purge", *config]) == 2  # needs DEST, --id or --all
    capsys.readouterr()
    assert main(["dlq", "purge", "hook", *config]) == 0
    assert capsys.readouterr().out.strip() == "purged 1 event(s)"
    assert main(["dlq", "list", *config]) == 0
    assert "no dead-lettered events" in capsys.readouterr().out
    assert main(["dlq", "list", "ghost", *config]) == 1


def test_console_script_runs(tmp_path):
    exe = Path(sys.executable).parent / "crossdock"
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    proc = subprocess.run(
        [str(exe), "check", "-c", str(tmp_path / "missing.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "file not found" in proc.stdout


@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
async def test_capture_session_records_requests():
    import aiohttp

    from crossdock.cli.capture import CaptureSession
    from crossdock.cli.test import mask_headers

    session = CaptureSession()
    auth = aiohttp.BasicAuth(SECRET_KEY, "")
    async with session.post("https://api.example.com/v1/batch", json={"a": 1}, auth=auth) as resp:
        assert resp.status == 200
        assert await resp.json() == {"success": True}
        assert await resp.text() == '{"success": true}'
    resp = await session.put("https://x.example/p", data=b"raw", params={"q": "1"})
    assert await resp.read() == b'{"success": true}'
    first, second = session.requests
    assert (first.method, first.url, first.body) == (
        "POST",
        "https://api.example.com/v1/batch",
        b'{"a":1}',
    )
    assert first.headers["Authorization"].startswith("Basic ")
    assert (second.method, second.url, second.body) == ("PUT", "https://x.example/p?q=1", b"raw")
    secrets = [crossdock.Secret(SECRET_KEY)]
    import base64

    encoded = base64.b64encode(SECRET_KEY.encode()).decode()
    masked = mask_headers({**first.headers, "X-Token": f"t {encoded}"}, secrets)
    assert masked["Authorization"] == "Basic ***"
    assert masked["X-Token"] == "***"


async def test_test_send_delivers_and_prints_the_answer(tmp_path, monkeypatch):
    import asyncio
    import sys

    from crossdock.testing.fakes import Answer, FakeVendor

    async with FakeVendor() as fake:
        fake.script([Answer(200, body={"ok": True, "echo": SECRET_KEY})])
        config = tmp_path / "crossdock.toml"
        config.write_text(HOOK_CONFIG.replace("https://hooks.example.com", fake.url))
        event = tmp_path / "event.json"
        event.write_bytes(orjson.dumps({"type": "track", "event": "Sent", "userId": "u1"}))
        env = {**os.environ, "HOOK_KEY": SECRET_KEY, "HOOK_SIGNING": SIGNING}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "crossdock", "test", "hook", "--event", str(event),
            "-c", str(config), "--send",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        )  # fmt: skip
        out = (await asyncio.wait_for(proc.communicate(), 60))[0].decode()
        assert proc.returncode == 0, out
        [request] = fake.requests
    assert request.json()["event"] == "Sent"
    assert request.headers["X-Api-Key"] == SECRET_KEY  # really sent with the real key
    assert out.startswith(f"POST {fake.url}/events\n")
    assert "200" in out
    assert SECRET_KEY not in out  # masked in the request headers and the vendor's answer
    assert SIGNING not in out


def test_check_builds_transformers_and_reports_their_failures_masked():
    from types import SimpleNamespace

    from crossdock.cli.main import transformer_problems

    secret = crossdock.Secret("tr-secret-123456")

    class Registry:
        def make_transformer(self, destination):
            if destination.id == "bad":
                raise crossdock.PluginError(
                    "acme", f"table 'kinds' names no fields ({secret.reveal()})"
                )
            return lambda event: event

    config = SimpleNamespace(
        destinations=[SimpleNamespace(id="good"), SimpleNamespace(id="bad")],
        secrets=lambda: [secret],
    )
    [problem] = transformer_problems(config, Registry())
    assert problem.startswith("destinations[1] (bad): ")
    assert "names no fields" in problem
    assert secret.reveal() not in problem


ROUTED_CONFIG = """
[queue]
path = "q.db"

[[sources]]
id = "web"
type = "segment"
write_keys = ["wk-test"]

[[sources]]
id = "app"
type = "webhook"
path = "/hooks/app"

[[destinations]]
id = "orders"
plugin = "webhook"
sources = ["app"]
where = "event != 'Ignored'"
[destinations.settings]
url = "https://hooks.example.com/orders"
"""


@pytest.fixture
def routed_config(tmp_path):
    path = tmp_path / "crossdock.toml"
    path.write_text(ROUTED_CONFIG)
    return path


def _captured(event: str, source: str) -> dict[str, object]:
    """An event as /admin/tail or a file destination shows it: already accepted by ``source``."""
    return {
        "type": "track",
        "event": event,
        "userId": "u1",
        "messageId": f"m-{event}",
        "context": {"crossdock": {"source": source, "sources": [source]}},
    }


def test_test_numbers_events_as_in_the_input_and_says_would_send(routed_config, tmp_path, capsys):
    events = tmp_path / "events.json"
    plain = {"type": "track", "event": "Ordered", "userId": "u1"}
    events.write_bytes(orjson.dumps([{**plain, "event": "Ignored"}, plain]))
    assert main(["test", "orders", "--event", str(events), "-c", str(routed_config)]) == 0
    out = capsys.readouterr().out
    assert "event 0: not sent: filtered: the destination's where condition is false" in out
    assert "event 1: would send" in out
    assert "Delivered" not in out
    assert "event 0: would send" not in out


def test_test_fails_when_every_event_is_dropped_unless_allowed(routed_config, tmp_path, capsys):
    events = tmp_path / "events.json"
    events.write_bytes(orjson.dumps({"type": "track", "event": "Ignored", "userId": "u1"}))
    args = ["test", "orders", "--event", str(events), "-c", str(routed_config)]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "event 0: not sent: filtered: the destination's where condition is false" in captured.out
    assert "--allow-dropped" in captured.err
    assert main([*args, "--allow-dropped"]) == 0
    assert "nothing would be sent" in capsys.readouterr().out


def test_test_checks_a_captured_event_as_its_own_source_saw_it(routed_config, tmp_path, capsys):
    """A captured event is neither looped (it already names its source) nor tested as the
    destination's first source: its own source decides the routing, as live."""
    events = tmp_path / "events.json"
    events.write_bytes(orjson.dumps([_captured("A", "app"), _captured("B", "web")]))
    args = ["test", "orders", "--event", str(events), "-c", str(routed_config)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "event 0: would send" in out
    assert (
        "event 1: not sent: filtered: source 'web' is not among this destination's sources" in out
    )
    assert "loop" not in out


def test_test_source_option_and_the_loop_check(routed_config, tmp_path, capsys):
    events = tmp_path / "events.json"
    # not captured (no source of its own), but it already passed "app", where it is tested
    looped = {"type": "track", "event": "A", "userId": "u", "context": {"crossdock": {}}}
    looped["context"]["crossdock"]["sources"] = ["app"]
    events.write_bytes(orjson.dumps(looped))
    args = ["test", "orders", "--event", str(events), "-c", str(routed_config)]
    assert main(args) == 1
    assert "event 0: not sent: loop check: it already passed source 'app'" in (
        capsys.readouterr().out
    )
    plain = tmp_path / "plain.json"
    plain.write_bytes(orjson.dumps({"type": "track", "event": "A", "userId": "u"}))
    base = ["test", "orders", "--event", str(plain), "-c", str(routed_config)]
    assert main([*base, "--source", "web"]) == 1
    assert "source 'web' is not among" in capsys.readouterr().out
    assert main([*base, "--source", "nope"]) == 1
    assert 'unknown source "nope" (known: web, app)' in capsys.readouterr().err


def test_test_decodes_a_body_with_the_sources_ingestor(tmp_path, capsys):
    """A body captured from a mapped webhook sender is mapped by that source, as live."""
    config = tmp_path / "crossdock.toml"
    config.write_text(
        """
[queue]
path = "q.db"

[[sources]]
id = "shop"
type = "webhook"
path = "/hooks/shop"
[sources.mapping]
type = "'track'"
event = "action"
userId = "customer"

[[destinations]]
id = "out"
plugin = "webhook"
[destinations.settings]
url = "https://hooks.example.com/out"
"""
    )
    body = tmp_path / "body.json"
    body.write_bytes(orjson.dumps([{"action": "Bought", "customer": "c1"}, {"customer": "c2"}]))
    assert main(["test", "out", "--event", str(body), "-c", str(config)]) == 1
    out = capsys.readouterr().out
    assert '"event": "Bought"' in out
    assert '"userId": "c1"' in out
    assert "event 0: would send" in out
    assert "event 1: invalid: event: required for track" in out


def test_check_prints_a_transformers_notes_masked():
    from types import SimpleNamespace

    from crossdock.cli.main import transformer_problems

    secret = crossdock.Secret("note-secret-123456")

    class Noted:
        def __call__(self, event):
            return event

        def notes(self):
            return [f"no default currency ({secret.reveal()})"]

    class Registry:
        def make_transformer(self, destination):
            return Noted() if destination.id == "noted" else (lambda event: event)

    config = SimpleNamespace(
        destinations=[SimpleNamespace(id="plain"), SimpleNamespace(id="noted")],
        secrets=lambda: [secret],
    )
    notes: list[str] = []
    assert transformer_problems(config, Registry(), notes=notes) == []
    assert notes == ["destinations[1] (noted): no default currency (***)"]
