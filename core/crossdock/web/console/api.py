"""The console's JSON endpoints under ``/console/api`` (the contract: docs/operator-guide.md,
"Console API").

Every answer goes through :func:`answer`, which masks the configuration's secrets in the whole
serialized body: events, vendor bodies, reasons and headers alike.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from crossdock.deliver.worker import _filter_reason, _source_of
from crossdock.ingest.handler import error_body
from crossdock.queue import DeadLetterEntry
from crossdock.web import keys
from crossdock.web.console import tester
from crossdock.web.console.auth import (
    COOKIE,
    SignInLimiter,
    error,
    json_body,
    request_scheme,
    same_origin,
)
from crossdock.web.console.state import ConsoleState, state_of
from crossdock.web.console.stream import masked_json, record, serve_stream

__all__ = ["routes"]

RECENT_LIMIT = 500
DLQ_PAGE = 1000
MAX_DLQ_LIMIT = 1000
JOURNEY_DLQ_SCAN = 5000
"""Newest dead letters of a destination searched for an event's journey."""
PROBE_WAIT = 15.0
PROBE_TIMEOUT = PROBE_WAIT + 5
MAX_IDS = 100_000


def answer(state: ConsoleState, status: int, body: Any) -> web.Response:
    """A JSON answer with every secret masked."""
    return web.Response(
        status=status, body=masked_json(body, state.secrets()), content_type="application/json"
    )


class BadRequest(Exception):
    """A request the console refuses with ``status`` and an error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


async def read_object(request: web.Request) -> dict[str, Any]:
    """The JSON object in the request body (400 when it is not one)."""
    raw = await request.read()
    try:
        doc = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise BadRequest(400, "invalid_json", "body: not valid JSON") from None
    if not isinstance(doc, dict):
        raise BadRequest(400, "invalid_body", "body: must be a JSON object")
    return doc


@web.middleware
async def bad_requests(request: web.Request, handler: Any) -> web.StreamResponse:
    """Turn :class:`BadRequest` into its error answer."""
    try:
        return await handler(request)
    except BadRequest as exc:
        return error(exc.status, exc.code, exc.message)


# ---------------------------------------------------------------------------------------------
# Session


async def session_create(request: web.Request) -> web.Response:
    """Sign in with the admin token: a signed session cookie and the CSRF token."""
    state = state_of(request)
    signer = state.signer()
    token = state.config.server.admin_token
    if signer is None or token is None:
        return error(403, "console_disabled", "the console is off: set server.admin_token")
    client = request.remote or "unknown"
    now = time.time()
    limiter: SignInLimiter = state.limiter
    wait = limiter.retry_after(client, now)
    if wait:
        message = f"too many failed sign-ins from this address; try again in {wait} s"
        return error(429, "too_many_attempts", message, {"Retry-After": str(wait)})
    if not same_origin(request, _public_url(state)):
        return error(403, "csrf", "sign-in from a foreign Origin")
    if not json_body(request):
        return error(415, "unsupported_media_type", "body: must be application/json")
    doc = await read_object(request)
    given = doc.get("token")
    if not isinstance(given, str) or not given:
        raise BadRequest(400, "invalid_body", "token: must be a non-empty string")
    if not hmac.compare_digest(given.encode(), token.reveal().encode()):
        limiter.failed(client, now)
        return error(401, "unauthorized", "wrong admin token")
    value = signer.issue(now)
    response = answer(
        state, 200, {"csrf": signer.csrf(value), "expires_at": signer.expires_at(value)}
    )
    response.set_cookie(
        COOKIE,
        value,
        path="/console",
        httponly=True,
        samesite="Strict",
        secure=request_scheme(request) == "https",
    )
    return response


async def session_get(request: web.Request) -> web.Response:
    """The CSRF token and expiry of a valid session cookie (a reloaded page regains them)."""
    state = state_of(request)
    signer = state.signer()
    if signer is None:
        return error(403, "console_disabled", "the console is off: set server.admin_token")
    value = request.cookies.get(COOKIE)
    if value is None or not signer.valid(value, time.time()):
        return error(401, "unauthorized", "not signed in")
    return answer(state, 200, {"csrf": signer.csrf(value), "expires_at": signer.expires_at(value)})


async def session_delete(request: web.Request) -> web.Response:
    """Sign out: the cookie is cleared."""
    response = web.Response(status=204)
    response.del_cookie(COOKIE, path="/console")
    return response


def _public_url(state: ConsoleState) -> str | None:
    url = state.config.server.public_url
    return str(url) if url else None


# ---------------------------------------------------------------------------------------------
# Live events


def _limit(request: web.Request, name: str, default: int, cap: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(400, "invalid_query", f"{name}: must be an integer") from None
    if value < 0:
        raise BadRequest(400, "invalid_query", f"{name}: must not be negative")
    return min(value, cap)


def local_recent(state: ConsoleState, limit: int, source: str | None) -> list[dict[str, Any]]:
    """The last accepted events this process remembers, newest first."""
    return [record(row) for row in state.hub.recent(limit, source)]


async def events_recent(request: web.Request) -> web.Response:
    """The last accepted events, newest first (of every ``--workers`` process that answers)."""
    state = state_of(request)
    limit = _limit(request, "limit", 200, RECENT_LIMIT)
    source = request.query.get("source") or None
    rows = local_recent(state, limit, source)
    peers = state.peers
    if peers is None:
        return answer(state, 200, {"events": rows})
    params = {"limit": str(limit), **({"source": source} if source else {})}
    answers, _ = await peers.ask("GET", "/peer/recent", params=params)
    for doc in answers.values():
        rows.extend(doc["events"])
    rows.sort(key=lambda row: row["received_at"], reverse=True)
    return answer(state, 200, {"events": rows[:limit], **peers.coverage(list(answers))})


async def events_stream(request: web.Request) -> web.StreamResponse:
    """Accepted events as server-sent events (``event: accepted``)."""
    state = state_of(request)
    source = request.query.get("source") or None
    tail = state.root[keys.TAIL]
    return await serve_stream(request, state.hub, source, state.secrets, tail, state.peers)


# ---------------------------------------------------------------------------------------------
# Journeys


_RANK = {"unknown": 0, "queued": 1, "retrying": 2}
"""How much a journey row says (anything else is a final state: 3)."""


def better_row(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The more informative of two processes' rows for one destination: a known state beats
    ``unknown``, a later or final state beats ``queued``; between equals the later one."""
    rank_a, rank_b = _RANK.get(a["state"], 3), _RANK.get(b["state"], 3)
    if rank_a != rank_b:
        return a if rank_a > rank_b else b
    return b if (b.get("at") or 0) > (a.get("at") or 0) else a


async def journey(request: web.Request) -> web.Response:
    """What happened to one event at each destination (see the module docstring of
    :mod:`crossdock.deliver.journal` for what is remembered); with ``--workers``, the most
    informative row of every process that answers."""
    state = state_of(request)
    message_id = request.match_info["message_id"]
    event, rows = await local_journey(state, message_id)
    peers = state.peers
    if peers is None:
        return answer(state, 200, {"messageId": message_id, "event": event, "destinations": rows})
    answers, _ = await peers.ask("GET", f"/peer/journey/{quote(message_id, safe='')}")
    accepted = state.hub.find(message_id) is not None
    for doc in answers.values():
        if event is None:
            event = doc["event"]
        accepted = accepted or doc.get("accepted", False)
        theirs = {row["destination"]: row for row in doc["destinations"]}
        rows = [better_row(row, theirs.get(row["destination"], row)) for row in rows]
    if accepted and event is not None:
        # accepted lately by some process and settled by none yet (SQLite: the accepting
        # process does not deliver, the delivering one never saw the event): as one process
        # would say when it both accepted and delivers it
        for row in rows:
            worker = state.workers.get(row["destination"])
            if row["state"] == "unknown" and worker is not None:
                row.update(_predict(worker, event))
    body = {"messageId": message_id, "event": event, "destinations": rows}
    return answer(state, 200, {**body, **peers.coverage(list(answers))})


async def local_journey(
    state: ConsoleState, message_id: str
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The event (if this process remembers it) and this process's row per destination."""
    found = state.hub.find(message_id)
    event = found[2] if found is not None else None
    queue = state.root[keys.QUEUE]
    rows = []
    for destination_id, worker in state.workers.items():
        row: dict[str, Any] = {"destination": destination_id, "plugin": worker.destination.plugin}
        outcome = worker.journal.get(message_id)
        delivering = bool(worker.status().get("running"))
        entry: DeadLetterEntry | None = None
        dead = outcome is not None and outcome["state"] == "dead_lettered"
        if dead or (outcome is None and (event is None or not delivering)):
            entry = await _find_dead(queue, destination_id, message_id)
        if entry is not None and event is None:
            event = entry.event
        if outcome is not None:
            row.update(outcome)
            if row["state"] == "filtered" and row.get("reason") is None:
                row["reason"] = _why_filtered(worker, event)
            if row["state"] == "dead_lettered":
                row["dlq_id"] = entry.id if entry is not None else None
        elif entry is not None:
            row.update(_dead_row(entry))
        elif event is not None and delivering:
            row.update(_predict(worker, event))
        else:
            row["state"] = "unknown"
        rows.append(row)
    return event, rows


def _dead_row(entry: DeadLetterEntry) -> dict[str, Any]:
    body = entry.body
    if body is not None and len(body) > 500:
        body = body[:500] + "…"
    return {"state": "dead_lettered", "at": entry.failed_at, "reason": entry.reason,
            "status": entry.status, "body": body, "attempts": entry.attempts,
            "dlq_id": entry.id}  # fmt: skip


def _why_filtered(worker: Any, event: dict[str, Any] | None) -> str:
    if event is None:
        return "where"
    sources = worker.destination.sources
    if sources is not None and _source_of(event) not in sources:
        return "sources"
    return _filter_reason(event, getattr(worker.transformer, "drop_reason", None))


def _predict(worker: Any, event: dict[str, Any]) -> dict[str, Any]:
    """The state of an event this process accepted and the worker has not settled yet: what
    the worker will do with it when it is routed away or mapped to nothing, else queued."""
    sources = worker.destination.sources
    if sources is not None and _source_of(event) not in sources:
        return {"state": "filtered", "reason": "sources"}
    try:
        payload = worker.transform(event)
    except Exception:
        return {"state": "queued"}  # dead-lettered when the worker gets to it
    if payload is not None:
        return {"state": "queued"}
    matches = getattr(worker.transformer, "matches", None)
    if matches is not None and not matches(event):
        return {"state": "filtered", "reason": _why_filtered(worker, event)}
    return {"state": "dropped", "reason": worker.drop_reason(event)}


async def _find_dead(queue: Any, destination_id: str, message_id: str) -> DeadLetterEntry | None:
    """The newest dead letter of ``message_id`` among the destination's last
    :data:`JOURNEY_DLQ_SCAN` entries."""
    stats = await queue.stats(destination_id)
    end = stats.dead
    start = max(0, end - JOURNEY_DLQ_SCAN)
    found = None
    offset = start
    while offset < end:
        page = await queue.dlq_list(destination_id, limit=DLQ_PAGE, offset=offset)
        if not page:
            break
        for entry in page:
            if entry.event.get("messageId") == message_id:
                found = entry
        offset += len(page)
    return found


# ---------------------------------------------------------------------------------------------
# Destinations


def _worker(state: ConsoleState, request: web.Request) -> Any:
    destination_id = request.match_info["id"]
    worker = state.workers.get(destination_id)
    if worker is None:
        raise BadRequest(404, "not_found", f"no destination {destination_id!r}")
    return worker


async def _card(state: ConsoleState, worker: Any) -> dict[str, Any]:
    status = dict(worker.status())
    stats = await state.root[keys.QUEUE].stats(status["id"])
    now = time.time()
    if not status.get("running"):
        kind = "stopped"
    elif status.get("paused"):
        kind = "paused"
    else:
        kind = "running"
    status.update(
        state=kind,
        credentials_rejected=bool(status.get("credentials_rejected")),
        pending=stats.pending,
        retrying=stats.retrying,
        dead_letters=stats.dead,
        lag_seconds=round(max(0.0, now - stats.oldest_at), 3) if stats.oldest_at else 0.0,
        throughput=worker.journal.throughput(now),
        last_errors=worker.journal.errors(),
    )
    return status


async def local_cards(state: ConsoleState) -> list[dict[str, Any]]:
    """This process's card of every destination."""
    return [await _card(state, worker) for worker in state.workers.values()]


_SHARED = frozenset({"pending", "retrying", "dead_letters", "lag_seconds"})
"""Card numbers read from the queue every process shares (never summed)."""


def merge_cards(cards: list[dict[str, Any]]) -> dict[str, Any]:
    """One destination's card from several processes' cards: those of the processes that
    deliver it (SQLite: process 0; NATS: every process) with their counts and throughput
    summed, last errors merged newest first, paused if any is paused (``paused_by_operator``
    only if every one is)."""
    delivering = [c for c in cards if c["state"] != "stopped"] or cards[:1]
    if len(delivering) == 1:
        return delivering[0]
    merged = dict(delivering[0])
    for key, value in merged.items():
        if key in _SHARED or isinstance(value, bool) or not isinstance(value, int):
            continue
        merged[key] = sum(int(c.get(key) or 0) for c in delivering)
    buckets: dict[int, dict[str, int]] = {}
    for card in delivering:
        for bucket in card.get("throughput") or []:
            into = buckets.setdefault(bucket["t"], {"t": bucket["t"], "delivered": 0, "failed": 0})
            into["delivered"] += bucket["delivered"]
            into["failed"] += bucket["failed"]
    merged["throughput"] = [buckets[t] for t in sorted(buckets)][-len(merged["throughput"]) :]
    errors = [e for c in delivering for e in c.get("last_errors") or []]
    errors.sort(key=lambda e: e.get("at") or 0, reverse=True)
    merged["last_errors"] = errors[:5]
    for flag in ("paused", "credentials_rejected", "down"):
        merged[flag] = any(c.get(flag) for c in delivering)
    # the operator's pause holds only where every delivering process has it (a process
    # restarted since does not): the page then shows "paused" and pausing again mends it
    merged["paused_by_operator"] = all(c.get("paused_by_operator") for c in delivering)
    paused = [c for c in delivering if c.get("paused")]
    if paused:
        merged["state"] = "paused"
        merged["pause_reason"] = paused[0].get("pause_reason")
    downs = [c for c in delivering if c.get("down")]
    if downs:
        merged["down_reason"] = downs[0].get("down_reason")
    merged["last_success_at"] = max((c.get("last_success_at") or 0) for c in delivering) or None
    return merged


async def _all_cards(state: ConsoleState, only: str | None = None) -> dict[str, Any]:
    """``{"destinations": [card...]}`` of every process that answers, merged per destination
    (``only``: that destination's card only)."""
    cards = await local_cards(state)
    if only is not None:
        cards = [c for c in cards if c["id"] == only]
    peers = state.peers
    if peers is None:
        return {"destinations": cards}
    answers, _ = await peers.ask("GET", "/peer/cards")
    theirs: dict[str, list[dict[str, Any]]] = {}
    for index in sorted(answers):
        for card in answers[index]["destinations"]:
            theirs.setdefault(card["id"], []).append(card)
    merged = [merge_cards([card, *theirs.get(card["id"], [])]) for card in cards]
    return {"destinations": merged, **peers.coverage(list(answers))}


async def destinations(request: web.Request) -> web.Response:
    """One card per destination (with ``--workers``, the delivering processes' cards)."""
    state = state_of(request)
    return answer(state, 200, await _all_cards(state))


async def local_action(state: ConsoleState, destination_id: str, action: str) -> dict[str, Any]:
    """``pause``, ``resume`` or ``probe`` a destination in this process: the card, or the
    probe's result."""
    worker = state.workers.get(destination_id)
    if worker is None:
        raise BadRequest(404, "not_found", f"no destination {destination_id!r}")
    if action == "pause":
        worker.pause_by_operator()
    elif action == "resume":
        worker.resume_by_operator()
    else:
        return await _probe(state, worker)
    return await _card(state, worker)


async def _everywhere(request: web.Request, action: str) -> web.Response:
    state = state_of(request)
    destination_id = request.match_info["id"]
    _worker(state, request)
    await read_object(request)
    peers = state.peers
    if peers is None:
        return answer(state, 200, await local_action(state, destination_id, action))
    path = f"/peer/destinations/{quote(destination_id, safe='')}/{action}"
    timeout = PROBE_TIMEOUT + 5 if action == "probe" else 5.0
    mine, (answers, _) = await asyncio.gather(
        local_action(state, destination_id, action),
        peers.ask("POST", path, body={}, timeout=timeout),
    )
    coverage = peers.coverage(list(answers))
    if action != "probe":
        card = merge_cards([mine, *(answers[i] for i in sorted(answers))])
        return answer(state, 200, {**card, **coverage})
    # the answers of the processes that deliver this destination (they sent a probe, or had
    # nothing to probe)
    results = [r for r in [mine, *answers.values()] if r.get("delivers", True)] or [mine]
    failed = [r for r in results if not r["ok"]]
    result = failed[0] if failed else results[0]
    return answer(state, 200, {**_without_delivers(result), **coverage})


def _without_delivers(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "delivers"}


async def pause(request: web.Request) -> web.Response:
    """Pause a destination (the operator's pause: fetching stops until resumed); with
    ``--workers``, in every process."""
    return await _everywhere(request, "pause")


async def resume(request: web.Request) -> web.Response:
    """Undo the operator's pause (in every process)."""
    return await _everywhere(request, "resume")


async def probe(request: web.Request) -> web.Response:
    """Probe a destination now: the next probe batch of a destination paused for rejected
    credentials or down is sent at once (deliverers have no probe request of their own); with
    ``--workers``, in every process that delivers it."""
    state = state_of(request)
    if state.peers is not None:
        return await _everywhere(request, "probe")
    _worker(state, request)
    await read_object(request)
    result = await local_action(state, request.match_info["id"], "probe")
    return answer(state, 200, _without_delivers(result))


async def _probe(state: ConsoleState, worker: Any) -> dict[str, Any]:
    before = worker.status()
    if not before.get("running"):
        message = "this process does not deliver this destination: nothing to probe"
        return {"ok": False, "status": None, "message": message, "delivers": False}
    probes = worker.probes
    if not worker.probe_now():
        ok = not before.get("credentials_rejected")
        message = "nothing to probe: the destination is neither paused for credentials nor down"
        return {"ok": ok, "status": None, "message": message}
    deadline = time.monotonic() + PROBE_WAIT
    # the worker counts its probes; polling that counter for 15 s at most is enough here
    while worker.probes == probes and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    after = worker.status()
    errors = worker.journal.errors()
    status = errors[0]["status"] if errors else None
    if worker.probes == probes:
        message = "the probe did not finish in time; the destination keeps probing"
        return {"ok": False, "status": status, "message": message}
    if after.get("credentials_rejected") or after.get("down"):
        reason = after.get("pause_reason") or after.get("down_reason") or "refused"
        return {"ok": False, "status": status, "message": f"probe: {reason}"}
    return {"ok": True, "status": None, "message": "probe answered: resumed"}


# ---------------------------------------------------------------------------------------------
# Dead letters


def _matcher(reason: str | None, q: str | None) -> Callable[[DeadLetterEntry], bool]:
    reason_l = reason.lower() if reason else None
    q_l = q.lower() if q else None

    def matches(entry: DeadLetterEntry) -> bool:
        if reason_l is not None and reason_l not in entry.reason.lower():
            return False
        if q_l is not None:
            event = entry.event
            for key in ("messageId", "userId", "anonymousId", "event"):
                value = event.get(key)
                if isinstance(value, str) and q_l in value.lower():
                    return True
            return False
        return True

    return matches


async def _scan(queue: Any, destination: str | None) -> AsyncIterator[DeadLetterEntry]:
    offset = 0
    while True:
        page = await queue.dlq_list(destination, limit=DLQ_PAGE, offset=offset)
        for entry in page:
            yield entry
        if len(page) < DLQ_PAGE:
            return
        offset += len(page)


def _entry_row(entry: DeadLetterEntry) -> dict[str, Any]:
    event = entry.event
    return {
        "id": entry.id, "destination": entry.destination, "reason": entry.reason,
        "status": entry.status, "body": entry.body, "attempts": entry.attempts,
        "failed_at": entry.failed_at, "messageId": event.get("messageId"),
        "type": event.get("type"), "event": event,
    }  # fmt: skip


def _text_query(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    return value if value else None


async def dlq_list(request: web.Request) -> web.Response:
    """Dead letters, oldest first, filtered by destination, reason and ``q``; ``total`` counts
    every entry matching the filter."""
    state = state_of(request)
    queue = state.root[keys.QUEUE]
    limit = _limit(request, "limit", 100, MAX_DLQ_LIMIT)
    offset = _limit(request, "offset", 0, 2**62)
    destination = _text_query(request, "destination")
    reason = _text_query(request, "reason")
    q = _text_query(request, "q")
    if reason is None and q is None and destination is not None:
        entries = await queue.dlq_list(destination, limit=limit, offset=offset)
        total = (await queue.stats(destination)).dead
        return answer(state, 200, {"entries": [_entry_row(e) for e in entries], "total": total})
    matches = _matcher(reason, q)
    rows = []
    total = 0
    async for entry in _scan(queue, destination):
        if matches(entry):
            if offset <= total < offset + limit:
                rows.append(_entry_row(entry))
            total += 1
    return answer(state, 200, {"entries": rows, "total": total})


async def _selection(state: ConsoleState, doc: dict[str, Any]) -> tuple[str, list[int], list[str]]:
    """The destination and dead-letter ids a replay or purge body selects (``ids``, or every
    entry matching ``filter``), with the events' messageIds."""
    destination = doc.get("destination")
    if not isinstance(destination, str) or not destination:
        raise BadRequest(400, "invalid_body", "destination: must be a non-empty string")
    ids = doc.get("ids")
    filt = doc.get("filter")
    if (ids is None) == (filt is None):
        raise BadRequest(400, "invalid_body", "give ids or filter (one of them)")
    wanted: set[int] | None = None
    matches: Callable[[DeadLetterEntry], bool]
    if ids is not None:
        if not isinstance(ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids
        ):
            raise BadRequest(400, "invalid_body", "ids: must be a list of integers")
        if len(ids) > MAX_IDS:
            raise BadRequest(400, "invalid_body", f"ids: at most {MAX_IDS}")
        wanted = set(ids)
        matches = _matcher(None, None)
    else:
        if not isinstance(filt, dict):
            raise BadRequest(400, "invalid_body", "filter: must be an object")
        for key in filt:
            if key not in ("reason", "q"):
                raise BadRequest(400, "invalid_body", f"filter.{key}: unknown key")
        for key in ("reason", "q"):
            if filt.get(key) is not None and not isinstance(filt[key], str):
                raise BadRequest(400, "invalid_body", f"filter.{key}: must be a string")
        matches = _matcher(filt.get("reason") or None, filt.get("q") or None)
    queue = state.root[keys.QUEUE]
    selected: list[int] = []
    message_ids: list[str] = []
    async for entry in _scan(queue, destination):
        if (wanted is None or entry.id in wanted) and matches(entry):
            selected.append(entry.id)
            message_id = entry.event.get("messageId")
            if isinstance(message_id, str):
                message_ids.append(message_id)
    return destination, selected, message_ids


async def dlq_replay(request: web.Request) -> web.Response:
    """Queue the selected dead letters again, as a background job."""
    state = state_of(request)
    destination, ids, message_ids = await _selection(state, await read_object(request))
    queue = state.root[keys.QUEUE]
    worker = state.workers.get(destination)
    if destination not in {d.id for d in state.config.destinations}:
        # dead letters of a destination removed from the configuration can only be purged
        raise BadRequest(404, "not_found", f"no destination {destination!r} to replay to")

    async def step(chunk: Any) -> None:
        await queue.dlq_replay(destination, list(chunk))

    if worker is not None:
        # replayed events are queued again: their journey starts over
        worker.journal.forget(message_ids)
    if state.peers is not None and message_ids:
        body = {"destination": destination, "messageIds": message_ids}
        await state.peers.ask("POST", "/peer/forget", body=body)
    job = state.jobs.start("replay", ids, step)
    return answer(state, 202, {"job": job.id, "total": job.total})


async def dlq_purge(request: web.Request) -> web.Response:
    """Delete the selected dead letters for good, as a background job."""
    state = state_of(request)
    destination, ids, _ = await _selection(state, await read_object(request))
    queue = state.root[keys.QUEUE]

    async def step(chunk: Any) -> None:
        await queue.dlq_purge(destination, list(chunk))

    job = state.jobs.start("purge", ids, step)
    return answer(state, 202, {"job": job.id, "total": job.total})


async def job(request: web.Request) -> web.Response:
    """A replay or purge job's progress."""
    state = state_of(request)
    job_id = request.match_info["job"]
    found = state.jobs.get(job_id)
    peers = state.peers
    if found is not None:
        here = {"process": peers.index} if peers is not None else {}
        return answer(state, 200, {**found.as_dict(), **here})
    if peers is not None:
        # the id names the process running it ("1-ab12..."); whichever has it answers
        answers, _ = await peers.ask("GET", f"/peer/jobs/{quote(job_id, safe='')}")
        for doc in answers.values():
            return answer(state, 200, {**doc, "process": peers.index})
    raise BadRequest(404, "not_found", "no such job (jobs are kept 10 minutes)")


# ---------------------------------------------------------------------------------------------
# Mapping tester


async def try_mapping(request: web.Request) -> web.Response:
    """The request(s) a destination would send for an event, with optional overrides."""
    state = state_of(request)
    destination_id = request.match_info["id"]
    doc = await read_object(request)
    status, body = await tester.try_event(state, destination_id, doc, send=False)
    return answer(state, status, body)


async def send(request: web.Request) -> web.Response:
    """Send one event to the vendor for real (not through the queue); needs ``confirm``."""
    state = state_of(request)
    destination_id = request.match_info["id"]
    doc = await read_object(request)
    if doc.get("confirm") is not True:
        raise BadRequest(400, "confirm_required", "confirm: must be true to send for real")
    status, body = await tester.try_event(state, destination_id, doc, send=True)
    return answer(state, status, body)


async def not_found(request: web.Request) -> web.Response:
    """Unknown console API path."""
    return web.json_response(error_body("not_found", "no such console API path"), status=404)


def routes() -> list[web.RouteDef]:
    """The console API routes (relative to the ``/console`` sub-application)."""
    return [
        web.post("/api/session", session_create),
        web.get("/api/session", session_get),
        web.delete("/api/session", session_delete),
        web.get("/api/events/recent", events_recent),
        web.get("/api/events/stream", events_stream),
        web.get("/api/events/{message_id}/journey", journey),
        web.get("/api/destinations", destinations),
        web.post("/api/destinations/{id}/pause", pause),
        web.post("/api/destinations/{id}/resume", resume),
        web.post("/api/destinations/{id}/probe", probe),
        web.post("/api/destinations/{id}/try", try_mapping),
        web.post("/api/destinations/{id}/send", send),
        web.get("/api/dlq", dlq_list),
        web.post("/api/dlq/replay", dlq_replay),
        web.post("/api/dlq/purge", dlq_purge),
        web.get("/api/jobs/{job}", job),
    ]
