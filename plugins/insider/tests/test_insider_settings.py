"""Settings: required fields, the partner-name rule, defaults, secrets never shown."""

from __future__ import annotations

import pytest

import crossdock_insider
from crossdock import ConfigError, Secret
from crossdock.testing.harness import DestinationHarness
from crossdock_insider import InsiderSettings

TOKEN = "ucd-test-token-0123456789"


def build(**settings: object) -> DestinationHarness:
    return DestinationHarness(crossdock_insider, settings)


def test_defaults() -> None:
    s = build(partner_name="acme", request_token=TOKEN).destination.settings
    assert s == InsiderSettings("acme", Secret(TOKEN))
    assert s.base_url == "https://unification.useinsider.com"
    assert s.upsert_url == "https://unification.useinsider.com/api/user/v1/upsert"
    assert (s.not_append, s.skip_hook) == (False, False)


def test_missing_fields_are_named() -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.problems == [
        "settings.partner_name: missing",
        "settings.request_token: missing",
    ]


@pytest.mark.parametrize("partner", ["Acme", "acme shop", " acme", "ACME", ""])
def test_partner_name_must_be_lower_case_without_spaces(partner) -> None:
    with pytest.raises(ConfigError) as info:
        build(partner_name=partner, request_token=TOKEN)
    [problem] = info.value.problems
    if partner:
        assert problem == (
            "settings.partner_name: must be Insider's partner name in lower case with no spaces "
            "(InOne → Inone Settings → Account Preferences)"
        )
    else:
        assert problem == "settings.partner_name: must be a non-empty string"


def test_partner_name_error_explains_the_rule_when_built_directly() -> None:
    with pytest.raises(ValueError, match="lower case with no spaces") as info:
        InsiderSettings("Acme Shop", Secret(TOKEN))
    assert "Acme Shop" not in str(info.value)


@pytest.mark.parametrize("partner", ["acme", "acme-shop", "acme_tr", "shop2"])
def test_valid_partner_names(partner) -> None:
    assert build(partner_name=partner, request_token=TOKEN).destination.settings.partner_name


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("not_append", "yes", "settings.not_append: expected true or false"),
        ("skip_hook", 1, "settings.skip_hook: expected true or false"),
        ("base_url", "ftp://x", "settings.base_url:"),
        ("request_token", 5, "settings.request_token:"),
    ],
)
def test_typed_settings(key, value, problem) -> None:
    with pytest.raises(ConfigError) as info:
        build(**{"partner_name": "acme", "request_token": TOKEN, key: value})
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems


def test_the_token_is_never_shown() -> None:
    h = build(partner_name="acme", request_token=TOKEN)
    for text in (repr(h.destination.settings), str(h.destination.settings), repr(h.destination)):
        assert TOKEN not in text
