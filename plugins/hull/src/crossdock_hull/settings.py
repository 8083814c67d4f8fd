"""Settings of the ``hull`` destination and the ``hull`` source (attrs, structured by the core)."""

from __future__ import annotations

from typing import Any

from attrs import field, frozen

import crossdock

DEFAULT_FIREHOSE_URL = "https://firehose.hullapp.io"
"""Hull's Firehose endpoint (``POST /``)."""


# The core's converter names the field of a validator error by the quoted field name in the
# message (``settings.organization: invalid value``), never showing the value.


def _non_empty(_: Any, attribute: Any, value: str) -> None:
    if not value.strip():
        msg = f"'{attribute.name}' must not be empty"
        raise ValueError(msg)


def _secret_non_empty(_: Any, attribute: Any, value: crossdock.Secret) -> None:
    if not value.reveal().strip():
        msg = f"'{attribute.name}' must not be empty"
        raise ValueError(msg)


def _names(_: Any, attribute: Any, value: list[str] | None) -> None:
    if value is not None and any(not name.strip() for name in value):
        msg = f"'{attribute.name}' must not contain empty names"
        raise ValueError(msg)


@frozen
class HullDestinationSettings:
    """``[destinations.settings]`` of a ``hull`` destination.

    ``organization`` is the organization's namespace host (``abc123.hullapp.io``);
    ``connector_id``/``connector_secret`` the credentials of the Hull connector Crossdock writes
    as. ``firehose_url`` points at Hull's Firehose (or a compatible service, or a test fake).
    ``store_page_calls``/``store_screen_calls`` store ``page``/``screen`` calls as user events;
    ``handle_groups`` turns ``group`` calls into account traits plus the user's account link
    (off: ``group`` calls are filtered).
    """

    organization: str = field(validator=_non_empty)
    connector_id: str = field(validator=_non_empty)
    connector_secret: crossdock.Secret = field(validator=_secret_non_empty)
    # A ``*_url`` field: the core's converter checks it is an http(s) URL.
    firehose_url: str = DEFAULT_FIREHOSE_URL
    store_page_calls: bool = True
    store_screen_calls: bool = True
    handle_groups: bool = False


@frozen
class HullSourceSettings:
    """Keys of a ``[[sources]]`` table of type ``hull`` (Hull's user-update notifications).

    ``connector_secret`` authenticates notifications (Hull sends the connector's credentials
    in each one). ``synchronized_segments``: user segment names or ids whose users are sent
    (``None``, ``[]`` or ``["ALL"]``: everyone). ``attributes``: user attributes sent as
    ``identify`` traits (``account.<name>`` for account attributes on ``group``).
    ``events``: event names sent as ``track``/``page``/``screen`` (``None``: all).
    ``forward_events``: also send events that reached Hull from Segment or Crossdock (off by
    default: that is the loop guard). ``send_groups``: send the user's account as ``group``
    calls (off: none). ``account_segments``: account segment names or ids whose accounts are
    sent as ``group`` (``None``, ``[]`` or ``["ALL"]``: every account).
    """

    connector_secret: crossdock.Secret = field(validator=_secret_non_empty)
    synchronized_segments: list[str] | None = field(default=None, validator=_names)
    attributes: list[str] = field(factory=list, validator=_names)
    events: list[str] | None = field(default=None, validator=_names)
    forward_events: bool = False
    send_groups: bool = True
    account_segments: list[str] | None = field(default=None, validator=_names)
