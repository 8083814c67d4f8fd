"""Settings: required fields, URL and origin checks, and what reaches the wire."""

from __future__ import annotations

from typing import Any

import pytest

import crossdock
import crossdock_segmentify
from crossdock.testing.harness import DestinationHarness

GOOD = {
    "api_key": "8f1c2d3e-4a5b-6c7d-8e9f-0a1b2c3d4e5f",
    "data_center_url": "https://gandalf.segmentify.com",
    "origin": "https://www.example-shop.com",
}


def settings(**changes: Any) -> Any:
    values = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    return DestinationHarness(crossdock_segmentify, values).destination.settings


def problems(**changes: Any) -> list[str]:
    with pytest.raises(crossdock.ConfigError) as info:
        settings(**changes)
    return info.value.problems


def test_good_settings() -> None:
    s = settings()
    assert s.api_key.reveal() == GOOD["api_key"]
    assert s.events_url == "https://gandalf.segmentify.com/add/events/v1.json"
    assert GOOD["api_key"] not in repr(s)


@pytest.mark.parametrize(
    ("origin", "normalised"),
    [
        ("https://www.example-shop.com/", "https://www.example-shop.com"),
        ("www.example-shop.com", "https://www.example-shop.com"),
        ("http://localhost:8080", "http://localhost:8080"),
    ],
)
def test_origin_is_normalised(origin: str, normalised: str) -> None:
    assert settings(origin=origin).origin == normalised


@pytest.mark.parametrize(
    "origin",
    ["https://www.example-shop.com/shop", "ftp://example.com", "https://", "https://a.com?x"],
)
def test_origin_must_be_scheme_and_host(origin: str) -> None:
    assert problems(origin=origin) == [
        "settings.origin: must be a scheme and host like https://www.example.com (no path)"
    ]


def test_data_center_url_must_be_http() -> None:
    assert problems(data_center_url="gandalf.segmentify.com") == [
        "settings.data_center_url: expected an http:// or https:// URL"
    ]


def test_data_center_trailing_slash_is_fine() -> None:
    url = settings(data_center_url="https://gandalf-qa.segmentify.com/").events_url
    assert url == "https://gandalf-qa.segmentify.com/add/events/v1.json"


def test_empty_api_key_is_refused() -> None:
    assert problems(api_key="  ") == ["settings.api_key: invalid value"]


def test_every_missing_field_is_named() -> None:
    assert problems(api_key=None, data_center_url=None, origin=None) == [
        "settings.api_key: missing",
        "settings.data_center_url: missing",
        "settings.origin: missing",
    ]
