"""Settings: required fields, precise errors, secrets hidden; `crossdock plugins` lists us."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import orjson
import pytest

import crossdock
import crossdock_productfruits
from crossdock.testing.harness import DestinationHarness

GOOD = {"webhook_url": "https://pf.example.test/hook/abc", "webhook_secret": "pf-secret-9876"}


def problems(settings: dict) -> list[str]:
    with pytest.raises(crossdock.ConfigError) as info:
        DestinationHarness(crossdock_productfruits, settings)
    return list(info.value.problems)


def test_valid_settings() -> None:
    h = DestinationHarness(crossdock_productfruits, GOOD)
    settings = h.destination.settings
    assert settings.webhook_url == GOOD["webhook_url"]
    assert settings.webhook_secret.reveal() == "pf-secret-9876"
    assert "pf-secret-9876" not in repr(settings)


def test_missing_fields_are_named() -> None:
    assert problems({}) == ["settings.webhook_secret: missing", "settings.webhook_url: missing"]


@pytest.mark.parametrize("url", ["pf.example.test/hook", "ftp://pf.example.test/", "https://"])
def test_webhook_url_must_be_http(url: str) -> None:
    assert problems({**GOOD, "webhook_url": url}) == [
        "settings.webhook_url: expected an http:// or https:// URL"
    ]


def test_webhook_url_must_be_a_string() -> None:
    assert problems({**GOOD, "webhook_url": 7}) == ["settings.webhook_url: expected a URL string"]


def test_empty_secret_is_refused_without_showing_values() -> None:
    assert problems({**GOOD, "webhook_secret": ""}) == ["settings.webhook_secret: invalid value"]


def test_unknown_setting_is_refused() -> None:
    assert problems({**GOOD, "mode": "rest"}) == ["settings.mode: unknown key"]


def test_crossdock_plugins_lists_productfruits() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "crossdock", "plugins", "--json"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    [entry] = [p for p in orjson.loads(out) if p["name"] == "productfruits"]
    assert entry["distribution"] == "crossdock-productfruits"
    assert entry["version"] == version("crossdock-productfruits")
    assert entry["status"] == "ok"
    assert entry["destination_types"] == ["productfruits"]
    assert entry["source_types"] == []
    # The core's transformer runs the mapping; the plugin shares is_product_fruits_event().
    assert entry["hooks"] == [
        "crossdock_destination_types",
        "crossdock_jmespath_functions",
        "crossdock_make_deliverer",
    ]
