"""What the console keeps for one process: the ring and streams, jobs, the sign-in limiter, the
other ``--workers`` processes, and the signer and secrets of the running configuration (rebuilt
when a reload changes it)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from crossdock.config.load import Config
from crossdock.secrets import Secret, walk
from crossdock.web import keys
from crossdock.web.console.auth import Signer, SignInLimiter
from crossdock.web.console.jobs import Jobs
from crossdock.web.console.stream import ConsoleHub
from crossdock.web.reload import current_config

__all__ = ["ConsoleState", "credential_values", "state_of"]

_SENSITIVE = re.compile(r"auth|token|secret|key|passw|cookie|session|credential", re.I)
"""Setting names whose values are masked whatever they hold (as ``crossdock test`` does)."""
_NOT_CREDENTIALS = ("_header", "_field", "_name", "_url", "_path")
"""...except names that say the value is a name (``token_header = "X-Token"``)."""
MIN_GUESSED = 8
"""Shortest value masked on its name alone (a mode or a scheme would garble every text)."""


def credential_values(roots: list[Any]) -> list[Secret]:
    """The string values under credential-named keys of ``roots`` (settings objects), as
    secrets; for ``Bearer xyz`` style values the credential after the scheme too."""
    found: list[Secret] = []
    for root in roots:
        for path, leaf in walk(root):
            if not isinstance(leaf, str) or len(leaf) < MIN_GUESSED:
                continue
            names = [part for part in path if isinstance(part, str)]
            name = names[-1].lower() if names else ""
            if not _SENSITIVE.search(name) or name.endswith(_NOT_CREDENTIALS):
                continue
            found.append(Secret(leaf))
            _scheme, _, rest = leaf.partition(" ")
            if rest and len(rest.strip()) >= MIN_GUESSED:
                found.append(Secret(rest.strip()))
    return found


class ConsoleState:
    """The console's state on the application (``app[keys.CONSOLE]``)."""

    def __init__(self, root: web.Application) -> None:
        self.root = root
        self.hub = ConsoleHub()
        self.jobs = Jobs()
        self.limiter = SignInLimiter()
        self.peers: Any = None
        """The other ``--workers`` processes (:class:`~.peers.Peers`), or ``None``."""
        self._signer: tuple[Secret, Signer] | None = None
        self._secrets: tuple[Config, list[Secret]] | None = None

    @property
    def config(self) -> Config:
        """The configuration running now."""
        return current_config(self.root)

    def signer(self) -> Signer | None:
        """The signer of the current admin token (``None``: the console is off)."""
        token = self.config.server.admin_token
        if token is None:
            return None
        if self._signer is None or self._signer[0] is not token:
            self._signer = (token, Signer(token))
        return self._signer[1]

    def secrets(self) -> list[Secret]:
        """Every secret of the running configuration, the admin token included, and the values
        of credential-named settings written in clear (a header ``X-Api-Key = "..."``)."""
        config = self.config
        if self._secrets is None or self._secrets[0] is not config:
            found = list(config.secrets())
            if config.server.admin_token is not None:
                found.append(config.server.admin_token)
            found += credential_values([s.settings for s in config.sources])
            found += credential_values([d.settings for d in config.destinations])
            self._secrets = (config, list(dict.fromkeys(found)))
        return self._secrets[1]

    @property
    def workers(self) -> dict[str, Any]:
        """A copy of the destination workers (a reload may change them meanwhile)."""
        return dict(self.root[keys.WORKERS])


def state_of(request: web.Request) -> ConsoleState:
    """The console state of the application answering ``request``."""
    return request.config_dict[keys.CONSOLE]  # type: ignore[no-any-return]
