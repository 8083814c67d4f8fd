"""Defects 2 and 7 (issue 15): the config's secrets, and empty credentials refused by check.

Empty credentials: a write key from an empty variable, ``token = ""`` on a webhook source, an
empty admin token, and URL credentials together with an ``Authorization`` header on a webhook
destination are each a ``crossdock check`` error naming the field. Masking: every ``${VAR}``
value and every URL credential is a secret of the config, masked in every form it can be echoed.
"""

from __future__ import annotations

import base64
import logging

import pytest

from crossdock.cli.main import main
from crossdock.cli.test import mask_headers, mask_url
from crossdock.config.load import parse_config
from crossdock.errors import ConfigError
from crossdock.logs import JsonFormatter, RedactSecrets
from crossdock.plugins.registry import load_registry
from crossdock.secrets import Secret, mask

SINK = """
[[destinations]]
id = "out"
plugin = "file"
[destinations.settings]
path = "out.ndjson"
"""


@pytest.fixture(scope="module")
def registry():
    return load_registry(entrypoints=False)


def problems(text: str, registry, env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, registry, env)
    return caught.value.problems


def test_write_key_from_an_empty_variable_is_refused(registry) -> None:
    text = '[[sources]]\nid = "web"\ntype = "segment"\nwrite_keys = ["ok-key-123", "${WK}"]\n'
    found = problems(text + SINK, registry, {"WK": ""})
    assert found == [
        "sources[0].write_keys[1]: empty credential (leave the setting out to turn it off)"
    ]


@pytest.mark.parametrize("token", ['""', '"   "', '"${EMPTY}"'])
def test_empty_webhook_source_token_is_refused_not_auth_off(registry, token) -> None:
    text = f'[[sources]]\nid = "hook"\ntype = "webhook"\ntoken = {token}\n'
    found = problems(text + SINK, registry, {"EMPTY": ""})
    assert found == ["sources[0].token: empty credential (leave the setting out to turn it off)"]


def test_absent_webhook_token_is_auth_off(registry) -> None:
    config = parse_config('[[sources]]\nid = "hook"\ntype = "webhook"\n' + SINK, registry, {})
    assert config.source("hook").settings.token is None


def test_empty_admin_token_and_destination_secret_are_refused(registry) -> None:
    text = (
        '[server]\nadmin_token = ""\n'
        '[[destinations]]\nid = "h"\nplugin = "webhook"\n'
        '[destinations.settings]\nurl = "https://example.com/x"\nsecret = "${SIGN}"\n'
    )
    found = problems(text, registry, {"SIGN": ""})
    assert "server.admin_token: empty credential (leave the setting out to turn it off)" in found
    assert (
        "destinations[0].settings.secret: empty credential (leave the setting out to turn it off)"
        in found
    )


@pytest.mark.parametrize("header", ["Authorization", "authorization"])
def test_url_credentials_with_an_authorization_header_are_refused(registry, header) -> None:
    text = (
        '[[destinations]]\nid = "h"\nplugin = "webhook"\n[destinations.settings]\n'
        'url = "https://shop:${PW}@example.com/x"\n'
        f'[destinations.settings.headers]\n{header} = "Bearer ${{TOKEN}}"\n'
    )
    found = problems(text, registry, {"PW": "pw-secret-1234", "TOKEN": "tok-secret-5678"})
    assert found == [
        "destinations[0].settings.headers: an Authorization header cannot be sent with "
        "credentials in url (user:password@): keep one of them"
    ]
    assert not any("secret" in p for p in found)


def test_check_names_the_empty_field(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("WK", "")
    config = tmp_path / "crossdock.toml"
    config.write_text(
        '[queue]\npath = "q.db"\n[[sources]]\nid = "web"\ntype = "segment"\n'
        'write_keys = ["${WK}"]\n' + SINK
    )
    assert main(["check", "-c", str(config)]) == 1
    captured = capsys.readouterr()
    assert "sources[0].write_keys[0]: empty credential" in captured.out + captured.err


def test_config_secrets_hold_env_values_and_url_credentials(registry) -> None:
    text = (
        '[[destinations]]\nid = "h"\nplugin = "webhook"\n[destinations.settings]\n'
        'url = "https://shop:literal-pw-99@example.com/x?token=${QT}"\n'
    )
    config = parse_config(text, registry, {"QT": "query-token-77"})
    values = {s.reveal() for s in config.secrets()}
    assert {"query-token-77", "literal-pw-99", "shop:literal-pw-99"} <= values


def test_mask_covers_encoded_and_basic_forms() -> None:
    secrets = [Secret("a/b+c=d-9876"), Secret("shop:pw-1234")]
    basic = base64.b64encode(b"shop:pw-1234").decode()
    text = f"a/b+c=d-9876 a%2Fb%2Bc%3Dd-9876 a/b%2Bc%3Dd-9876 Basic {basic}"
    assert mask(text, secrets) == "*** *** *** Basic ***"


def test_realistic_tokens_always_masked_short_values_kept() -> None:
    assert mask("key=abcdefgh", [Secret("abcdefgh")]) == "key=***"
    assert mask("key=abcd", [Secret("abcd")]) == "key=***"
    assert mask("level 1", [Secret("1")]) == "level 1"


def test_log_filter_masks_base64_and_encoded_forms() -> None:
    redact = RedactSecrets([Secret("tok/en+9876")])
    encoded = base64.b64encode(b"tok/en+9876:").decode()
    record = logging.LogRecord("x", logging.INFO, "x", 0, "sent %s and %s", None, None)
    record.args = (f"Basic {encoded}", "tok%2Fen%2B9876")
    redact.filter(record)
    line = JsonFormatter().format(record)
    assert "Basic ***" in line
    assert "tok" not in line


def test_test_output_masks_url_password_query_tokens_and_key_headers() -> None:
    url = "https://shop:literal-pw-99@example.com/x?token=abc123zz&page=2&api_key=k-42"
    assert mask_url(url, []) == "https://shop:***@example.com/x?token=***&page=2&api_key=***"
    headers = {"X-Api-Key": "literal", "X-Request-Id": "r-1", "Authorization": "Basic abc"}
    assert mask_headers(headers, []) == {
        "X-Api-Key": "***",
        "X-Request-Id": "r-1",
        "Authorization": "Basic ***",
    }
