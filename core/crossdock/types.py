"""Records, outcomes and runtime protocols shared by the core and plugins.

Declarations (:class:`SourceType`, :class:`DestinationType`, :class:`Limits`) are frozen attrs
records returned by the declaration hooks. :class:`Source` and :class:`Destination` are the
validated, bound configuration handed to the stage factories. The protocols are what the
factories return and what the hot path calls directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs
from attrs import field, frozen

from crossdock.transform.spec import MappingFile, Section

if TYPE_CHECKING:
    from aiohttp import web

    from crossdock.transform.jmes.functions import JmesFunction

Event = dict[str, Any]
"""A canonical event: one Segment Spec message as a JSON object."""


# ---------------------------------------------------------------------------------------------
# Declarations


@frozen
class Limits:
    """What a vendor accepts in one request, and how fast.

    ``max_batch_count``/``max_batch_bytes`` bound a request (``max_batch_count=1`` means one
    request per event); ``max_event_bytes`` bounds one payload (a larger one is dead-lettered
    before sending); ``rate_limit`` is the vendor's default in requests per second (``None``:
    unlimited); ``concurrency`` the default number of requests in flight.
    """

    max_batch_count: int = 500
    max_batch_bytes: int = 4 * 1024 * 1024
    max_event_bytes: int | None = None
    rate_limit: float | None = None
    concurrency: int = 4


@frozen
class SourceType:
    """A kind of source, declared by ``crossdock_source_types``.

    ``name`` is the value of ``type`` in a ``[[sources]]`` table (lower-case slug). The table's
    keys other than ``id``, ``type``, ``path``, ``mapping`` and ``tables`` are structured into
    ``settings`` (an attrs class). ``mapping`` is an optional default JMESPath mapping (event
    field → expression) for webhook-like sources, or a whole :class:`crossdock.MappingFile`
    (sections, dispatch, tables): the config then merges ``[sources.mapping]`` and
    ``[sources.tables.*]`` into it as for a destination and binds the result as
    :attr:`Source.spec`. ``default_path`` is used when the table sets no ``path``.
    ``functions`` (:class:`crossdock.JmesFunction`) are callable from this type's mappings only.
    """

    name: str
    settings: type
    description: str
    mapping: Mapping[str, str] | MappingFile | None = None
    default_path: str | None = None
    functions: Sequence[JmesFunction] = ()


@frozen
class DestinationType:
    """A kind of destination, declared by ``crossdock_destination_types``.

    ``name`` is the value of ``plugin`` in a ``[[destinations]]`` table. ``settings`` is the attrs
    class that ``[destinations.settings]`` is structured into. ``mapping`` is the default mapping:
    the whole :class:`crossdock.MappingFile` read by :func:`crossdock.load_mapping_file` (common
    fields, sections, dispatch, tables; see docs/mappings.md), or a plain table of target path →
    JMESPath expression. ``tables`` are named lookup tables (e.g. an event-name map) that
    expressions read with ``lookup('name', key)``, added to the mapping file's; operators can
    extend them from the config. ``functions`` (:class:`crossdock.JmesFunction`) are callable
    from this type's mappings only. ``backfill_settings`` are setting values that
    ``crossdock backfill`` applies on top of the configured ones when it replays historical
    events (e.g. ``{"skip_hook": True}`` so a vendor does not trigger journeys for old data).
    ``renamed`` keeps operators' old mapping override keys working for one minor version after
    the plugin renamed its fields: old key (a path prefix) → new key, or → ``{new key:
    template}`` where ``$`` in the template stands for the operator's expression; a renamed
    key works and ``crossdock check``/start-up warn with the new name (:func:`merge_spec`).
    """

    name: str
    settings: type
    description: str
    mapping: Mapping[str, str] | MappingFile = field(factory=lambda: {".": "@"})
    tables: Mapping[str, Mapping[str, Any]] = field(factory=dict)
    limits: Limits = field(factory=Limits)
    backfill_settings: Mapping[str, Any] = field(factory=dict)
    functions: Sequence[JmesFunction] = ()
    renamed: Mapping[str, str | Mapping[str, str]] = field(factory=dict)

    @property
    def spec(self) -> MappingFile:
        """The whole default mapping as a :class:`crossdock.MappingFile`, ``tables`` rows added
        to the mapping file's."""
        mapping = self.mapping
        base = mapping if isinstance(mapping, MappingFile) else MappingFile(fields=dict(mapping))
        tables = {name: dict(rows) for name, rows in base.tables.items()}
        for name, rows in self.tables.items():
            tables.setdefault(name, {}).update(rows)
        return attrs.evolve(base, tables=tables)


# ---------------------------------------------------------------------------------------------
# Bound configuration, handed to the stage factories


@frozen
class DeliverySettings:
    """``[destinations.delivery]``: batching, pacing and the retry budget of one destination.

    ``None`` fields fall back to the plugin's :class:`Limits`. ``max_age`` is seconds.
    """

    batch_size: int | None = None
    max_bytes: int | None = None
    max_wait_ms: int = 1000
    max_attempts: int = 12
    max_age: float = 24 * 3600.0
    rate_limit: float | None = None
    concurrency: int | None = None
    timeout: float = 30.0
    ordering: str = "none"
    max_held_per_user: int = 100


@frozen
class Source:
    """One configured ``[[sources]]`` entry, validated and bound.

    ``settings`` is an instance of the type's settings class. ``public_url`` is the server's
    public base URL (for sources that tell clients where to send, like analytics.js settings).
    ``spec`` is set when the type's mapping is a :class:`crossdock.MappingFile`: that file with
    the config's ``[sources.mapping]`` overrides and ``[sources.tables.*]`` rows merged
    (:func:`crossdock.merge_spec`); ``mapping`` is then its common fields. ``functions`` are the
    JMESPath functions every plugin shares followed by the type's own.
    """

    id: str
    type: str
    path: str | None
    settings: Any
    mapping: Mapping[str, str] | None = None
    public_url: str = "http://127.0.0.1:8088"
    functions: Sequence[JmesFunction] = ()
    spec: MappingFile | None = None


@frozen
class Destination:
    """One configured ``[[destinations]]`` entry, validated and bound.

    ``mapping`` is the type's default common fields with the config's overrides applied (a
    flat table of target path → expression) and ``tables`` the merged lookup tables, as before
    sections existed; ``sections`` and ``select`` are the merged sections and dispatch (by
    default the type's). :attr:`spec` is all of it as one :class:`crossdock.MappingFile`, what
    transformers compile (:func:`crossdock.compile_spec`). ``where`` is the optional
    condition; ``sources`` the source ids it receives (``None``: all). ``shared_functions`` are
    the JMESPath functions plugins offer to every mapping (``crossdock_jmespath_functions``).
    """

    id: str
    plugin: str
    type: DestinationType
    settings: Any
    mapping: Mapping[str, str]
    tables: Mapping[str, Mapping[str, Any]] = field(factory=dict)
    where: str | None = None
    sources: tuple[str, ...] | None = None
    delivery: DeliverySettings = field(factory=DeliverySettings)
    sections: Mapping[str, Section] = field()
    select: str | None = field()
    shared_functions: Sequence[JmesFunction] = ()

    @sections.default
    def _type_sections(self) -> Mapping[str, Section]:
        return dict(self.type.spec.sections)

    @select.default
    def _type_select(self) -> str | None:
        return self.type.spec.select

    @property
    def spec(self) -> MappingFile:
        """The merged mapping: common fields, tables, sections and dispatch."""
        return MappingFile(
            fields=dict(self.mapping),
            tables={name: dict(rows) for name, rows in self.tables.items()},
            sections=dict(self.sections),
            select=self.select,
        )

    @property
    def functions(self) -> Sequence[JmesFunction]:
        """The JMESPath functions its mappings may call: those every plugin shares
        (``crossdock_jmespath_functions``), then its type's own (which win on a name)."""
        return (*self.shared_functions, *self.type.functions)

    @property
    def limits(self) -> Limits:
        """The vendor limits declared by the destination's type."""
        return self.type.limits


# ---------------------------------------------------------------------------------------------
# Ingest


@frozen
class IngestRoute:
    """An HTTP route on which a source accepts events (``method`` and aiohttp ``path``)."""

    method: str
    path: str


@frozen
class Ingested:
    """What an ingestor made of one request.

    ``events`` are Spec messages (``type`` set). ``labels`` name each event in error messages
    (``batch[3]``); default ``[i]``, or nothing for a single event. ``sent_at`` is the envelope's
    ``sentAt`` (a message's own ``sentAt`` wins). Once the events are durably stored, the core
    answers 200 with ``body`` as JSON and ``headers``.

    Two checks an ingestor may leave to the core, which makes them on the JSON it serializes
    for storage anyway (cheaper than a pass of its own over every message):

    - ``unchecked_json``: the body the events were parsed from with
      ``parse_json(data, defer_integers=True)``. The core refuses it, as ``parse_json`` would
      have, when an integer beyond 64 bits reached a stored event; one in a part of the body
      that is not stored is no longer looked for.
    - ``max_event_bytes``: the most bytes of compact JSON one message may have as sent. The
      core refuses the first message over it (400 ``too_large`` naming its label) when an event
      is over it as stored too; an event that only the fields the core rewrites (``receivedAt``,
      the times, ``writeKey``) took over it is accepted.
    """

    events: Sequence[Event]
    labels: Sequence[str] | None = None
    sent_at: str | None = None
    body: Any = field(factory=lambda: {"success": True})
    headers: Mapping[str, str] = field(factory=dict)
    unchecked_json: bytes | bytearray | memoryview | str | None = None
    max_event_bytes: int | None = None


@runtime_checkable
class Ingestor(Protocol):
    """Turns requests into events; returned by ``crossdock_make_ingestor``.

    Optional members: ``response_headers`` (:class:`HasResponseHeaders`) and ``web_routes``
    (:class:`HasWebRoutes`).
    """

    def routes(self) -> Sequence[IngestRoute]:
        """The routes whose requests :meth:`ingest` handles."""
        ...

    async def ingest(self, request: web.Request) -> Ingested:
        """Parse and check one request; raise :class:`~crossdock.IngestError` to refuse it."""
        ...


# Optional members. The core looks each one up once, at start-up, with ``getattr``; an object
# without it gets the default behaviour. Each Protocol below is the contract of one member.


@runtime_checkable
class HasResponseHeaders(Protocol):
    """Optional on an :class:`Ingestor`: headers added to every answer of its routes.

    Called per request, before :meth:`Ingestor.ingest`, so refusals carry them too (CORS
    headers are the usual case). Default: none.
    """

    def response_headers(self, request: web.Request) -> Mapping[str, str]:
        """The extra headers for the answer to ``request`` (cheap: runs on every request)."""
        ...


@runtime_checkable
class HasWebRoutes(Protocol):
    """Optional on an :class:`Ingestor`: extra aiohttp routes (a CORS preflight, a settings
    document) served as they are: they store nothing and skip the core's ingest handler.

    Called once, when the server starts. Default: none.
    """

    def web_routes(self) -> Sequence[web.RouteDef]:
        """The extra routes, as ``aiohttp.web.get(...)``-style route definitions."""
        ...


@runtime_checkable
class HasDecode(Protocol):
    """Optional on an :class:`Ingestor`: the body-to-events half of :meth:`Ingestor.ingest`.

    ``decode(body)`` turns one parsed JSON body (what a request of this source carries, after
    authentication and size checks) into events, without HTTP. ``crossdock test`` uses it to
    try a body captured from the sender (``examples/events/hardal_purchase.json``) against a
    destination exactly as the live source would map it. Pure, no I/O; raises
    :class:`~crossdock.IngestError` as ``ingest`` would. Default: the body must already be Spec
    messages.
    """

    def decode(self, body: Any) -> Ingested:
        """The events of ``body`` (raise :class:`~crossdock.IngestError` to refuse it)."""
        ...


# ---------------------------------------------------------------------------------------------
# Transform and deliver


@runtime_checkable
class Transformer(Protocol):
    """A pure function from one event to the vendor payload, or ``None`` to drop the event.

    Runs on the event loop for every event: no I/O, no blocking. Optional member: ``matches``
    (:class:`HasMatches`).
    """

    def __call__(self, event: Event) -> Any: ...


@runtime_checkable
class HasMatches(Protocol):
    """Optional on a :class:`Transformer`: whether an event passes the destination's ``where``.

    When the transformer returns ``None``, the core asks ``matches(event)`` to count the event
    as *filtered* (``False``: the condition excluded it) rather than *dropped* (the mapping
    produced nothing). :class:`crossdock.CompiledMapping` has it. Default: every ``None`` is
    counted as dropped.
    """

    def matches(self, event: Event) -> bool:
        """``True`` if ``event`` passes the ``where`` condition (pure, no I/O)."""
        ...


@runtime_checkable
class HasNotes(Protocol):
    """Optional on a :class:`Transformer`: what the operator should know about this
    destination's configuration, printed by ``crossdock check`` as ``note:`` lines (not
    problems: the config is valid). E.g. "no default currency: a purchase without one is
    dead-lettered". Called once, by ``check``; must not contain secrets."""

    def notes(self) -> Sequence[str]:
        """Short sentences, one per note (empty: nothing to say)."""
        ...


@runtime_checkable
class HasDropReason(Protocol):
    """Optional on a :class:`Transformer`: why it returned ``None`` for an event.

    Asked only for dropped events (the slow path); the answer labels
    ``crossdock_events_dropped_total{reason}`` and the admin dry run, so it must be short and
    low-cardinality (a rule's name, never event data). :class:`crossdock.CompiledMapping` and
    :class:`crossdock.SectionedMapping` have it. Default: ``mapping``.
    """

    def drop_reason(self, event: Event) -> str | None:
        """A short reason (``section refund: drop``), or ``None`` when it does not know."""
        ...


@attrs.define(slots=True)
class BatchItem:
    """One event ready to send: the event, its payload and the payload serialized once as JSON."""

    event: Event
    payload: Any
    data: bytes


@frozen
class Delivered:
    """The vendor accepted the event."""


DELIVERED = Delivered()


@frozen
class RetryLater:
    """Try again later: a 5xx, 429, timeout or connection error. ``after`` is seconds, if the
    vendor said (``Retry-After``); ``body`` the vendor's answer when there was one (shown, cut
    and masked, by the console; not part of equality)."""

    reason: str
    after: float | None = None
    status: int | None = None
    body: str | None = field(default=None, eq=False, repr=False)


@frozen
class Rejected:
    """The vendor says this event itself is invalid: it goes to the dead-letter queue with the
    vendor's ``reason`` (and the HTTP ``status`` and response ``body`` when there was one)."""

    reason: str
    status: int | None = None
    body: str | None = None


@frozen
class CredentialsRejected:
    """The vendor refused the destination's credentials (401/403): the core pauses the
    destination, keeps its events queued and probes again with backoff."""

    reason: str
    status: int | None = None


@frozen
class BatchRejected:
    """The vendor refused the request this event was in without naming the bad events.

    The core isolates them, sending through the destination's rate limiter and concurrency:
    when every item of the request is ``BatchRejected`` it resends them in halves; when only
    some are (e.g. the vendor named the bad events, answered :class:`Rejected`, and refused their
    batch-mates with them) it resends those together. An event refused alone is dead-lettered
    like :class:`Rejected` with ``reason``, ``status`` and ``body`` (masked, cut to 4 KB), so write
    ``reason`` as the reason the event would get alone.
    """

    reason: str
    status: int | None = None
    body: str | None = None


Outcome = Delivered | RetryLater | Rejected | CredentialsRejected | BatchRejected


@runtime_checkable
class Deliverer(Protocol):
    """Sends batches to a vendor; returned by ``crossdock_make_deliverer``.

    Optional member: ``request_cost`` (:class:`HasRequestCost`).
    """

    async def deliver(self, batch: Sequence[BatchItem]) -> Sequence[Outcome]:
        """Send ``batch`` (never empty) and return one outcome per item, in order.

        Send ONE request per call (or one per item, declared by ``request_cost``): to isolate
        events when the vendor refuses a request without naming them, answer
        :class:`BatchRejected` for its items and the core splits and resends; when it names
        them, map its per-index failures with :func:`crossdock.outcomes_by_index`. Never resend
        inside ``deliver``: extra requests would bypass the destination's rate limit.
        """
        ...

    async def close(self) -> None:
        """Release what the deliverer holds (called once, at shutdown)."""
        ...


@runtime_checkable
class HasRequestCost(Protocol):
    """Optional on a :class:`Deliverer`: how many requests one ``deliver(batch)`` call sends.

    The destination's rate limit counts requests per second; a deliverer that sends one
    request per item (``max_batch_count=1`` aside) says so here and the core takes that many
    tokens before calling ``deliver``. Default: 1 per call.
    """

    def request_cost(self, batch: Sequence[BatchItem]) -> float:
        """The number of vendor requests ``deliver(batch)`` will send (at least 1)."""
        ...
