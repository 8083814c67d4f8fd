"""``${VAR:-default}`` and ``VAR_FILE`` secrets in ``crossdock.toml`` (expand_env)."""

from __future__ import annotations

import logging

import pytest

from crossdock.cli.main import main
from crossdock.config.load import expand_env, parse_config
from crossdock.errors import ConfigError
from crossdock.logs import RedactSecrets
from crossdock.plugins.registry import load_registry

FILE_SECRET = "wk_from_FILE_SECRET_31337"

CONFIG = """
[queue]
path = "q.db"

[[sources]]
id = "web"
type = "segment"
write_keys = ["${WEB_WRITE_KEY}"]

[[destinations]]
id = "hook"
plugin = "webhook"
[destinations.settings]
url = "${HOOK_URL:-https://hooks.example.com/events}"
[destinations.settings.headers]
X-Api-Key = "${WEB_WRITE_KEY}"
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("CROSSDOCK_CONFIG", "CROSSDOCK_DISABLE_PLUGINS", "WEB_WRITE_KEY", "HOOK_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "run" / "secrets" / "web_write_key"
    path.parent.mkdir(parents=True)
    path.write_text(FILE_SECRET + "\n")
    return path


def test_default_when_unset_or_empty_value_when_set() -> None:
    data = {"a": "${X:-fallback}", "b": "${X:-}", "c": "pre-${X:-d}-post"}
    assert expand_env(data, {}).data == {"a": "fallback", "b": "", "c": "pre-d-post"}
    assert expand_env(data, {"X": ""}).data["a"] == "fallback"
    got = expand_env(data, {"X": "real"})
    assert got.data == {"a": "real", "b": "real", "c": "pre-real-post"}
    assert got.values == ["real", "real", "real"]
    assert got.problems == []


def test_defaults_are_not_secrets_and_may_hold_any_text_but_a_brace() -> None:
    got = expand_env({"u": "${U:-http://h:8/p?q=1&r=$x}"}, {})
    assert got.data == {"u": "http://h:8/p?q=1&r=$x"}
    assert got.values == []


def test_file_variable_reads_the_file_without_trailing_newlines(secret_file) -> None:
    secret_file.write_text(FILE_SECRET + "\r\n\n")
    env = {"WEB_WRITE_KEY_FILE": str(secret_file)}
    got = expand_env({"k": "${WEB_WRITE_KEY}", "d": "${WEB_WRITE_KEY:-no}"}, env)
    assert got.problems == []
    assert got.data == {"k": FILE_SECRET, "d": FILE_SECRET}
    assert set(got.values) == {FILE_SECRET}


def test_file_and_variable_together_is_a_problem(secret_file) -> None:
    env = {"K": "v", "K_FILE": str(secret_file)}
    got = expand_env({"s": {"t": "${K}"}}, env)
    assert got.problems == ["s.t: set K or K_FILE, not both"]
    assert got.failed == {"s.t"}


def test_unreadable_file_is_a_problem_naming_the_file_not_a_value(tmp_path) -> None:
    missing = tmp_path / "nope"
    got = expand_env({"t": "${K:-dflt}"}, {"K_FILE": str(missing)})
    assert got.problems == [f"t: K_FILE: cannot read {missing}: FileNotFoundError"]
    assert got.failed == {"t"}
    (tmp_path / "bin").write_bytes(b"\xff\xfe")
    got = expand_env({"t": "${K}"}, {"K_FILE": str(tmp_path / "bin")})
    assert got.problems == [f"t: K_FILE: cannot read {tmp_path / 'bin'}: UnicodeDecodeError"]


def test_missing_without_default_still_names_the_variable() -> None:
    got = expand_env({"t": "${NOPE}"}, {})
    assert got.problems == ["t: environment variable NOPE is not set"]


def test_config_from_a_file_secret_holds_it_as_a_secret(registry, secret_file) -> None:
    config = parse_config(CONFIG, registry, {"WEB_WRITE_KEY_FILE": str(secret_file)})
    assert [k.reveal() for k in config.sources[0].settings.write_keys] == [FILE_SECRET]
    assert config.destinations[0].settings.url == "https://hooks.example.com/events"
    assert FILE_SECRET in [s.reveal() for s in config.secrets()]
    # and a log line carrying it is redacted
    record = logging.LogRecord("t", logging.INFO, "t", 0, f"key is {FILE_SECRET}", None, None)
    RedactSecrets(config.secrets()).filter(record)
    assert FILE_SECRET not in record.getMessage()


def test_a_file_secret_never_reaches_check_output(tmp_path, monkeypatch, capsys) -> None:
    secret = tmp_path / "listen"
    secret.write_text(FILE_SECRET + "\n")
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nlisten = "${LISTEN}"\n' + CONFIG)
    monkeypatch.setenv("LISTEN_FILE", str(secret))
    monkeypatch.setenv("WEB_WRITE_KEY_FILE", str(secret))
    assert main(["check", "-c", str(bad)]) == 1
    captured = capsys.readouterr()
    assert "server.listen" in captured.out
    assert FILE_SECRET not in captured.out + captured.err
    assert main(["check", "--json", "-c", str(bad)]) == 1
    captured = capsys.readouterr()
    assert FILE_SECRET not in captured.out + captured.err


def test_a_file_secret_is_masked_in_test_output(tmp_path, monkeypatch, capsys, secret_file):
    path = tmp_path / "crossdock.toml"
    path.write_text(CONFIG)
    monkeypatch.setenv("WEB_WRITE_KEY_FILE", str(secret_file))
    event = tmp_path / "e.json"
    event.write_text('{"type": "track", "event": "X", "userId": "u1", "messageId": "m1"}')
    assert main(["test", "-c", str(path), "hook", "--event", str(event)]) == 0
    out = capsys.readouterr().out
    assert "X-Api-Key" in out
    assert FILE_SECRET not in out


def test_unknown_variable_in_check_fails(tmp_path, monkeypatch, capsys) -> None:
    path = tmp_path / "crossdock.toml"
    path.write_text(CONFIG)
    with pytest.raises(ConfigError):
        parse_config(CONFIG, load_registry(), {})
    assert main(["check", "-c", str(path)]) == 1
    assert "WEB_WRITE_KEY is not set" in capsys.readouterr().out


def test_the_documented_example_reads_the_key_from_the_file(registry, secret_file) -> None:
    from pathlib import Path

    docs = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    section = docs.split("## Environment variables and secret files", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    assert "${VAR:-default}" in section
    assert "WEB_WRITE_KEY_FILE" in section
    config = parse_config(example, registry, {"WEB_WRITE_KEY_FILE": str(secret_file)})
    assert [k.reveal() for k in config.sources[0].settings.write_keys] == [FILE_SECRET]
