"""``crossdock test DEST --event FILE [--send]``: the exact request(s) a destination would send.

Without ``--send`` the destination's deliverer gets a :class:`~crossdock.cli.capture.CaptureSession`
(nothing leaves the machine); with ``--send`` a real session whose ``TraceConfig`` records the
same, plus the vendor's response. Headers and bodies are printed with secrets masked.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import orjson

from crossdock.cli.capture import CapturedRequest, CaptureSession
from crossdock.cli.common import EXIT_OK, EXIT_PROBLEMS, load
from crossdock.errors import CrossdockError, IngestError
from crossdock.secrets import Secret, mask
from crossdock.types import BatchItem, Delivered, Ingested

__all__ = ["cmd_test", "mask_headers", "render_request"]

_MASK = "***"
_AUTH_HEADERS = ("authorization", "proxy-authorization")


def cmd_test(args: argparse.Namespace) -> int:
    """Transform the event(s) for ``DEST`` and show (or, with ``--send``, make) the requests."""
    loaded = load(args.config)
    if loaded is None:
        return EXIT_PROBLEMS
    config, registry = loaded
    try:
        destination = config.destination(args.destination)
    except KeyError:
        listing = ", ".join(d.id for d in config.destinations) or "none configured"
        print(f'unknown destination "{args.destination}" (known: {listing})', file=sys.stderr)
        return EXIT_PROBLEMS
    secrets = config.secrets()
    try:
        events = _read_events(args.event, destination, config)
        transform = registry.make_transformer(destination)
    except (CrossdockError, OSError, ValueError) as exc:
        print(f"crossdock test: {mask(str(exc), secrets)}", file=sys.stderr)
        return EXIT_PROBLEMS
    items: list[BatchItem] = []
    for i, event in enumerate(events):
        payload = transform(event)
        if payload is None:
            print(f"event {i}: dropped (the where condition or the mapping filtered it out)")
            continue
        items.append(BatchItem(event=event, payload=payload, data=orjson.dumps(payload)))
    if not items:
        return EXIT_OK
    try:
        return asyncio.run(_deliver(registry, destination, items, secrets, send=args.send))
    except CrossdockError as exc:
        print(f"crossdock test: {mask(str(exc), secrets)}", file=sys.stderr)
        return EXIT_PROBLEMS


def _read_events(name: str, destination: Any, config: Any) -> list[dict[str, Any]]:
    raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = [orjson.loads(line) for line in raw.splitlines() if line.strip()]
    messages = data if isinstance(data, list) else [data]
    if not all(isinstance(m, dict) for m in messages):
        msg = f"{name}: expected a JSON object, a list of them, or NDJSON"
        raise ValueError(msg)
    source_id = (destination.sources or [s.id for s in config.sources] or ["crossdock-test"])[0]
    from crossdock.ingest.normalize import normalize

    try:
        normalized = normalize(
            Ingested(events=messages), source_id=source_id, received_at=time.time()
        )
    except IngestError as exc:
        msg = f"{name}: invalid event: {exc.message}"
        raise ValueError(msg) from None
    return normalized.events


async def _deliver(
    registry: Any, destination: Any, items: list[BatchItem], secrets: list[Secret], *, send: bool
) -> int:
    captured: list[CapturedRequest]
    if send:
        recorder = _TraceRecorder()
        timeout = aiohttp.ClientTimeout(total=destination.delivery.timeout)
        async with aiohttp.ClientSession(timeout=timeout, trace_configs=[recorder.config]) as http:
            outcomes = await _run_deliverer(registry, destination, http, items)
        captured = recorder.requests
    else:
        session = CaptureSession()
        outcomes = await _run_deliverer(registry, destination, session, items)
        captured = session.requests
    if not captured:
        print("no request was made")
    for request in captured:
        print(render_request(request, secrets, response=send))
    ok = True
    for i, outcome in enumerate(outcomes):
        name = type(outcome).__name__
        reason = getattr(outcome, "reason", "")
        text = f"event {i}: {name}" + (f": {mask(reason, secrets)}" if reason else "")
        print(text)
        ok = ok and isinstance(outcome, Delivered)
    if not send:
        print("(dry run: nothing was sent; add --send to deliver)")
    return EXIT_OK if ok or not send else EXIT_PROBLEMS


async def _run_deliverer(
    registry: Any, destination: Any, http: Any, items: list[BatchItem]
) -> Sequence[Any]:
    deliverer = registry.make_deliverer(destination, http)
    try:
        return await deliverer.deliver(items)
    finally:
        await deliverer.close()


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


def _variants(secrets: Sequence[Secret]) -> list[str]:
    """Each secret's value and the base64 forms a header may carry (``user:pass`` included)."""
    out: list[str] = []
    for secret in secrets:
        value = secret.reveal()
        if len(value) < 4:
            continue
        out.append(value)
        for raw in (value, value + ":", ":" + value):
            out.append(base64.b64encode(raw.encode()).decode().rstrip("="))
    return out


def mask_headers(headers: Mapping[str, str], secrets: Sequence[Secret]) -> dict[str, str]:
    """Headers with ``Authorization`` values and anything holding a secret replaced by ``***``."""
    variants = _variants(secrets)
    masked: dict[str, str] = {}
    for name, value in headers.items():
        if name.lower() in _AUTH_HEADERS:
            scheme, _, rest = value.partition(" ")
            masked[name] = f"{scheme} {_MASK}" if rest else _MASK
        elif any(v in value for v in variants):
            masked[name] = _MASK
        else:
            masked[name] = value
    return masked


def _mask_text(text: str, secrets: Sequence[Secret]) -> str:
    for variant in sorted(_variants(secrets), key=len, reverse=True):
        text = text.replace(variant, _MASK)
    return text


def _body_text(body: bytes | None, secrets: Sequence[Secret]) -> str:
    if not body:
        return "(no body)"
    try:
        text = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace")
    return _mask_text(text, secrets)


def render_request(
    request: CapturedRequest, secrets: Sequence[Secret], *, response: bool = False
) -> str:
    """The request as text: ``METHOD URL``, headers (masked), blank line, body (pretty JSON)."""
    lines = [f"{request.method} {_mask_text(request.url, secrets)}"]
    for name, value in mask_headers(request.headers, secrets).items():
        lines.append(f"{name}: {value}")
    lines += ["", _body_text(request.body, secrets)]
    if response:
        if request.error is not None:
            lines += ["", f"--> failed: {mask(request.error, list(secrets))}"]
        else:
            lines += ["", f"--> {request.status}", _body_text(request.response_body, secrets)]
    return "\n".join(lines) + "\n"
