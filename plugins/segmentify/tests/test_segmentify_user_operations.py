"""Golden cases for the user operations (signup, signin, signout, update): each carries gender
(M/F/U), birth date and segments where the event (identify ``traits``, a track's
``properties``) or the traits attached to it (``context.traits``) have them, as Segmentify's
guide asks for signup (contract §3.6, §7). Plus the two functions behind them and the strict
fake's rules for those fields."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import crossdock_segmentify
from crossdock.testing.events import golden_event, identify, track
from crossdock.testing.harness import DestinationHarness
from crossdock_segmentify.functions import birth_date, segments
from crossdock_segmentify.testing import DEFAULT_API_KEY, DEFAULT_ORIGIN, check_event

SETTINGS = {
    "api_key": DEFAULT_API_KEY,
    "data_center_url": "http://127.0.0.1:9",
    "origin": DEFAULT_ORIGIN,
}
ANON = "0b9a6c1e-8f55-4f0e-9d2b-6a3c1f7e2d40"
WEB = {"userId": "u-1042", "sessionId": ANON, "device": "PC", "os": "Mac OS", "lang": "EN"}
SHOP = "https://shop.example.com"
TRAITS = {
    "email": "ana.silva@example.com",
    "firstName": "Ana",
    "lastName": "Silva",
    "gender": "female",
    "birthday": "1990-04-12T00:00:00.000Z",
    "segments": ["vip", "newsletter"],
}


def transform(event: dict[str, Any], **kwargs: Any) -> Any:
    return DestinationHarness(crossdock_segmentify, SETTINGS, **kwargs).transform(event)


def with_traits(slug: str, traits: dict[str, Any] = TRAITS) -> dict[str, Any]:
    event = golden_event(slug)
    event["context"]["traits"] = dict(traits)
    return event


GOLDEN: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "signed_up": (
        with_traits("signed_up"),
        {
            "name": "USER_OPERATIONS",
            "step": "signup",
            **WEB,
            "pageUrl": f"{SHOP}/signup",
            "email": "ana.silva@example.com",
            "username": "anasilva",
            "fullName": "Ana Silva",
            "gender": "F",
            "birthdate": "1990-04-12",
            "segments": ["vip", "newsletter"],
        },
    ),
    "signed_in": (
        with_traits("signed_in"),
        {
            "name": "USER_OPERATIONS",
            "step": "signin",
            **WEB,
            "pageUrl": f"{SHOP}/login",
            "email": "ana.silva@example.com",
            "username": "anasilva",
            "gender": "F",
            "birthdate": "1990-04-12",
            "segments": ["vip", "newsletter"],
        },
    ),
    "signed_out": (
        with_traits("signed_out"),
        {
            "name": "USER_OPERATIONS",
            "step": "signout",
            **WEB,
            "pageUrl": f"{SHOP}/account",
            "username": "anasilva",
            "gender": "F",
            "birthdate": "1990-04-12",
            "segments": ["vip", "newsletter"],
        },
    ),
    "identify": (
        identify(
            {
                "email": "ana.silva@example.com",
                "gender": "M",
                "birthdate": "1985-01-30",
                "segments": "vip, b2b",
            }
        ),
        {
            "name": "USER_OPERATIONS",
            "step": "update",
            **WEB,
            "os": "Linux",  # identify()'s default user agent
            "pageUrl": f"{SHOP}/",
            "email": "ana.silva@example.com",
            "gender": "M",
            "birthdate": "1985-01-30",
            "segments": ["vip", "b2b"],
        },
    ),
}


@pytest.mark.parametrize("slug", sorted(GOLDEN))
def test_user_operations_carry_gender_birth_date_and_segments(slug: str) -> None:
    event, expected = GOLDEN[slug]
    payload = transform(event)
    assert orjson.dumps(payload) == orjson.dumps(expected)  # key order too
    assert check_event(payload) is None


def test_the_event_wins_over_context_traits() -> None:
    event = track("Signed Up", {"gender": "male", "birthday": "2001-02-03", "segments": ["a"]})
    event["context"]["traits"] = TRAITS
    payload = transform(event)
    assert (payload["gender"], payload["birthdate"], payload["segments"]) == (
        "M",
        "2001-02-03",
        ["a"],
    )


def test_identify_falls_back_to_context_traits() -> None:
    event = identify({"email": "a@x.io"})
    event["context"]["traits"] = {"gender": "F", "birthday": "1990-04-12", "segments": ["x"]}
    payload = transform(event)
    assert (payload["gender"], payload["birthdate"], payload["segments"]) == (
        "F",
        "1990-04-12",
        ["x"],
    )


def test_without_any_of_them_none_is_sent() -> None:
    """The existing golden bodies stay byte-identical: nothing is added from nothing."""
    for slug in ("signed_up", "signed_in", "signed_out"):
        payload = transform(golden_event(slug))
        assert not {"gender", "birthdate", "segments"} & set(payload), slug


@pytest.mark.parametrize(("gender", "code"), [("female", "F"), ("Woman", "F"), ("M", "M"),
                                              ("other", "U"), ("", None)])  # fmt: skip
def test_signup_gender_goes_through_the_genders_table(gender: str, code: str | None) -> None:
    event = track("Signed Up", {})
    event["context"]["traits"] = {"gender": gender}
    assert transform(event).get("gender") == code


def test_an_operator_row_in_genders_applies_to_tracks_too() -> None:
    event = track("Signed In", {"gender": "K"})  # e.g. a Turkish shop: K for kadin
    assert transform(event)["gender"] == "U"
    assert transform(event, tables={"genders": {"k": "F"}})["gender"] == "F"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1990-04-12", "1990-04-12"),
        ("1990-04-12T23:30:00+02:00", "1990-04-12"),
        ("1990-04-12 08:00", "1990-04-12"),
        (" 12.04.1990 ", "12.04.1990"),
        ("", None),
        ("  ", None),
        (640_000_000, None),
        (None, None),
    ],
)
def test_birth_date(value: Any, expected: str | None) -> None:
    assert birth_date(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["vip", "b2b"], ["vip", "b2b"]),
        ([7, " vip ", None, "", {"a": 1}, True], ["7", "vip"]),
        ("vip, b2b,,", ["vip", "b2b"]),
        ([], None),
        ("", None),
        ({"vip": True}, None),
        (None, None),
    ],
)
def test_segments(value: Any, expected: list[str] | None) -> None:
    assert segments(value) == expected


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"gender": "female"}, "USER_OPERATIONS gender must be M, F or U"),
        ({"birthdate": ""}, "USER_OPERATIONS birthdate must be a non-empty string"),
        ({"birthdate": 19900412}, "USER_OPERATIONS birthdate must be a non-empty string"),
        ({"segments": "vip"}, "USER_OPERATIONS segments must be an array of strings"),
        ({"segments": ["vip", 7]}, "USER_OPERATIONS segments must be an array of strings"),
    ],
)
def test_the_fake_holds_user_fields_to_the_contract(fields: dict[str, Any], problem: str) -> None:
    event = {"name": "USER_OPERATIONS", "step": "signup", "userId": "u", "sessionId": "s"}
    assert check_event(event) is None
    assert check_event({**event, **fields}) == ("INVALID_EVENT", problem)
