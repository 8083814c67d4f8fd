"""Built-in source ``segment``: the Segment-compatible tracking API (``POST /v1/*``).

Serves what Segment's clients post (Segment's HTTP Tracking API):

- ``POST /v1/{identify,track,page,screen,group,alias}``: one message; the path gives ``type``.
- ``POST /v1/{batch,import}``: ``{"batch": [...], "context"?, "integrations"?, "writeKey"?,
  "sentAt"?}``; every item needs ``type``. The envelope ``context`` and ``integrations`` fill the
  keys an item's own objects lack (a one-level merge: the item's keys win).
- ``POST /v1/{i,t,p,s,g,a}`` and ``/v1/b``: analytics.js (analytics-next) short paths, bodies
  sent as ``text/plain`` JSON with ``writeKey`` inside, cross-origin.

Auth: HTTP Basic with a write key as user name (password empty, colon optional), checked
before the body is read (a wrong one is a 401 at once), or, without a Basic header, ``writeKey``
in the body (the envelope for batches; analytics.js ``text/plain``), found by parsing the
size-capped body; both compared in constant time. The ``writeKey`` field is removed from
stored events so a server key never travels downstream.

Limits (all 400, since analytics-node retries everything but 400): one call over 32 KiB, a
batch body over 500 KiB, more than 2,500 events, or one batch event over 32 KiB (measured as
the length of its compact re-serialization, only when the body itself is over 32 KiB: a body
that small cannot hold a larger event; the core looks for one on the events as it stores them,
see :class:`crossdock.Ingested`). Integers beyond 64 bits are refused (400) by the core too.
gzip bodies are accepted; the size limits apply to the decompressed bytes, which are read in
bounded pieces (no zip bombs).

Extra routes: CORS preflight for ``/v1/*`` and ``GET /v1/projects/{writeKey}/settings``, the
settings document analytics.js fetches from its CDN (``cdnURL``), pointing its ``Segment.io``
integration back at this server's ``public_url``. It is served alike for every key in the path,
configured or not (200, same headers), so it tells nothing about which write keys exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from attrs import field, frozen, validators

import crossdock
from crossdock import (
    IndexLabels,
    Ingested,
    IngestError,
    IngestRoute,
    Secret,
    Source,
    SourceType,
    basic_user,
    parse_json,
    read_body,
    secret_in,
)

MAX_EVENT_BYTES: Final = 32 * 1024
"""Largest single call, and largest event inside a batch."""

MAX_BATCH_BYTES: Final = 500 * 1024
"""Largest batch request body (decompressed)."""

MAX_BATCH_EVENTS: Final = 2500
"""Most events in one batch."""

SINGLE_PATHS: Final[Mapping[str, str]] = {
    "identify": "identify",
    "track": "track",
    "page": "page",
    "screen": "screen",
    "group": "group",
    "alias": "alias",
    "i": "identify",
    "t": "track",
    "p": "page",
    "s": "screen",
    "g": "group",
    "a": "alias",
}
"""Last path segment of a single-message route → the message type it implies."""

BATCH_PATHS: Final = frozenset({"batch", "import", "b"})
"""Last path segments of the batch routes."""


@frozen
class SegmentSourceSettings:
    """Settings of a ``segment`` source (keys of its ``[[sources]]`` table).

    ``write_keys``: the accepted write keys (at least one). ``allowed_origins``: browser origins
    allowed by CORS (``"*"``: any; browser write keys are public anyway).
    """

    write_keys: list[Secret] = field(validator=validators.min_len(1))
    allowed_origins: list[str] = field(factory=lambda: ["*"])


def _merge_envelope(item: Any, key: str, shared: dict[str, Any]) -> None:
    if type(item) is not dict:
        return  # normalize reports it with its label
    own = item.get(key)
    if own is None:
        item[key] = dict(shared)
    elif type(own) is dict:
        item[key] = {**shared, **own}


def _envelope_object(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None or type(value) is dict:
        return value
    raise IngestError(400, f"{key}: must be an object", code=f"{key}_not_object")


class SegmentIngestor:
    """Turns Segment tracking API requests into Spec messages (see the module docstring)."""

    def __init__(self, source: Source) -> None:
        settings: SegmentSourceSettings = source.settings
        self._keys = tuple(key.reveal().encode() for key in settings.write_keys)
        origins = tuple(settings.allowed_origins)
        self._any_origin = "*" in origins
        self._origins = frozenset(origins)
        self._settings_base = self._segment_io_base(source.public_url)

    @staticmethod
    def _segment_io_base(public_url: str) -> tuple[str, str]:
        parts = urlsplit(public_url)
        protocol = "https" if parts.scheme == "https" else "http"
        host = parts.netloc + parts.path.rstrip("/")
        return protocol, f"{host}/v1"

    # -- Ingestor protocol ------------------------------------------------------------------

    def routes(self) -> Sequence[IngestRoute]:
        """``POST /v1/<type>``, ``/v1/batch``, ``/v1/import`` and the analytics.js short paths."""
        names = [*SINGLE_PATHS, *sorted(BATCH_PATHS)]
        return [IngestRoute("POST", f"/v1/{name}") for name in names]

    async def ingest(self, request: web.Request) -> Ingested:
        """Read, authenticate and unpack one request (events are validated by the core)."""
        name = request.path.rstrip("/").rpartition("/")[2]
        batch = name in BATCH_PATHS
        # A write key in the header is checked before the body is even read; only a request
        # without one needs its (capped) body parsed to find ``writeKey`` inside.
        authorized = self._authorized_header(request)
        if batch:
            data = await read_body(request, MAX_BATCH_BYTES, "batch")
        else:
            data = await read_body(request, MAX_EVENT_BYTES, "event")
        # The integer check is left to the core, which makes it on the stored rows (nothing
        # from the body is rendered anew here: the events are its parsed values).
        body = parse_json(data, defer_integers=True)
        if type(body) is not dict:
            raise IngestError(400, "body: must be a JSON object", code="invalid_body")
        if not authorized:
            key = body.get("writeKey")
            if type(key) is not str or not secret_in(key, self._keys):
                raise IngestError(401, "a valid write key is required", code="unauthorized")
        if not batch:
            body.pop("writeKey", None)
            body["type"] = SINGLE_PATHS[name]
            return Ingested([body], unchecked_json=data)
        return self._unpack_batch(body, data)

    def _authorized_header(self, request: web.Request) -> bool:
        """Whether a Basic header carries a valid write key; a 401 if it carries a wrong one."""
        user = basic_user(request)
        if user is None:
            return False
        if not secret_in(user, self._keys):
            raise IngestError(401, "Authorization: invalid write key", code="unauthorized")
        return True

    def _unpack_batch(self, body: dict[str, Any], data: bytes) -> Ingested:
        items = body.get("batch")
        if type(items) is not list:
            code = "empty_batch" if items is None else "invalid_body"
            raise IngestError(400, "batch: must be a list of messages", code=code)
        if not items:
            raise IngestError(400, "batch: is empty", code="empty_batch")
        if len(items) > MAX_BATCH_EVENTS:
            msg = f"batch: more than {MAX_BATCH_EVENTS} events"
            raise IngestError(400, msg, code="too_many_events")
        context = _envelope_object(body, "context")
        integrations = _envelope_object(body, "integrations")
        for item in items:
            if type(item) is dict:
                item.pop("writeKey", None)
            if context:
                _merge_envelope(item, "context", context)
            if integrations:
                _merge_envelope(item, "integrations", integrations)
        return Ingested(
            items,
            labels=IndexLabels(len(items), "batch"),
            sent_at=body.get("sentAt"),
            unchecked_json=data,
            # The core checks each event's size on what it stores (crossdock.Ingested).
            max_event_bytes=MAX_EVENT_BYTES if len(data) > MAX_EVENT_BYTES else None,
        )

    # -- optional ingestor extras -------------------------------------------------------------

    def response_headers(self, request: web.Request) -> Mapping[str, str]:
        """CORS headers for browser callers whose ``Origin`` is allowed."""
        origin = request.headers.get("Origin")
        if origin is None or not (self._any_origin or origin in self._origins):
            return {}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    def web_routes(self) -> list[web.RouteDef]:
        """CORS preflight for ``/v1/*`` and the analytics.js settings document."""
        return [
            web.options("/v1/{tail:.*}", self._preflight),
            web.get("/v1/projects/{write_key}/settings", self._settings),
        ]

    async def _preflight(self, request: web.Request) -> web.Response:
        headers = dict(self.response_headers(request))
        if headers:
            requested = request.headers.get("Access-Control-Request-Headers")
            headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            headers["Access-Control-Allow-Headers"] = (
                requested or "Content-Type, Authorization, Content-Encoding, X-Retry-Count"
            )
            headers["Access-Control-Max-Age"] = "86400"
        return web.Response(status=204, headers=headers)

    async def _settings(self, request: web.Request) -> web.Response:
        # The same answer for every key, known or not: the document depends only on the key in
        # the path, so it is no oracle for guessing write keys (events still need a valid one).
        headers = dict(self.response_headers(request))
        write_key = request.match_info["write_key"]
        headers["Cache-Control"] = "public, max-age=60"
        document = cdn_settings(write_key, *self._settings_base)
        return web.Response(
            body=orjson.dumps(document), content_type="application/json", headers=headers
        )


def cdn_settings(write_key: str, protocol: str, api_host: str) -> dict[str, Any]:
    """The settings document analytics.js (analytics-next) loads from ``{cdnURL}/v1/projects/
    {writeKey}/settings``, shaped like Segment's CDN answer (``CDNSettings`` in
    ``packages/browser/src/browser/settings.ts``): only the ``Segment.io`` integration, pointed
    at ``{protocol}://{api_host}``, no remote plugins or middleware, remote metrics off."""
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
                "versionSettings": {"version": "4.4.7", "componentTypes": ["browser"]},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0, "host": api_host},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }


# ---------------------------------------------------------------------------------------------
# Hooks

SOURCE_TYPE: Final = SourceType(
    name="segment",
    settings=SegmentSourceSettings,
    description="Segment-compatible tracking API (/v1/*, analytics.js, server SDKs)",
)


@crossdock.hookimpl
def crossdock_source_types() -> Iterable[SourceType]:
    """Declare the ``segment`` source type."""
    return [SOURCE_TYPE]


@crossdock.hookimpl
def crossdock_make_ingestor(source: Source) -> SegmentIngestor:
    """Build the ingestor of a ``segment`` source (the registry calls only this module for it)."""
    return SegmentIngestor(source)
