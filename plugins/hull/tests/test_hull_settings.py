"""Settings of the ``hull`` destination and source: defaults and precise error paths."""

from __future__ import annotations

from typing import Any

import pytest

import crossdock_hull
from crossdock import ConfigError
from crossdock.testing.harness import DestinationHarness, structure_settings
from crossdock_hull.settings import DEFAULT_FIREHOSE_URL

BASE = {"organization": "abc.hullapp.io", "connector_id": "c-1", "connector_secret": "s3cr3t-xyz"}


def test_destination_defaults() -> None:
    settings = DestinationHarness(crossdock_hull, BASE).destination.settings
    assert settings.firehose_url == DEFAULT_FIREHOSE_URL == "https://firehose.hullapp.io"
    assert settings.store_page_calls is True
    assert settings.store_screen_calls is True
    assert settings.handle_groups is False
    assert "s3cr3t-xyz" not in repr(settings)


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ({"organization": " "}, "settings.organization: must not be empty"),
        ({"connector_id": ""}, "settings.connector_id: must not be empty"),
        ({"connector_secret": ""}, "settings.connector_secret: invalid value"),
        ({"firehose_url": "ftp://x"}, "settings.firehose_url: expected an http:// or https:// URL"),
        ({"handle_groups": "yes"}, "settings.handle_groups: expected true or false"),
    ],
)
def test_destination_errors_name_the_field(override: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        DestinationHarness(crossdock_hull, {**BASE, **override})
    assert info.value.problems == [problem]


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({}, "settings.connector_secret: missing"),
        (
            {"connector_secret": "s", "attributes": [""]},
            "settings.attributes: must not contain empty names",
        ),
        (
            {"connector_secret": "s", "synchronized_segments": "VIP"},
            "settings.synchronized_segments: expected a list",
        ),
        (
            {"connector_secret": "s", "forward_events": 1},
            "settings.forward_events: expected true or false",
        ),
    ],
)
def test_source_errors_name_the_field(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        structure_settings(crossdock_hull.SOURCE_TYPE, settings)  # type: ignore[arg-type]
    assert info.value.problems == [problem]
