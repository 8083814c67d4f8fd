"""``[destinations.settings]`` of a ``productfruits`` destination."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import attrs
from attrs import frozen

import crossdock


def _http_url(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    try:
        parts = urlsplit(value) if isinstance(value, str) else None
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        msg = f"'{attribute.name}' must be an http:// or https:// URL"
        raise ValueError(msg)


def _non_empty_secret(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not value:
        msg = f"'{attribute.name}' must not be empty"
        raise ValueError(msg)


@frozen
class ProductFruitsSettings:
    """Where and how to post to Product Fruits' Segment-webhook intake.

    ``webhook_url`` is the **Webhook URL** Product Fruits shows in its Segment integration box
    (account-specific, no default; point it at a local fake in tests). ``webhook_secret`` is the
    **Webhook Secret** shown next to it; every request is signed with it (``X-Signature``).
    """

    webhook_url: str = attrs.field(validator=_http_url)
    webhook_secret: crossdock.Secret = attrs.field(validator=_non_empty_secret)
