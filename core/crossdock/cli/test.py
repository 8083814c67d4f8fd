"""``crossdock test DEST --event FILE [--send]``: the exact request(s) a destination would send.

Without ``--send`` the destination's deliverer gets a :class:`~crossdock.cli.capture.CaptureSession`
(nothing leaves the machine); with ``--send`` a real session whose ``TraceConfig`` records the
same, plus the vendor's response. Headers and bodies are printed with secrets masked.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp
import orjson

from crossdock.cli.capture import CapturedRequest, CaptureSession
from crossdock.cli.common import EXIT_OK, EXIT_PROBLEMS, load_or_problems
from crossdock.deliver.session import outbound_session
from crossdock.errors import CrossdockError, IngestError, Unsendable
from crossdock.secrets import Secret, mask
from crossdock.types import BatchItem, Delivered, HasNotes, Ingested

__all__ = [
    "cmd_test",
    "mask_headers",
    "mask_url",
    "render_request",
    "request_record",
]

_MASK = "***"
_AUTH_HEADERS = ("authorization", "proxy-authorization")


def cmd_test(args: argparse.Namespace) -> int:
    """Transform the event(s) for ``DEST`` as the live path would and show (or, with ``--send``,
    make) the requests.

    Every input event is reported by its number in the input (``event 0`` is the first): what
    would be sent, or why nothing would (the loop check, the destination's ``sources`` or
    ``where``, the mapping's reason, a failed transform). Exit 1 when nothing would be sent,
    unless ``--allow-dropped``; with ``--send``, also when the vendor did not accept an event.
    """
    report = _Report(as_json=args.json)
    return report.finish(_test(args, report))


def _test(args: argparse.Namespace, report: _Report) -> int:
    loaded = load_or_problems(args.config)
    if not isinstance(loaded, tuple):
        heading, *problems = loaded
        report.problems += problems
        if not report.as_json:
            print(heading, file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
        return EXIT_PROBLEMS
    config, registry = loaded
    try:
        destination = config.destination(args.destination)
    except KeyError:
        listing = ", ".join(d.id for d in config.destinations) or "none configured"
        report.problem(f'unknown destination "{args.destination}" (known: {listing})')
        return EXIT_PROBLEMS
    secrets = config.secrets()
    source = args.source
    if source is not None and source not in {s.id for s in config.sources}:
        listing = ", ".join(s.id for s in config.sources) or "none configured"
        report.problem(f'unknown source "{source}" (known: {listing})')
        return EXIT_PROBLEMS
    try:
        messages = _read_messages(args.event)
        transform = registry.make_transformer(destination)
        notes = transform.notes() if isinstance(transform, HasNotes) else ()
    except (CrossdockError, OSError, ValueError) as exc:
        report.problem(f"crossdock test: {mask(str(exc), secrets)}")
        return EXIT_PROBLEMS
    report.notes += [mask(str(note), secrets) for note in notes]
    default_source = source or _default_source(destination, config)
    decoders = _Decoders(registry, config)
    items: list[BatchItem] = []
    numbers: list[str] = []
    failed = False
    for i, message in enumerate(messages):
        try:
            ingested = _ingest(message, default_source, decoders)
        except IngestError as exc:
            report.event(str(i), "invalid", mask(exc.message, secrets))
            failed = True
            continue
        except CrossdockError as exc:
            report.problem(f"crossdock test: {mask(str(exc), secrets)}")
            return EXIT_PROBLEMS
        if isinstance(ingested, str):
            report.event(str(i), "not sent", ingested)
            continue
        for j, event in enumerate(ingested):
            number = str(i) if len(ingested) == 1 else f"{i}.{j}"
            item, problem = _item(event, destination, transform, secrets)
            if item is None:
                report.event(number, "not sent", problem)
                failed = failed or problem.startswith(("unsendable", "transform failed"))
                continue
            items.append(item)
            numbers.append(number)
    if not items:
        if args.allow_dropped and not failed:
            report.line("nothing would be sent")
            return EXIT_OK
        report.problem("nothing would be sent (add --allow-dropped if that is expected)")
        return EXIT_PROBLEMS
    try:
        code = asyncio.run(
            _deliver(registry, destination, items, numbers, secrets, report, send=args.send)
        )
    except CrossdockError as exc:
        report.problem(f"crossdock test: {mask(str(exc), secrets)}")
        return EXIT_PROBLEMS
    return EXIT_PROBLEMS if failed else code


class _Report:
    """What ``crossdock test`` found: printed as it goes (text), or collected and printed as one
    JSON object at the end (``--json``): ``ok``, ``problems``, ``notes``, ``events`` (per input
    event: its number, outcome, reason and the indexes of the ``requests`` it went out in) and
    ``requests`` (method, URL, headers and body, masked; with ``--send`` the answer too)."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []

    def line(self, text: str) -> None:
        """A line of the text form only."""
        if not self.as_json:
            print(text)

    def problem(self, text: str) -> None:
        """Why the test could not run or failed as a whole (stderr in the text form)."""
        self.problems.append(text)
        if not self.as_json:
            print(text, file=sys.stderr)

    def event(
        self, number: str, outcome: str, reason: str = "", *, requests: Sequence[int] = ()
    ) -> None:
        """The outcome of one input event (``number``: ``3``, or ``3.1`` when a source made
        several events of input 3)."""
        self.events.append(
            {"event": number, "outcome": outcome, "reason": reason, "requests": list(requests)}
        )
        self.line(f"event {number}: {outcome}" + (f": {reason}" if reason else ""))

    def finish(self, code: int) -> int:
        """Print the JSON object (``--json``) and pass the exit code on."""
        if self.as_json:
            document = {
                "ok": code == EXIT_OK,
                "problems": self.problems,
                "notes": self.notes,
                "events": self.events,
                "requests": self.requests,
            }
            sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
        return code


def _read_messages(name: str) -> list[dict[str, Any]]:
    raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = [orjson.loads(line) for line in raw.splitlines() if line.strip()]
    messages = data if isinstance(data, list) else [data]
    if not all(isinstance(m, dict) for m in messages):
        msg = f"{name}: expected a JSON object, a list of them, or NDJSON"
        raise ValueError(msg)
    return messages


def _default_source(destination: Any, config: Any) -> str:
    """The source an uncaptured event is tested as coming from: the destination's first source,
    else the first configured source."""
    return (destination.sources or [s.id for s in config.sources] or ["crossdock-test"])[0]


def _captured_source(message: Mapping[str, Any]) -> str | None:
    """The source a captured event (from ``/admin/tail``, a dead letter or a file destination)
    was accepted by: the last hop of its ``context.crossdock`` chain."""
    context = message.get("context")
    mark = context.get("crossdock") if isinstance(context, dict) else None
    source = mark.get("source") if isinstance(mark, dict) else None
    chain = mark.get("sources") if isinstance(mark, dict) else None
    if isinstance(source, str) and isinstance(chain, list) and chain and chain[-1] == source:
        return source
    return None


class _Decoders:
    """The ``decode`` of each configured source's ingestor (:class:`crossdock.HasDecode`),
    built on first use; ``None`` for sources whose bodies are Spec messages already."""

    def __init__(self, registry: Any, config: Any) -> None:
        self._registry = registry
        self._sources = {s.id: s for s in config.sources}
        self._made: dict[str, Any] = {}

    def __call__(self, source_id: str) -> Any:
        if source_id not in self._made:
            source = self._sources.get(source_id)
            ingestor = self._registry.make_ingestor(source) if source is not None else None
            self._made[source_id] = getattr(ingestor, "decode", None)
        return self._made[source_id]


def _ingest(message: dict[str, Any], default_source: str, decoders: _Decoders) -> Any:
    """The events the live path would store for one input message, or why it stores none.

    A captured event is replayed as the source that accepted it (its last hop is taken off the
    chain and added again), so the loop check and the destination's ``sources`` see what they
    saw live. Any other message is a body sent to ``default_source``: decoded by that source's
    ingestor when it has ``decode`` (a Hardal body, a mapped webhook), else a Spec message.
    """
    from crossdock.ingest.normalize import normalize

    source = _captured_source(message)
    if source is not None:
        mark = dict(message["context"]["crossdock"])
        mark["sources"] = mark["sources"][:-1]
        ingested = Ingested(
            events=[{**message, "context": {**message["context"], "crossdock": mark}}]
        )
    else:
        source = default_source
        decode = decoders(source)
        ingested = decode(message) if decode is not None else Ingested(events=[message])
    normalized = normalize(ingested, source_id=source, received_at=time.time())
    if not normalized.events:
        if normalized.looped:
            return f"loop check: it already passed source {source!r}"
        return f"source {source!r} stores no event for it"
    return normalized.events


def _item(
    event: dict[str, Any], destination: Any, transform: Any, secrets: list[Secret]
) -> tuple[BatchItem | None, str]:
    """The batch item the live worker would make of ``event``, or why it makes none."""
    why = _route(event, destination)
    if why is not None:
        return None, why
    try:
        payload = transform(event)
        if payload is None:
            return None, _drop_reason(transform, event)
        return BatchItem(event=event, payload=payload, data=orjson.dumps(payload)), ""
    except Unsendable as exc:
        return None, f"unsendable (dead-lettered when live): {exc.reason}"
    except Exception as exc:
        text = mask(f"{type(exc).__name__}: {exc}", secrets)
        return None, f"transform failed (dead-lettered when live): {text}"


def _route(event: Mapping[str, Any], destination: Any) -> str | None:
    """Why the destination's ``sources`` filter would skip ``event`` (``None``: it is routed)."""
    if destination.sources is None:
        return None
    source = event["context"]["crossdock"]["source"]
    if source in destination.sources:
        return None
    return f"filtered: source {source!r} is not among this destination's sources"


def _drop_reason(transform: Any, event: Mapping[str, Any]) -> str:
    explain = getattr(transform, "drop_reason", None)
    reason = explain(event) if explain else None
    matches = getattr(transform, "matches", None)
    if matches is not None and not matches(event):
        if reason and reason != "filtered":
            return f"filtered by the mapping: {reason}"
        return "filtered: the destination's where condition is false"
    return f"dropped by the mapping: {reason or 'no payload'}"


async def _deliver(
    registry: Any,
    destination: Any,
    items: list[BatchItem],
    numbers: list[str],
    secrets: list[Secret],
    report: _Report,
    *,
    send: bool,
) -> int:
    captured: list[CapturedRequest]
    if send:
        recorder = _TraceRecorder()
        timeout = aiohttp.ClientTimeout(total=destination.delivery.timeout)
        async with outbound_session(timeout=timeout, trace_configs=[recorder.config]) as http:
            outcomes, made = await _run_deliverer(
                registry, destination, http, items, secrets, lambda: len(recorder.requests)
            )
        captured = recorder.requests
    else:
        session = CaptureSession()
        outcomes, made = await _run_deliverer(
            registry, destination, session, items, secrets, lambda: len(session.requests)
        )
        captured = session.requests
    report.requests = [request_record(r, secrets, response=send) for r in captured]
    if not captured:
        report.line("no request was made")
    for request in captured:
        report.line(render_request(request, secrets, response=send))
    if not send:
        for number, requests in zip(numbers, made, strict=True):
            report.event(number, "would send", requests=requests)
        report.line("(dry run: nothing was sent; add --send to deliver)")
        return EXIT_OK
    ok = True
    for number, outcome, requests in zip(numbers, outcomes, made, strict=True):
        reason = getattr(outcome, "reason", "")
        name = type(outcome).__name__
        report.event(number, name, mask(reason, secrets) if reason else "", requests=requests)
        ok = ok and isinstance(outcome, Delivered)
    return EXIT_OK if ok else EXIT_PROBLEMS


async def _run_deliverer(
    registry: Any,
    destination: Any,
    http: Any,
    items: list[BatchItem],
    secrets: list[Secret],
    made_so_far: Callable[[], int],
) -> tuple[list[Any], list[list[int]]]:
    """Send ``items`` in the batches the live worker would form, through the core's sender
    (rate limit, isolation of refused batches): one outcome per item, in order, and for each
    item the indexes of the requests made while its batch was sent."""
    from crossdock.deliver.batching import SEPARATOR_BYTES, BatchCaps
    from crossdock.deliver.sending import Sender

    deliverer = registry.make_deliverer(destination, http)
    sender = Sender.of(destination, deliverer, secrets=tuple(secrets))
    caps = BatchCaps.of(destination)
    batches: list[list[BatchItem]] = [[]]
    size = 0
    for item in items:
        cost = len(item.data) + SEPARATOR_BYTES
        if caps.full(len(batches[-1]), size, cost):
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += cost
    outcomes: list[Any] = []
    made: list[list[int]] = []
    try:
        for batch in batches:
            before = made_so_far()
            outcomes += await sender.deliver(batch)
            made += [list(range(before, made_so_far()))] * len(batch)
    finally:
        await deliverer.close()
    return outcomes, made


class _TraceRecorder:
    """Records what a real session sends and receives through aiohttp's tracing signals."""

    def __init__(self) -> None:
        self.requests: list[CapturedRequest] = []
        self.config = aiohttp.TraceConfig()
        self.config.on_request_start.append(self._start)
        self.config.on_request_headers_sent.append(self._headers_sent)
        self.config.on_request_chunk_sent.append(self._chunk_sent)
        self.config.on_response_chunk_received.append(self._chunk_received)
        self.config.on_request_end.append(self._end)
        self.config.on_request_exception.append(self._exception)

    def _current(self, ctx: SimpleNamespace) -> CapturedRequest:
        return ctx.captured  # type: ignore[no-any-return]

    async def _start(self, session: Any, ctx: SimpleNamespace, params: Any) -> None:
        request = CapturedRequest(
            params.method, str(params.url), {k: v for k, v in params.headers.items()}, None
        )
        ctx.captured = request
        self.requests.append(request)

    async def _headers_sent(self, session: Any, ctx: SimpleNamespace, params: Any) -> None:
        self._current(ctx).headers = {k: v for k, v in params.headers.items()}

    async def _chunk_sent(self, session: Any, ctx: SimpleNamespace, params: Any) -> None:
        request = self._current(ctx)
        request.body = (request.body or b"") + bytes(params.chunk)

    async def _chunk_received(self, session: Any, ctx: SimpleNamespace, params: Any) -> None:
        request = self._current(ctx)
        request.response_body = (request.response_body or b"") + bytes(params.chunk)

    async def _end(self, session: Any, ctx: SimpleNamespace, params: Any) -> None:
        self._current(ctx).status = params.response.status

    async def _exception(self, session: Any, ctx: SimpleNamespace, params: Any) -> None:
        self._current(ctx).error = f"{type(params.exception).__name__}: {params.exception}"


_SENSITIVE = re.compile(r"auth|token|secret|key|passw|cookie|session|credential", re.I)
"""Header and query parameter names whose values are masked whatever they hold."""


def mask_headers(headers: Mapping[str, str], secrets: Sequence[Secret]) -> dict[str, str]:
    """Headers with ``Authorization`` values, credential-named headers (``X-Api-Key``,
    ``X-Token``...) and anything holding a secret replaced by ``***``."""
    masked: dict[str, str] = {}
    for name, value in headers.items():
        if name.lower() in _AUTH_HEADERS:
            scheme, _, rest = value.partition(" ")
            masked[name] = f"{scheme} {_MASK}" if rest else _MASK
        elif _SENSITIVE.search(name) or mask(value, secrets) != value:
            masked[name] = _MASK
        else:
            masked[name] = value
    return masked


def mask_url(url: str, secrets: Sequence[Secret]) -> str:
    """``url`` with its password and credential-named query values (``?token=``, ``api_key``...)
    replaced by ``***``, and any secret left in it masked."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return mask(url, secrets)
    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{_MASK}@{host}"
    query = "&".join(
        f"{name}={_MASK}" if _SENSITIVE.search(unquote(name)) and sep else f"{name}{sep}{value}"
        for name, sep, value in (pair.partition("=") for pair in parts.query.split("&") if pair)
    )
    return mask(urlunsplit(parts._replace(netloc=netloc, query=query)), secrets)


def _mask_text(text: str, secrets: Sequence[Secret]) -> str:
    return mask(text, secrets)


def _body_text(body: bytes | None, secrets: Sequence[Secret]) -> str:
    if not body:
        return "(no body)"
    try:
        text = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace")
    return _mask_text(text, secrets)


def request_record(
    request: CapturedRequest, secrets: Sequence[Secret], *, response: bool = False
) -> dict[str, Any]:
    """The request for ``--json``: ``method``, ``url`` and ``headers`` masked, ``body`` (parsed
    JSON when it is JSON, else text, masked); with ``response``, ``status``, ``response`` and
    ``error``."""
    record: dict[str, Any] = {
        "method": request.method,
        "url": mask_url(request.url, secrets),
        "headers": mask_headers(request.headers, secrets),
        "body": _body_value(request.body, secrets),
    }
    if response:
        record["status"] = request.status
        record["response"] = _body_value(request.response_body, secrets)
        record["error"] = None if request.error is None else mask(request.error, list(secrets))
    return record


def _body_value(body: bytes | None, secrets: Sequence[Secret]) -> Any:
    if not body:
        return None
    text = mask(body.decode("utf-8", "replace"), secrets)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def render_request(
    request: CapturedRequest, secrets: Sequence[Secret], *, response: bool = False
) -> str:
    """The request as text: ``METHOD URL``, headers (masked), blank line, body (pretty JSON)."""
    lines = [f"{request.method} {mask_url(request.url, secrets)}"]
    for name, value in mask_headers(request.headers, secrets).items():
        lines.append(f"{name}: {value}")
    lines += ["", _body_text(request.body, secrets)]
    if response:
        if request.error is not None:
            lines += ["", f"--> failed: {mask(request.error, list(secrets))}"]
        else:
            lines += ["", f"--> {request.status}", _body_text(request.response_body, secrets)]
    return "\n".join(lines) + "\n"
