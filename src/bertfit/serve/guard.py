"""ASGI middleware in front of every route: shutting down, the bearer token, the JSON content type, the body
size and the time it takes to arrive, the count of requests in flight, the client going away, and the count of
every answer for /metrics.

The body is read here, up to --max-body-bytes, before any route sees it. A larger one is refused with 413;
the rest of it is read and discarded first (up to DRAIN_LIMIT), since a client still sending a body it was
not asked for gets its connection reset rather than the answer. A client that sent `Expect: 100-continue`
is answered at once instead: it waits for the go-ahead before sending the body.

A POST counts as in flight (--max-queue, /health's `in_flight`) from its headers on, while its body arrives
too, and its --timeout runs from then: a client that stops sending halfway gets 408 when it is up and is
closed, so that slow or stalled bodies can neither hold connections for ever nor pile up uncounted.
"""
from __future__ import annotations

import asyncio
import hmac
import time

from .errors import error_bytes

DRAIN_LIMIT = 64 << 20
DEADLINE = "bertfit.deadline"  # the scope key of the request's deadline, on the event loop's clock
DISCONNECTED = "bertfit.disconnected"  # the scope key of an asyncio.Event set when the client goes away
ERROR_TYPE = "bertfit.error_type"  # the scope key where an error answer leaves its type, for the metrics
PUBLIC = {("GET", "/health"), ("GET", "/")}  # the page holds no data; it asks for the key and sends it
UNAUTHORIZED = "this server needs an API key: send the header Authorization: Bearer KEY"
SHUTTING_DOWN = "the server is shutting down; retry on another or after its restart"


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
                if self.service.stopping:  # no further request on this connection: the server is going
                    message = {**message, "headers": closing(message.get("headers", []))}
            await send(message)

        try:
            await self.checked(scope, receive, counted)
        finally:
            self.service.metrics.answered(self.service.route_of(scope), scope["method"], status[0],
                                          time.perf_counter() - started, scope.get(ERROR_TYPE))

    async def checked(self, scope, receive, send):
        if self.service.stopping:
            return await refuse(scope, send, 503, SHUTTING_DOWN, None, "shutting_down")
        self.service.answering += 1  # begun before SIGTERM: the server answers it before it stops listening
        try:
            return await self.admitted(scope, receive, send)
        finally:
            self.service.answering -= 1

    async def admitted(self, scope, receive, send):
        settings = self.service.settings
        headers = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.lower(), value)
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
        scope[DEADLINE] = asyncio.get_running_loop().time() + settings.timeout
        counters = self.service.counters
        if counters.in_flight >= settings.max_queue:
            # its body is read and dropped, not kept: an answer before it would reset the connection
            if await self.drained(scope, receive, send, 0, True):
                return await refuse(scope, send, 503, f"the server is busy ({counters.in_flight} requests in "
                                                      f"flight); retry shortly", None, "overloaded",
                                    {"retry-after": "1", "connection": "close"})
            return
        counters.in_flight += 1
        try:
            return await self.answered(scope, receive, send, limit)
        finally:
            counters.in_flight -= 1

    async def answered(self, scope, receive, send, limit: int):
        """Read the body by the request's deadline, then hand it to the app, watching for the client leaving."""
        body = bytearray()
        while True:
            message = await before(scope[DEADLINE], receive)
            if message is None:
                return await too_slow(scope, send, self.service.settings.timeout)
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                if await self.drained(scope, receive, send, len(body), message.get("more_body", False)):
                    return await too_large(scope, send, limit)
                return
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

    async def drained(self, scope, receive, send, read: int, more: bool) -> bool:
        """Read and drop the rest of a body, up to DRAIN_LIMIT, by the request's deadline: whether the answer
        can still be sent (False: the client left, or was sent 408 for a body that stopped arriving)."""
        while more and read <= DRAIN_LIMIT:
            message = await before(scope[DEADLINE], receive)
            if message is None:
                await too_slow(scope, send, self.service.settings.timeout)
                return False
            if message["type"] == "http.disconnect":
                return False
            read += len(message.get("body", b""))
            more = message.get("more_body", False)
        return True


async def before(deadline: float, receive):
    """The next message from the client, or None if the deadline passes first."""
    try:
        return await asyncio.wait_for(receive(), max(0.0, deadline - asyncio.get_running_loop().time()))
    except asyncio.TimeoutError:
        return None


def closing(headers: list) -> list:
    """A response's headers with `Connection: close`, which makes uvicorn close the connection after it."""
    return [(k, v) for k, v in headers if k.lower() != b"connection"] + [(b"connection", b"close")]


async def too_slow(scope, send, timeout: float):
    return await refuse(scope, send, 408, f"the body did not arrive within {timeout:g} s (--timeout); send it "
                                          f"whole, without pauses", None, "timeout", {"connection": "close"})


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
