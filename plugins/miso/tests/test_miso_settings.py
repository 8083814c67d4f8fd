"""Settings: precise config errors, defaults, base URL normalisation, secrets never shown."""

from __future__ import annotations

from typing import Any

import pytest

import crossdock_miso
from crossdock import ConfigError, Secret
from crossdock.testing.harness import DestinationHarness


def problems(settings: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        DestinationHarness(crossdock_miso, settings)
    return info.value.problems


def test_defaults() -> None:
    settings = DestinationHarness(crossdock_miso, {"api_key": "sk_1"}).destination.settings
    assert settings.api_key == Secret("sk_1")
    assert settings.base_url == "https://api.askmiso.com"
    assert settings.user_id_field == "userId"
    assert settings.anonymous_id_field == "anonymousId"


def test_base_url_loses_its_trailing_slash() -> None:
    settings = {"api_key": "sk_1", "base_url": "http://127.0.0.1:8999/"}
    assert DestinationHarness(crossdock_miso, settings).destination.settings.base_url == (
        "http://127.0.0.1:8999"
    )


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, "settings.api_key: missing"),
        ({"api_key": ""}, "settings.api_key: invalid value"),
        ({"api_key": "  "}, "settings.api_key: invalid value"),
        ({"api_key": 42}, "settings.api_key: expected a string"),
        ({"api_key": "k", "base_url": "api.askmiso.com"}, "settings.base_url: expected an"),
        (
            {"api_key": "k", "user_id_field": "traits..id"},
            "settings.user_id_field: must be a valid JMESPath",
        ),
        ({"api_key": "k", "user_id_field": ""}, "settings.user_id_field: must not be empty"),
        ({"api_key": "k", "anonymous_id_field": True}, "settings.anonymous_id_field: expected a"),
        ({"api_key": "k", "apikey": "k"}, "settings.apikey: unknown key"),
    ],
)
def test_errors_name_the_setting(settings: dict[str, Any], expected: str) -> None:
    assert any(p.startswith(expected) for p in problems(settings)), problems(settings)


def test_secret_is_never_in_errors_or_reprs() -> None:
    key = "sk_live_very_secret_42"
    text = " ".join(problems({"api_key": key, "user_id_field": "a..b", "nope": 1}))
    assert key not in text
    h = DestinationHarness(crossdock_miso, {"api_key": key})
    assert key not in repr(h.destination)
    assert key not in repr(h.destination.settings)
