"""The ``hull`` source: Hull's outgoing user notifications (smart notifier, contract §4).

``POST <path>`` (default ``/hooks/hull``) with a notification body. Authentication: Hull puts
the connector's credentials in every notification (``configuration.secret``); it must equal the
source's ``connector_secret`` (compared in constant time), else 401. The body is limited to
20 MB like Hull's connector toolkit. Channel ``user:update`` becomes Spec messages
(:mod:`crossdock_hull.notification`); other channels are acknowledged and ignored. The answer
is the ``flow_control`` document Hull's notifier reads (contract §4.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from aiohttp import web

import crossdock
from crossdock_hull.notification import NotificationMapper
from crossdock_hull.settings import HullSourceSettings

DEFAULT_PATH: Final = "/hooks/hull"
MAX_BODY_BYTES: Final = 20 * 1024 * 1024

NEXT: Final = {"flow_control": {"type": "next", "size": 50, "in": 1}, "metrics": [], "errors": []}
"""The answer to a handled notification: send the next batch."""

UNSUPPORTED: Final = {
    "flow_control": {"type": "next", "size": 10, "in": 1},
    "metrics": [],
    "errors": [],
}
"""The answer to a channel this source does not handle (Hull's toolkit default)."""

CHANNELS: Final = frozenset({"user:update"})


class HullIngestor:
    """Ingests Hull notifications (see the module docstring)."""

    def __init__(self, source: crossdock.Source) -> None:
        settings: HullSourceSettings = source.settings
        self._path = source.path or DEFAULT_PATH
        self._secret = settings.connector_secret.reveal().encode()
        self._mapper = NotificationMapper(settings)

    def routes(self) -> Sequence[crossdock.IngestRoute]:
        """``POST`` on the source's path."""
        return [crossdock.IngestRoute("POST", self._path)]

    async def ingest(self, request: web.Request) -> crossdock.Ingested:
        """Authenticate one notification and turn its user updates into messages."""
        data = await crossdock.read_body(
            request, MAX_BODY_BYTES, status=413, code="entity_too_large"
        )
        body = crossdock.parse_json(data)
        if not isinstance(body, dict):
            raise crossdock.IngestError(400, "body: must be a JSON object", code="invalid_body")
        self._authenticate(body)
        channel = body.get("channel")
        if channel not in CHANNELS:
            return crossdock.Ingested([], body=UNSUPPORTED)
        if not isinstance(body.get("messages"), list):
            msg = "messages: must be a list"
            raise crossdock.IngestError(400, msg, code="invalid_body")
        return crossdock.Ingested(self._mapper.messages(body), body=NEXT)

    def _authenticate(self, body: dict[str, Any]) -> None:
        configuration = body.get("configuration")
        if not isinstance(configuration, dict):
            msg = "configuration: required (the connector credentials)"
            raise crossdock.IngestError(400, msg, code="missing_configuration")
        secret = configuration.get("secret")
        if not isinstance(secret, str) or not crossdock.secret_in(secret, [self._secret]):
            msg = "configuration.secret: does not match the connector secret"
            raise crossdock.IngestError(401, msg, code="invalid_signature")
