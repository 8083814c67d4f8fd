"""A stand-in for :class:`aiohttp.ClientSession` that records requests instead of sending them.

``crossdock test DEST --event FILE`` (without ``--send``) hands a :class:`CaptureSession` to the
destination's deliverer: every request is recorded (method, URL, headers including
``auth=BasicAuth``, body from ``data=``/``json=``) and answered with a fake 200 response.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

import orjson
from aiohttp import BasicAuth
from attrs import define, field
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

__all__ = ["CaptureSession", "CapturedRequest", "FakeResponse"]


@define
class CapturedRequest:
    """One request a deliverer made: method, full URL, headers and body bytes."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    status: int | None = None
    response_body: bytes | None = None
    error: str | None = None


@define
class FakeResponse:
    """Enough of :class:`aiohttp.ClientResponse` for deliverers: status, headers, body readers."""

    status: int = 200
    body: bytes = b'{"success": true}'
    headers: CIMultiDictProxy[str] = field(
        factory=lambda: CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"}))
    )
    url: URL = field(factory=lambda: URL("http://capture.invalid/"))
    method: str = "POST"
    reason: str = "OK"
    closed: bool = False

    @property
    def ok(self) -> bool:
        """True for a status below 400."""
        return self.status < 400

    @property
    def content_type(self) -> str:
        """The media type of the body."""
        return self.headers.get("Content-Type", "application/octet-stream").split(";")[0]

    async def read(self) -> bytes:
        """The body bytes."""
        return self.body

    async def text(self, encoding: str | None = None, errors: str = "strict") -> str:
        """The body as text."""
        return self.body.decode(encoding or "utf-8", errors)

    async def json(self, *, loads: Any = orjson.loads, content_type: Any = None) -> Any:
        """The body parsed as JSON."""
        return loads(self.body)

    def release(self) -> None:
        """Nothing to release."""
        self.closed = True

    def close(self) -> None:
        """Nothing to close."""
        self.closed = True

    def raise_for_status(self) -> None:
        """Never raises for the default 200."""
        if self.status >= 400:
            msg = f"{self.status} {self.reason}"
            raise RuntimeError(msg)

    async def __aenter__(self) -> FakeResponse:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class _RequestContext:
    """Awaitable and async context manager, like aiohttp's ``_RequestContextManager``."""

    def __init__(self, response: FakeResponse) -> None:
        self._response = response

    def __await__(self) -> Any:
        async def get() -> FakeResponse:
            return self._response

        return get().__await__()

    async def __aenter__(self) -> FakeResponse:
        return self._response

    async def __aexit__(self, *exc: object) -> None:
        self._response.release()


class CaptureSession:
    """Records every request; answers ``status`` with ``body`` (default 200, success JSON)."""

    def __init__(
        self,
        *,
        status: int = 200,
        body: bytes = b'{"success": true}',
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.requests: list[CapturedRequest] = []
        self.closed = False
        self._status = status
        self._body = body
        self._headers = dict(headers or {"Content-Type": "application/json"})

    def request(self, method: str, url: Any, **kwargs: Any) -> _RequestContext:
        """Record a request; return the fake response (awaitable or ``async with``)."""
        target = URL(str(url))
        params = kwargs.get("params")
        if params:
            target = target.update_query(params)
        headers: dict[str, str] = {}
        for key, value in dict(kwargs.get("headers") or {}).items():
            headers[str(key)] = str(value)
        auth = kwargs.get("auth")
        if isinstance(auth, BasicAuth):
            headers["Authorization"] = auth.encode()
        body: bytes | None = None
        if kwargs.get("json") is not None:
            body = orjson.dumps(kwargs["json"])
            headers.setdefault("Content-Type", "application/json")
        elif kwargs.get("data") is not None:
            body = _body_bytes(kwargs["data"])
        self.requests.append(CapturedRequest(method.upper(), str(target), headers, body))
        response = FakeResponse(
            status=self._status,
            body=self._body,
            headers=CIMultiDictProxy(CIMultiDict(self._headers)),
            url=target,
            method=method.upper(),
        )
        self.requests[-1].status = self._status
        self.requests[-1].response_body = self._body
        return _RequestContext(response)

    def post(self, url: Any, **kwargs: Any) -> _RequestContext:
        """``request("POST", ...)``."""
        return self.request("POST", url, **kwargs)

    def put(self, url: Any, **kwargs: Any) -> _RequestContext:
        """``request("PUT", ...)``."""
        return self.request("PUT", url, **kwargs)

    def patch(self, url: Any, **kwargs: Any) -> _RequestContext:
        """``request("PATCH", ...)``."""
        return self.request("PATCH", url, **kwargs)

    def get(self, url: Any, **kwargs: Any) -> _RequestContext:
        """``request("GET", ...)``."""
        return self.request("GET", url, **kwargs)

    def delete(self, url: Any, **kwargs: Any) -> _RequestContext:
        """``request("DELETE", ...)``."""
        return self.request("DELETE", url, **kwargs)

    async def close(self) -> None:
        """Mark the session closed."""
        self.closed = True

    async def __aenter__(self) -> CaptureSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _body_bytes(data: Any) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, Mapping):
        return str(URL.build(query=dict(data)).query_string).encode()
    payload = getattr(data, "_value", None)  # aiohttp.BytesPayload and friends
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return repr(data).encode()
