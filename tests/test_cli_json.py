"""``crossdock check --json`` and ``crossdock test --json``: machine-readable, secrets masked."""

from __future__ import annotations

import orjson
import pytest

from crossdock.cli.main import main

SECRET_KEY = "hk_live_JSONSECRET_123456"

CONFIG = """
[[sources]]
id = "web"
type = "segment"
write_keys = ["wk-test"]

[[destinations]]
id = "hook"
plugin = "webhook"
where = "event != 'Ignored'"
[destinations.settings]
url = "https://hooks.example.com/events"
[destinations.settings.headers]
X-Api-Key = "${HOOK_KEY}"
"""


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.delenv("CROSSDOCK_CONFIG", raising=False)
    monkeypatch.setenv("HOOK_KEY", SECRET_KEY)
    path = tmp_path / "crossdock.toml"
    path.write_text(CONFIG)
    return path


def _json(capsys) -> dict:
    captured = capsys.readouterr()
    assert SECRET_KEY not in captured.out + captured.err
    return orjson.loads(captured.out)


def test_check_json_ok(config, capsys) -> None:
    assert main(["check", "--json", "-c", str(config)]) == 0
    report = _json(capsys)
    assert report == {
        "ok": True,
        "config": str(config),
        "problems": [],
        "notes": [],
        "sources": 1,
        "destinations": 1,
    }


def test_check_json_lists_every_problem_without_values(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HOOK_KEY", SECRET_KEY)
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[server]\nlisten = "{SECRET_KEY}"\n' + CONFIG.replace("wk-test", "${NOPE}"))
    assert main(["check", "--json", "-c", str(bad)]) == 1
    report = _json(capsys)
    assert report["ok"] is False
    assert "server.listen: expected host:port" in " ".join(report["problems"])
    assert "sources[0].write_keys[0]: environment variable NOPE is not set" in report["problems"]
    assert all(not p.endswith("problem(s):") for p in report["problems"])


def test_check_json_missing_file(tmp_path, capsys) -> None:
    assert main(["check", "--json", "-c", str(tmp_path / "nope.toml")]) == 1
    [problem] = _json(capsys)["problems"]
    assert "file not found" in problem


def test_test_json_gives_each_events_outcome_and_its_request(config, tmp_path, capsys) -> None:
    events = tmp_path / "events.json"
    plain = {"type": "track", "event": "Ordered", "userId": "u1", "messageId": "m1"}
    events.write_bytes(orjson.dumps([{**plain, "event": "Ignored"}, plain]))
    assert main(["test", "hook", "--json", "--event", str(events), "-c", str(config)]) == 0
    report = _json(capsys)
    assert report["ok"] is True
    assert report["problems"] == []
    first, second = report["events"]
    assert first["event"] == "0"
    assert first["outcome"] == "not sent"
    assert "where condition is false" in first["reason"]
    assert first["requests"] == []
    assert second == {"event": "1", "outcome": "would send", "reason": "", "requests": [0]}
    [request] = report["requests"]
    assert request["method"] == "POST"
    assert request["url"] == "https://hooks.example.com/events"
    assert request["headers"]["X-Api-Key"] == "***"
    body = request["body"]
    assert "Ordered" in orjson.dumps(body).decode()
    assert "status" not in request  # a dry run has no answer


def test_test_json_problems_when_nothing_would_be_sent(config, tmp_path, capsys) -> None:
    events = tmp_path / "events.json"
    events.write_bytes(orjson.dumps({"type": "track", "event": "Ignored", "userId": "u1"}))
    assert main(["test", "hook", "--json", "--event", str(events), "-c", str(config)]) == 1
    report = _json(capsys)
    assert report["ok"] is False
    assert report["problems"] == ["nothing would be sent (add --allow-dropped if that is expected)"]
    assert report["requests"] == []


def test_test_json_unknown_destination_and_invalid_config(config, tmp_path, capsys) -> None:
    event = tmp_path / "e.json"
    event.write_text("{}")
    assert main(["test", "nope", "--json", "--event", str(event), "-c", str(config)]) == 1
    assert _json(capsys)["problems"] == ['unknown destination "nope" (known: hook)']
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.replace("wk-test", "${NOPE}"))
    assert main(["test", "hook", "--json", "--event", str(event), "-c", str(bad)]) == 1
    report = _json(capsys)
    assert all(not p.endswith("problem(s):") for p in report["problems"])
    assert "sources[0].write_keys[0]: environment variable NOPE is not set" in report["problems"]
