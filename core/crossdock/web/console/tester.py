"""The console's mapping tester: an event through a destination's mapping with the operator's
test overrides, and the exact request(s) its deliverer would send.

The overrides are laid over the destination's running mapping (the type's default with the
configuration's ``[destinations.mapping]`` already applied) with
:func:`crossdock.transform.overrides.merge_spec`, as ``crossdock check`` would lay them over the
default: the same shorthand (``"<section>.<field>"``), ``sections``, ``dispatch`` and ``""`` to
remove a field, and problems named by their path (``overrides.email: ...``). The event goes
through what ``crossdock test`` does (:mod:`crossdock.cli.test`): ingest as its source, route,
transform, then the deliverer with a capturing session, so nothing leaves the machine; or, for
``send``, a real session. The TOML snippet is the destination's ``[destinations.mapping]``
table as the configuration file has it, with the test overrides merged in: pasted in place of
that table, it gives what the tester showed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import orjson

from crossdock.cli.capture import CaptureSession
from crossdock.cli.test import (
    _Decoders,
    _default_source,
    _ingest,
    _item,
    _run_deliverer,
    _TraceRecorder,
    request_record,
)
from crossdock.deliver.session import outbound_session
from crossdock.errors import CrossdockError, IngestError
from crossdock.secrets import mask
from crossdock.transform.overrides import merge_spec
from crossdock.types import CredentialsRejected, Delivered, Rejected, RetryLater
from crossdock.web import keys

__all__ = ["render_toml", "try_event"]

log = logging.getLogger("crossdock.console")

BODY_EXCERPT = 500


async def try_event(
    state: Any, destination_id: str, doc: Mapping[str, Any], *, send: bool
) -> tuple[int, dict[str, Any]]:
    """``(status, body)`` of ``POST /console/api/destinations/{id}/try`` (or ``/send``)."""
    config = state.config
    registry = state.root[keys.REGISTRY]
    try:
        destination = config.destination(destination_id)
    except KeyError:
        return 404, _error("not_found", f"no destination {destination_id!r}")
    event = doc.get("event")
    if not isinstance(event, dict):
        return 400, _error("invalid_body", "event: must be a JSON object")
    overrides = doc.get("overrides", {})
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        return 400, _error("invalid_body", "overrides: must be an object of field: JMESPath")
    secrets = state.secrets()
    problems = _shape_problems(overrides)
    spec = None
    if not problems:
        try:
            spec, problems = merge_spec(
                destination.spec,
                overrides,
                functions=(*destination.shared_functions, *destination.type.functions),
                prefix="overrides",
                renamed=destination.type.renamed,
                settings=destination.settings,
            )
        except Exception as exc:  # a shape merge_spec does not expect: still the operator's
            problems = [f"overrides: {type(exc).__name__}: {exc}"]
    if problems or spec is None:
        message = mask("; ".join(problems), secrets)
        body = _error("invalid_override", message)
        body["problems"] = [mask(p, secrets) for p in problems]
        return 422, body
    tested = attrs.evolve(
        destination,
        mapping=spec.fields,
        tables=spec.tables,
        sections=spec.sections,
        select=spec.select,
    )
    try:
        transform = registry.make_transformer(tested)
    except CrossdockError as exc:
        return 422, _error("invalid_override", mask(f"overrides: {exc}", secrets))
    try:
        ingested = _ingest(event, _default_source(destination, config), _Decoders(registry, config))
    except IngestError as exc:
        return 422, _error("invalid_event", mask(f"event: {exc.message}", secrets))
    except CrossdockError as exc:
        return 422, _error("invalid_event", mask(f"event: {exc}", secrets))
    toml = render_toml(_merged(await _file_overrides(config.path, destination_id), overrides))
    if isinstance(ingested, str):
        return 200, {"dropped": True, "reason": ingested, "toml": toml}
    items = []
    for one in ingested:
        item, problem = _item(one, tested, transform, secrets)
        if item is None:
            if problem.startswith("unsendable"):
                return 422, _error("unsendable", problem)
            if problem.startswith("transform failed"):
                return 422, _error("transform_failed", problem)
            return 200, {"dropped": True, "reason": problem, "toml": toml}
        items.append(item)
    if send:
        return 200, await _send(registry, tested, items, secrets)
    session = CaptureSession()
    try:
        await _run_deliverer(
            registry, tested, session, items, secrets, lambda: len(session.requests)
        )
    except Exception as exc:
        message = mask(f"the deliverer failed: {type(exc).__name__}: {exc}", secrets)
        return 422, _error("deliverer_failed", message)
    payloads = [item.payload for item in items]
    return 200, {
        "dropped": False,
        "payload": payloads[0] if len(payloads) == 1 else payloads,
        "requests": [request_record(r, secrets) for r in session.requests],
        "toml": toml,
    }


async def _send(
    registry: Any, destination: Any, items: list[Any], secrets: list[Any]
) -> dict[str, Any]:
    recorder = _TraceRecorder()
    timeout = aiohttp.ClientTimeout(total=destination.delivery.timeout)
    try:
        async with outbound_session(timeout=timeout, trace_configs=[recorder.config]) as http:
            outcomes, _made = await _run_deliverer(
                registry, destination, http, items, secrets, lambda: len(recorder.requests)
            )
    except Exception as exc:
        reason = mask(f"{type(exc).__name__}: {exc}", secrets)
        return {"status": None, "outcome": "error", "body": reason[:BODY_EXCERPT]}
    outcome = next((o for o in outcomes if not isinstance(o, Delivered)), outcomes[0])
    last = recorder.requests[-1] if recorder.requests else None
    text = ""
    if last is not None and last.response_body:
        text = last.response_body.decode("utf-8", "replace")
    elif last is not None and last.error:
        text = last.error
    log.info(
        "console: an event was sent for real",
        extra={"destination": destination.id, "outcome": _outcome_word(outcome)},
    )
    return {
        "status": last.status if last is not None else None,
        "outcome": _outcome_word(outcome),
        "reason": mask(getattr(outcome, "reason", "") or "", secrets)[:BODY_EXCERPT] or None,
        "body": mask(text, secrets)[:BODY_EXCERPT],
    }


def _outcome_word(outcome: Any) -> str:
    if isinstance(outcome, Delivered):
        return "delivered"
    if isinstance(outcome, RetryLater):
        return "retry"
    if isinstance(outcome, CredentialsRejected):
        return "credentials_rejected"
    if isinstance(outcome, Rejected):
        return "rejected"
    return type(outcome).__name__.lower()


def _error(code: str, message: str) -> dict[str, Any]:
    return {"success": False, "code": code, "message": message}


def _shape_problems(overrides: Mapping[str, Any], prefix: str = "overrides") -> list[str]:
    """Values merge_spec would not read: every leaf must be a string (a JMESPath expression),
    except ``drop`` (a boolean) in a section."""
    problems = []
    for key, value in overrides.items():
        path = f"{prefix}.{key}"
        if key == "sections" and prefix == "overrides":
            if not isinstance(value, dict):
                problems.append(f"{path}: expected an object of sections")
                continue
            for name, section in value.items():
                where = f"{path}.{name}"
                if not isinstance(section, dict):
                    problems.append(f"{where}: expected an object (where, drop, fields)")
                    continue
                for skey, svalue in section.items():
                    if skey == "drop":
                        if not isinstance(svalue, bool):
                            problems.append(f"{where}.drop: expected true or false")
                    elif skey == "where":
                        if not isinstance(svalue, str):
                            problems.append(f"{where}.where: expected a JMESPath string")
                    elif skey == "fields":
                        if not isinstance(svalue, dict):
                            problems.append(f"{where}.fields: expected an object")
                        else:
                            problems += _shape_problems(svalue, f"{where}.fields")
                    else:
                        problems.append(f"{where}.{skey}: unknown key (where, drop, fields)")
        elif key == "dispatch" and prefix == "overrides":
            if not isinstance(value, dict) or any(
                k != "select" or not isinstance(v, str) for k, v in value.items()
            ):
                problems.append(f'{path}: expected {{"select": "<JMESPath>"}}')
        elif isinstance(value, dict):
            problems += _shape_problems(value, path)
        elif not isinstance(value, str):
            problems.append(f"{path}: expected a JMESPath string")
    return problems


async def _file_overrides(path: Path | None, destination_id: str) -> dict[str, Any]:
    """The destination's ``[destinations.mapping]`` table as the configuration file has it."""
    if path is None:
        return {}

    def read() -> dict[str, Any]:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, ValueError):
            return {}
        for table in data.get("destinations", []):
            if isinstance(table, dict) and table.get("id") == destination_id:
                mapping = table.get("mapping")
                return dict(mapping) if isinstance(mapping, dict) else {}
        return {}

    return await asyncio.to_thread(read)


def _merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` laid on ``base``: tables merge key by key, other values replace."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_string(text: str) -> str:
    # JSON strings are TOML basic strings, except that TOML also forbids a raw DEL
    return orjson.dumps(text).decode().replace("\x7f", "\\u007f")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return _toml_string(str(value))


def render_toml(mapping: Mapping[str, Any], header: str = "destinations.mapping") -> str:
    """``mapping`` as TOML under ``[<header>]`` (nested objects become sub-tables)."""
    lines = [f"[{header}]"]
    tables = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{_toml_key(str(key))} = {_toml_value(value)}")
    text = "\n".join(lines) + "\n"
    for key, value in tables:
        text += "\n" + render_toml(value, f"{header}.{_toml_key(str(key))}")
    return text
