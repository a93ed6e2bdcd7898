"""Plain HTTP on the WebSocket port: /healthz, /readyz, /metrics and the static browser client at /.

- /healthz: liveness and drain: 200 while serving, 503 (with Retry-After) while draining, so a load
  balancer stops sending new calls to a process that is shutting down. The JSON body says more:
  sessions, the admission state, pid and worker index.
- /readyz: 200 only while a new session would be admitted; 503 with Retry-After while draining or
  at capacity (for balancers that should steer new calls around a full process).

websockets calls `process_request` before the upgrade; returning a Response answers the request as
plain HTTP, returning None lets the WebSocket handshake go on (only on /ws and /).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import mimetypes
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from voice import metrics

WEBSOCKET_PATHS = ("/", "/ws", "/twilio", "/v1/realtime")  # voice/doors/: ours, Twilio Media Streams, OpenAI Realtime
STATIC_MAX_BYTES = 8 << 20


def response(status: HTTPStatus, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> Response:
    headers = Headers({"Content-Type": content_type, "Content-Length": str(len(body)),
                       "Cache-Control": "no-cache", **(extra or {})})
    return Response(status.value, status.phrase, headers, body)


def text(status: HTTPStatus, message: str) -> Response:
    return response(status, (message + "\n").encode(), "text/plain; charset=utf-8")


def bearer_ok(request: Request, token: str | None) -> bool:
    """True when no token is configured or the Authorization header carries it."""
    if not token:
        return True
    header = request.headers.get("Authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else ""
    return hmac.compare_digest(given.encode(), token.encode())


def is_websocket_upgrade(request: Request) -> bool:
    return "websocket" in request.headers.get("Upgrade", "").lower()


def resolve_static(web_dir: Path, url_path: str) -> Path | None:
    """Map a URL path to a file under web_dir; refuses anything that escapes it."""
    rel = url_path.split("?", 1)[0].lstrip("/") or "index.html"
    root = web_dir.resolve()
    path = (root / rel).resolve()
    if root not in path.parents and path != root:
        return None
    return path if path.is_file() else None


def read_static(path: Path) -> bytes | None:
    if path.stat().st_size > STATIC_MAX_BYTES:
        return None
    return path.read_bytes()


class HttpRoutes:
    """The request hook: health, metrics, static files; WebSocket upgrades pass through."""

    def __init__(self, web_dir: Path, token: str | None, health: Callable[[], dict]):
        self.web_dir = web_dir
        self.token = token
        self.health = health

    async def __call__(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if is_websocket_upgrade(request):
            if path in WEBSOCKET_PATHS:
                return None
            return text(HTTPStatus.NOT_FOUND, f"no WebSocket endpoint at {path}; use /ws")
        if path in ("/healthz", "/readyz"):
            return self.health_response(path)
        if path == "/metrics":
            if not bearer_ok(request, self.token):
                return text(HTTPStatus.UNAUTHORIZED, "metrics need 'Authorization: Bearer <token>'")
            return response(HTTPStatus.OK, metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
        return await self.static(path)

    def health_response(self, path: str) -> Response:
        state = self.health()
        ok = state.get("status") == "ok" and (path == "/healthz" or state.get("admitting", True))
        if ok:
            return response(HTTPStatus.OK, json.dumps(state).encode(), "application/json")
        retry_s = (state.get("admission") or {}).get("retry_after_s", 10)
        return response(HTTPStatus.SERVICE_UNAVAILABLE, json.dumps(state).encode(), "application/json",
                        {"Retry-After": str(retry_s)})

    async def static(self, path: str) -> Response:
        file = resolve_static(self.web_dir, path)
        if file is None:
            return text(HTTPStatus.NOT_FOUND, f"not found: {path}")
        body = await asyncio.to_thread(read_static, file)  # file I/O stays off the event loop
        if body is None:
            return text(HTTPStatus.FORBIDDEN, "file too large")
        ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if file.suffix in (".js", ".mjs"):
            ctype = "text/javascript"
        return response(HTTPStatus.OK, body, ctype + ("; charset=utf-8" if ctype.startswith("text/") else ""))
