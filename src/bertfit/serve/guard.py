"""ASGI middleware in front of every route: shutting down, the bearer token, the JSON content type, the body
size, the client going away, and the count of every answer for /metrics.

The body is read here, up to --max-body-bytes, before any route sees it. A larger one is refused with 413;
the rest of it is read and discarded first (up to DRAIN_LIMIT), since a client still sending a body it was
not asked for gets its connection reset rather than the answer. A client that sent `Expect: 100-continue`
is answered at once instead: it waits for the go-ahead before sending the body.
"""
from __future__ import annotations

import asyncio
import hmac
import time

from .errors import error_bytes

DRAIN_LIMIT = 64 << 20
DISCONNECTED = "bertfit.disconnected"  # the scope key of an asyncio.Event set when the client goes away
ERROR_TYPE = "bertfit.error_type"  # the scope key where an error answer leaves its type, for the metrics
PUBLIC = {("GET", "/health"), ("GET", "/")}  # the page holds no data; it asks for the key and sends it
UNAUTHORIZED = "this server needs an API key: send the header Authorization: Bearer KEY"


class Guard:
    def __init__(self, app, service):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [499]  # no answer begun: the client left first

        async def counted(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.checked(scope, receive, counted)
        finally:
            self.service.metrics.answered(self.service.route_of(scope), scope["method"], status[0],
                                          time.perf_counter() - started, scope.get(ERROR_TYPE))

    async def checked(self, scope, receive, send):
        settings = self.service.settings
        headers = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.lower(), value)
        if self.service.stopping:
            return await refuse(scope, send, 503, "the server is shutting down; retry on another or after its "
                                                  "restart", None, "shutting_down", {"connection": "close"})
        if settings.api_key is not None and (scope["method"], scope["path"]) not in PUBLIC:
            # bytes against bytes: the key is printable ASCII (ServeSettings.validate), whatever the client encodes
            scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), settings.api_key.encode("ascii")):
                return await refuse(scope, send, 401, UNAUTHORIZED, "Authorization", "unauthorized",
                                    {"www-authenticate": "Bearer"})
        if scope["method"] != "POST":
            return await self.app(scope, receive, send)
        content_type = headers.get(b"content-type", b"application/json").decode("latin-1")
        content_type = content_type.split(";")[0].strip().lower()
        if content_type != "application/json":
            return await refuse(scope, send, 415, f"send the body as application/json, not {content_type}",
                                "Content-Type", "unsupported_media_type")
        limit = settings.max_body_bytes
        declared = headers.get(b"content-length", b"").decode("latin-1")
        declared = int(declared) if declared.isdigit() else None
        if declared is not None and declared > limit:
            if declared > DRAIN_LIMIT or headers.get(b"expect", b"").lower() == b"100-continue":
                return await too_large(scope, send, limit)
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                return await self.discard(scope, receive, send, len(body), limit, message.get("more_body", False))
            if not message.get("more_body"):
                break
        disconnected = asyncio.Event()
        scope[DISCONNECTED] = disconnected

        async def watch():
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        watcher = asyncio.ensure_future(watch())
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        try:
            return await self.app(scope, replay, send)
        finally:
            watcher.cancel()

    async def discard(self, scope, receive, send, read: int, limit: int, more: bool):
        """Read the rest of a body past the limit, up to DRAIN_LIMIT, then answer 413 and close."""
        while more and read <= DRAIN_LIMIT:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            read += len(message.get("body", b""))
            more = message.get("more_body", False)
        return await too_large(scope, send, limit)


async def too_large(scope, send, limit: int):
    return await refuse(scope, send, 413, f"the body is larger than {limit} bytes (--max-body-bytes)", None,
                        "too_large", {"connection": "close"})


async def refuse(scope, send, status: int, message: str, field: str | None, kind: str, headers: dict | None = None):
    scope[ERROR_TYPE] = kind
    payload = error_bytes(status, message, field, kind)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
