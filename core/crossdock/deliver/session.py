"""The outbound HTTP client session: proxies from the environment and Crossdock's User-Agent."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
from aiohttp.helpers import basicauth_from_netrc, get_env_proxy_for_url, netrc_from_env
from attrs import frozen
from yarl import URL

from crossdock.plugins.discovery import core_version

__all__ = ["environment_options", "outbound_session", "user_agent"]

_MAX_ORIGINS: Final = 1024
"""Origins whose proxy and credentials a session remembers (a destination has one or a few)."""


def user_agent() -> str:
    """``crossdock/<version>``: what vendors see as the client of every outbound request."""
    return f"crossdock/{core_version()}"


@frozen
class _Route:
    """What the environment says about requests to one origin."""

    proxy: URL | None
    proxy_auth: aiohttp.BasicAuth | None
    auth: aiohttp.BasicAuth | None


_ROUTES: weakref.WeakKeyDictionary[aiohttp.ClientSession, dict[tuple[str, str], _Route]] = (
    weakref.WeakKeyDictionary()
)


def outbound_session(**kwargs: Any) -> aiohttp.ClientSession:
    """An :class:`aiohttp.ClientSession` for vendor requests, with ``kwargs`` passed on.

    ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` and ``~/.netrc`` apply as operators expect
    (aiohttp's ``trust_env`` rules) to requests sent with :func:`crossdock.send_http`, which
    looks them up once per origin (:func:`environment_options`): aiohttp's own ``trust_env``
    looks both up in a thread on every request. The default ``User-Agent`` is
    :func:`user_agent` (a deliverer can still set its own per request).
    """
    headers = {"User-Agent": user_agent(), **dict(kwargs.pop("headers", None) or {})}
    session = aiohttp.ClientSession(headers=headers, **kwargs)
    _ROUTES[session] = {}
    return session


async def environment_options(
    http: aiohttp.ClientSession, url: str, headers: Mapping[str, str]
) -> dict[str, Any]:
    """The ``proxy`` and ``proxy_auth`` request options the environment gives a request of
    ``http`` (an :func:`outbound_session`; none for another session) to ``url`` with
    ``headers``, and ``headers`` with the ``~/.netrc`` credentials added where they apply.

    Looked up in a thread the first time an origin is seen, then remembered for the session's
    life. ``~/.netrc`` credentials apply only to a request without its own ``Authorization``
    header (aiohttp would refuse the request instead).
    """
    routes = _ROUTES.get(http)
    if routes is None:
        return {}
    parts = urlsplit(url)
    key = (parts.scheme, parts.netloc)
    route = routes.get(key)
    if route is None:
        route = await asyncio.to_thread(_look_up, URL(url))
        if len(routes) < _MAX_ORIGINS:
            routes[key] = route
    options: dict[str, Any] = {}
    if route.proxy is not None:
        options["proxy"] = route.proxy
        options["proxy_auth"] = route.proxy_auth
    if route.auth is not None and not any(k.lower() == "authorization" for k in headers):
        options["headers"] = {**headers, "Authorization": route.auth.encode()}
    return options


def _look_up(url: URL) -> _Route:
    proxy = proxy_auth = auth = None
    with contextlib.suppress(LookupError):
        proxy, proxy_auth = get_env_proxy_for_url(url)
    if url.host is not None:
        netrc = netrc_from_env()
        if netrc is not None:
            with contextlib.suppress(LookupError):
                auth = basicauth_from_netrc(netrc, url.host)
    return _Route(proxy, proxy_auth, auth)
