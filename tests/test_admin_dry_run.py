"""``POST /admin/destinations/{id}/dry-run``: a transform error never shows a configured secret."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import crossdock
from crossdock.web import admin, keys

SECRET = "dry-run-secret-0123456789"


class Worker:
    """A destination worker whose transform fails with a message that echoes a secret."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def transform(self, event: Any) -> Any:
        raise self.error


async def dry_run(error: Exception) -> tuple[int, dict[str, Any]]:
    app = web.Application()
    app[keys.WORKERS] = {"out": Worker(error)}  # type: ignore[dict-item]
    app[keys.CONFIG] = SimpleNamespace(secrets=lambda: [crossdock.Secret(SECRET)])  # type: ignore[assignment]
    app.router.add_post("/admin/destinations/{id}/dry-run", admin.dry_run)
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/admin/destinations/out/dry-run", data=b'{"type": "track"}')
        return response.status, await response.json()


async def test_transform_failure_is_masked() -> None:
    status, body = await dry_run(ValueError(f"cannot map with key {SECRET}"))
    assert status == 422
    assert SECRET not in str(body)
    assert "cannot map with key ***" in str(body)


async def test_unsendable_reason_is_masked() -> None:
    status, body = await dry_run(crossdock.Unsendable(f"vendor says {SECRET} is wrong"))
    assert status == 422
    assert SECRET not in str(body)
    assert "***" in str(body)
