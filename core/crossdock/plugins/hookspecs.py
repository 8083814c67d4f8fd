"""The six hooks of Crossdock (pluggy project ``crossdock``); each docstring is the contract.

Your first plugin, in five lines (``pyproject.toml``:
``[project.entry-points.crossdock] acme = "crossdock_acme"``)::

    import crossdock

    @crossdock.hookimpl
    def crossdock_destination_types():
        return [crossdock.DestinationType(name="acme", settings=AcmeSettings,
                                          description="Acme's events API",
                                          mapping=crossdock.load_mapping(__package__))]

Declaration hooks are called once while the registry is built. Stage hooks are factories,
``firstresult``, called once per configured source or destination at start-up, and only on the
plugin that declared the type (plus the built-in fallbacks); the objects they return are what the
hot path calls. Nothing goes through pluggy per event.

So a stage hook needs no ``if destination.plugin != NAME: return None`` guard: it never sees
another plugin's source or destination. (A plugin declaring several types of its own tells them
apart by ``source.type`` or ``destination.plugin``.)

Optional members of the returned objects, each a Protocol in :mod:`crossdock.types` and looked
up once at start-up: an ingestor's ``response_headers(request)``
(:class:`crossdock.HasResponseHeaders`), ``web_routes()`` (:class:`crossdock.HasWebRoutes`) and
``decode(body)`` (:class:`crossdock.HasDecode`),
a transformer's ``matches(event)`` (:class:`crossdock.HasMatches`),
``drop_reason(event)`` (:class:`crossdock.HasDropReason`) and ``notes()``
(:class:`crossdock.HasNotes`), a deliverer's
``request_cost(batch)`` (:class:`crossdock.HasRequestCost`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import aiohttp

    from crossdock.transform.jmes.functions import JmesFunction
    from crossdock.types import (
        Deliverer,
        Destination,
        DestinationType,
        Ingestor,
        Source,
        SourceType,
        Transformer,
    )

PROJECT = "crossdock"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def crossdock_source_types() -> Iterable[SourceType]:
    """Declare the source types this plugin provides.

    Called once per plugin while the registry is built, before the configuration is read.

    :return: an iterable of :class:`crossdock.SourceType` records. Names are lower-case slugs
        unique across every installed plugin; a clash is reported naming every provider.

    Example::

        @crossdock.hookimpl
        def crossdock_source_types():
            return [crossdock.SourceType("hull", HullSourceSettings, "Hull user notifications",
                                         default_path="/hooks/hull")]
    """


@hookspec
def crossdock_destination_types() -> Iterable[DestinationType]:
    """Declare the destination types this plugin provides.

    Called once per plugin while the registry is built, before the configuration is read.

    :return: an iterable of :class:`crossdock.DestinationType` records (name, settings class,
        default mapping, vendor limits, one-line description).

    Example::

        @crossdock.hookimpl
        def crossdock_destination_types():
            return [crossdock.DestinationType("acme", AcmeSettings, "Acme events API",
                                              mapping={"name": "event", "user": "userId"},
                                              limits=crossdock.Limits(max_batch_count=100))]
    """


@hookspec
def crossdock_jmespath_functions() -> Iterable[JmesFunction]:
    """Declare JMESPath functions this plugin offers to every mapping, of any type.

    Called once per plugin while the registry is built. Most functions belong to one type
    (``DestinationType(functions=...)``: only that type's mappings see them); share one only
    when operators call it from other plugins' mappings, e.g. a source plugin's
    ``is_product_fruits_event(@)`` in a ``segment`` destination's ``where``. A shared name that
    shadows a JMESPath built-in or a Crossdock function, or that two plugins declare with
    different callables, is reported as a plugin problem and left out; a type's own function
    of the same name wins in that type's mappings.

    :return: an iterable of :class:`crossdock.JmesFunction` records.

    Example::

        @crossdock.hookimpl
        def crossdock_jmespath_functions():
            return [crossdock.JmesFunction.create("is_acme_event", is_acme_event, ["any"])]
    """


@hookspec(firstresult=True)
def crossdock_make_ingestor(source: Source) -> Ingestor | None:
    """Build the ingestor of one configured source.

    Called once per ``[[sources]]`` entry at start-up, before the server accepts traffic, and
    only on the plugin that declared ``source.type`` (no guard needed).

    :param source: the validated source: ``id``, ``type``, ``path``, structured ``settings``,
        ``mapping`` and the server's ``public_url``.
    :return: an :class:`crossdock.Ingestor` whose ``routes()`` name the HTTP routes it serves and
        whose ``async ingest(request)`` turns one request into :class:`crossdock.Ingested` events
        or raises :class:`crossdock.IngestError` (a 4xx with a message naming the field).
        The core validates and normalises the events (``messageId``, ``receivedAt``,
        ``timestamp``), deduplicates them, stores them durably and only then answers.
        Optional: ``response_headers(request)``, headers added to every answer (CORS), and
        ``web_routes()``, extra aiohttp routes that store nothing. Read the body with
        :func:`crossdock.read_body` and :func:`crossdock.parse_json`; compare credentials with
        :func:`crossdock.secret_in` or :func:`crossdock.signature_valid`.
        Return ``None`` to decline.

    Example::

        @crossdock.hookimpl
        def crossdock_make_ingestor(source):
            return HullIngestor(source.path, source.settings)
    """


@hookspec(firstresult=True)
def crossdock_make_transformer(destination: Destination) -> Transformer | None:
    """Build the transformer of one configured destination.

    Called once per ``[[destinations]]`` entry at start-up, only on the plugin that declared
    ``destination.plugin`` (no guard needed) and then on the built-in JMESPath transformer,
    which answers last (``trylast``): it compiles ``destination.mapping`` (the type's default
    mapping with the config's overrides) and ``destination.where`` once, so most plugins ship
    only a mapping file and do not implement this hook. Implement it when JMESPath is not
    enough; build on :func:`crossdock.compile_mapping`.

    :param destination: the validated destination (settings, merged mapping, tables, where).
    :return: a callable ``event -> payload | None`` (``None`` drops the event). It runs on the
        event loop for every event, so it must be pure and must not block. Optional:
        ``matches(event)``, whether the event passes ``where``, so a ``None`` is counted as
        filtered rather than dropped. Return ``None`` to decline and let the default answer.

    Example::

        @crossdock.hookimpl
        def crossdock_make_transformer(destination):
            base = crossdock.compile_mapping(destination.mapping, where=destination.where)
            return lambda event: split_per_product(base(event))
    """


@hookspec(firstresult=True)
def crossdock_make_deliverer(
    destination: Destination, http: aiohttp.ClientSession
) -> Deliverer | None:
    """Build the deliverer of one configured destination.

    Called once per ``[[destinations]]`` entry at start-up, only on the plugin that declared
    ``destination.plugin`` (no guard needed). Optional on the deliverer: ``request_cost(batch)``,
    the number of requests one ``deliver`` call sends, taken from the rate limit.

    :param destination: the validated destination.
    :param http: the shared client session; the core sets its timeouts and closes it.
    :return: a :class:`crossdock.Deliverer`: ``async deliver(batch)`` returns one outcome per
        item, in order: :class:`~crossdock.Delivered`, :class:`~crossdock.RetryLater`,
        :class:`~crossdock.Rejected` (the vendor says the event is invalid; it is dead-lettered
        with the reason), :class:`~crossdock.BatchRejected` (the vendor refused the request
        without naming the bad events: the core resends the batch in halves, through the rate
        limit and concurrency, until each refused event is alone, and dead-letters it with
        this reason), or :class:`~crossdock.CredentialsRejected` (401/403: the core pauses
        the destination). One request per call: never resend inside ``deliver``; map a
        vendor's per-index failures with :func:`crossdock.outcomes_by_index`. Plugins say what
        happened; the core decides retry, pause or dead letter. An exception escaping
        ``deliver`` means retry-later for the whole batch, never a lost event. ``async
        close()`` is called at shutdown. Return ``None`` to decline.

    Example::

        @crossdock.hookimpl
        def crossdock_make_deliverer(destination, http):
            return AcmeDeliverer(destination.settings, http)
    """
