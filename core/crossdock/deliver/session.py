"""The outbound HTTP client session: proxies from the environment and Crossdock's User-Agent."""

from __future__ import annotations

from typing import Any

import aiohttp

from crossdock.plugins.discovery import core_version

__all__ = ["outbound_session", "user_agent"]


def user_agent() -> str:
    """``crossdock/<version>``: what vendors see as the client of every outbound request."""
    return f"crossdock/{core_version()}"


def outbound_session(**kwargs: Any) -> aiohttp.ClientSession:
    """An :class:`aiohttp.ClientSession` for vendor requests, with ``kwargs`` passed on.

    ``trust_env`` is on, so ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` (and ``~/.netrc``) apply
    as operators expect, and the default ``User-Agent`` is :func:`user_agent` (a deliverer can
    still set its own per request).
    """
    headers = {"User-Agent": user_agent(), **dict(kwargs.pop("headers", None) or {})}
    return aiohttp.ClientSession(trust_env=True, headers=headers, **kwargs)
