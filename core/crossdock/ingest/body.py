"""Reading a request body within a size limit (gzip included) and parsing it as JSON.

Public through :mod:`crossdock` (``crossdock.read_body``, ``crossdock.parse_json``): every
source needs them, and both answer with an :class:`~crossdock.IngestError` whose message names
what was wrong (never the body itself).
"""

from __future__ import annotations

import zlib
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from crossdock.errors import IngestError
from crossdock.ingest.limits import check_integers, check_top_level_events

__all__ = ["gunzip", "parse_json", "read_body", "too_large"]

_GZIP_MAGIC: Final = b"\x1f\x8b"
_MB: Final = 1024 * 1024
_FRAMING: Final = 1024
"""Bytes gzip or deflate may add to incompressible data (headers, block overhead)."""


def _size(limit: int) -> str:
    if limit >= _MB and limit % _MB == 0:
        return f"{limit // _MB} MB"
    return f"{limit // 1024} KB"


def too_large(what: str, limit: int, *, status: int = 400, code: str = "too_large") -> IngestError:
    """The answer for a body or event over ``limit`` bytes: ``<what>: larger than 32 KB``.

    400 ``too_large`` by default (what Segment answers; its clients retry a 413); a source whose
    sender expects another answer passes ``status`` and ``code`` (Hull's toolkit: 413
    ``entity_too_large``).
    """
    return IngestError(status, f"{what}: larger than {_size(limit)}", code=code)


async def read_body(
    request: web.Request,
    limit: int,
    what: str = "body",
    *,
    status: int = 400,
    code: str = "too_large",
) -> bytes:
    """Read the request body, decompressed, refusing more than ``limit`` bytes.

    Over the limit: :func:`too_large` with ``status`` and ``code``. A ``Content-Length`` over the
    limit is refused before reading. A ``gzip`` or ``deflate`` body is inflated here with the
    same cap, so nothing beyond ``limit + 1`` bytes is ever held (no zip bombs); the daemon
    turns aiohttp's own decoding off (it would go on inflating a refused body while discarding
    it). Another ``Content-Encoding``, or a body that does not inflate, is a 400
    ``invalid_encoding``.
    """
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    encoded = encoding not in ("", "identity")
    if encoded and encoding not in ("gzip", "x-gzip", "deflate"):
        msg = f"{what}: unsupported Content-Encoding {encoding[:20]!r} (use gzip)"
        raise IngestError(400, msg, code="invalid_encoding")
    length = request.content_length
    # compressed data is never larger than what it inflates to, beyond its framing
    if length is not None and length > limit + (_FRAMING if encoded else 0):
        raise too_large(what, limit, status=status, code=code)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise too_large(what, limit, status=status, code=code)
            chunks.append(chunk)
    except (web.RequestPayloadError, HttpProcessingError):
        msg = f"{what}: cannot decode Content-Encoding"
        raise IngestError(400, msg, code="invalid_encoding") from None
    data = b"".join(chunks)
    if encoded and (data[:2] == _GZIP_MAGIC or encoding == "deflate"):
        try:
            data = gunzip(data, limit, what, deflate=data[:2] != _GZIP_MAGIC)
        except IngestError as exc:
            if exc.code == "too_large":
                raise too_large(what, limit, status=status, code=code) from None
            raise
    return data


def gunzip(data: bytes, limit: int, what: str = "body", *, deflate: bool = False) -> bytes:
    """Inflate a gzip body (or, with ``deflate``, a zlib stream as HTTP's ``deflate`` sends it);
    400 for output over ``limit`` bytes or a broken stream."""
    inflater = zlib.decompressobj(zlib.MAX_WBITS if deflate else 16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error:
        msg = f"{what}: invalid gzip data"
        raise IngestError(400, msg, code="invalid_encoding") from None
    if len(out) > limit:
        raise too_large(what, limit)
    if not inflater.eof:
        msg = f"{what}: truncated gzip data"
        raise IngestError(400, msg, code="invalid_encoding")
    return out


def parse_json(data: bytes, what: str = "body", *, defer_integers: bool = False) -> Any:
    """Parse JSON (orjson); a 400 ``invalid_json`` naming ``what``, the reason and the byte.

    Within a request, the ingest limits (:mod:`crossdock.ingest.limits`) apply too: a top-level
    array of more than ``max_events`` items is a 413 ``too_many_events``, an integer outside
    64 bits a 400 ``integer_out_of_range`` naming its path. With ``defer_integers`` that last
    check is left to the core: the ingestor must then return ``data`` as
    :attr:`crossdock.Ingested.unchecked_json` (the events must be the parsed values, not
    rendered from them: the core finds a lost integer as the float orjson made of it).
    """
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        msg = f"{what}: invalid JSON ({exc.msg} at byte {exc.pos})"
        raise IngestError(400, msg, code="invalid_json") from None
    check_top_level_events(parsed)
    if not defer_integers:
        check_integers(data, what)
    return parsed
