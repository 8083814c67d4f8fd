"""``[destinations.settings]`` of a ``segmentify`` destination."""

from __future__ import annotations

from urllib.parse import urlsplit

import attrs
from attrs import frozen

import crossdock

DEFAULT_DATA_CENTER_URL = "https://gandalf.segmentify.com"
"""Segmentify's public data center host; each account's own is in Settings → Integrations."""


def _check_api_key(instance: object, attribute: attrs.Attribute, value: crossdock.Secret) -> None:
    if not value or not value.reveal().strip():
        msg = "'api_key' must not be empty"
        raise ValueError(msg)


def _normalise_origin(value: object) -> object:
    """``https://www.example.com/`` → ``https://www.example.com`` (an Origin has no path); a
    bare domain (``www.example.com``) gets ``https://``."""
    if not isinstance(value, str):
        return value
    value = value.strip()
    if value and "://" not in value:
        value = "https://" + value
    return value.rstrip("/")


def _check_origin(instance: object, attribute: attrs.Attribute, value: str) -> None:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username
    ):
        msg = "'origin' must be a scheme and host like https://www.example.com (no path)"
        raise ValueError(msg)


@frozen
class SegmentifySettings:
    """Settings of a ``segmentify`` destination.

    ``api_key``: the account's API key (sent as the ``apiKey`` query parameter).
    ``data_center_url``: the account's data center, shown in Segmentify's Settings →
    Integrations (overridable: a staging host or a local fake). ``origin``: the site domain the
    account is registered for, sent as the mandatory ``Origin`` header
    (``https://www.example.com``; a bare domain gets ``https://``).
    """

    api_key: crossdock.Secret = attrs.field(validator=_check_api_key)
    data_center_url: str
    origin: str = attrs.field(converter=_normalise_origin, validator=_check_origin)

    @property
    def events_url(self) -> str:
        """The events endpoint, without the ``apiKey`` query parameter."""
        return self.data_center_url.rstrip("/") + "/add/events/v1.json"
