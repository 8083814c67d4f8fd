"""The console's page and static files, and the security headers of every console answer.

``GET /console`` answers ``static/index.html`` (403 with ``static/off.html`` when no admin token
is configured); ``GET /console/static/{path}`` answers files of ``static/`` with a known type
only: no directory listing, nothing outside the directory. Every answer under ``/console``
carries a strict Content-Security-Policy (no inline script or style, nothing from another
origin), ``nosniff`` and ``no-referrer``; API answers also ``Cache-Control: no-store``.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from aiohttp import web

__all__ = ["CSP", "STATIC_DIR", "add_security_headers", "index", "static_file"]

STATIC_DIR = Path(__file__).parent / "static"

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

CONTENT_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".html": "text/html",
    ".json": "application/json",
    ".woff2": "font/woff2",
    ".ico": "image/x-icon",
}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` of the console's sub-application: the headers every console
    answer carries (streams and files included)."""
    headers = response.headers
    headers["Content-Security-Policy"] = CSP
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Frame-Options"] = "DENY"
    if request.path.startswith("/console/api/") or request.path in ("/console", "/console/"):
        headers["Cache-Control"] = "no-store"


def _page(name: str, status: int = 200) -> web.FileResponse:
    return web.FileResponse(
        STATIC_DIR / name, status=status, headers={"Content-Type": "text/html; charset=utf-8"}
    )


async def index(request: web.Request, enabled: bool) -> web.StreamResponse:
    """The console page, or the page saying how to turn the console on."""
    if not enabled:
        return _page("off.html", 403)
    return _page("index.html")


async def static_file(request: web.Request) -> web.StreamResponse:
    """One file of ``static/``: 404 for anything else."""
    raw = request.match_info.get("path", "")
    relative = PurePosixPath(raw)
    if (
        not raw
        or "\\" in raw
        or "\x00" in raw
        or relative.is_absolute()
        or any(part in ("", ".", "..") or part.startswith(".") for part in relative.parts)
    ):
        raise web.HTTPNotFound()
    content_type = CONTENT_TYPES.get(relative.suffix.lower())
    if content_type is None:
        raise web.HTTPNotFound()
    path = STATIC_DIR.joinpath(*relative.parts)
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise web.HTTPNotFound() from None
    if not resolved.is_relative_to(STATIC_DIR.resolve()) or not resolved.is_file():
        raise web.HTTPNotFound()
    if content_type.startswith("text/"):
        content_type += "; charset=utf-8"
    return web.FileResponse(resolved, headers={"Content-Type": content_type})
