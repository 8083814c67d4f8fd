"""``[destinations.settings]`` of an ``insider`` destination."""

from __future__ import annotations

import re
from typing import Any

import attrs

import crossdock

DEFAULT_BASE_URL = "https://unification.useinsider.com"
"""Insider's Unified Customer Database (UCD) host."""

UPSERT_PATH = "/api/user/v1/upsert"

_PARTNER_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*")


def _check_partner_name(_: Any, attribute: attrs.Attribute[str], value: str) -> None:
    """Insider's ``X-PARTNER-NAME`` is the account name in lower case with no spaces; a wrong
    one is answered 400 "Partner is invalid." for every request."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{attribute.name}' must be a non-empty string")
    if value != value.lower() or not _PARTNER_RE.fullmatch(value):
        # The message names the rule, never the value.
        raise ValueError(
            f"'{attribute.name}' must be Insider's partner name in lower case with no spaces "
            "(InOne → Inone Settings → Account Preferences)"
        )


@attrs.frozen
class InsiderSettings:
    """Settings of an ``insider`` destination.

    ``partner_name`` is sent as ``X-PARTNER-NAME`` (lower case, no spaces); ``request_token``
    (the UCD API key) as ``X-REQUEST-TOKEN``. ``base_url`` points at Insider's UCD host (override
    it for a proxy, a staging host or a local fake). ``not_append`` puts ``"not_append": true`` on
    every user object (array attributes are overwritten instead of appended). ``skip_hook`` puts
    ``"skip_hook": true`` on every request (no Architect journeys or data streams fire);
    ``crossdock backfill`` turns it on.
    """

    partner_name: str = attrs.field(validator=_check_partner_name)
    request_token: crossdock.Secret
    base_url: str = DEFAULT_BASE_URL
    not_append: bool = False
    skip_hook: bool = False

    @property
    def upsert_url(self) -> str:
        """The Upsert User Data endpoint under ``base_url``."""
        return self.base_url.rstrip("/") + UPSERT_PATH
