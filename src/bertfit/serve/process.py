"""Running the server: bind the address, load the runs, listen, answer until SIGTERM or Ctrl-C, then finish what
is in flight.

The address is bound before any run is loaded, so that a bad --host or a port in use fails at once, and listened
on only once the runs are loaded, so that nobody connects to a server that cannot answer yet. A connection has
--timeout to send a request's headers (`headers_deadline`); from then on the guard's deadline runs.

On SIGTERM the server keeps listening while the requests begun before the signal are answered, and the guard
refuses every new one with 503 `shutting_down` (`Connection: close` on every answer from then on). Once the last is
answered (or --timeout + 5 s have passed), uvicorn's own graceful stop follows: it stops listening, closes the
idle connections, and the process exits 0.
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path

from .. import inference
from ..errors import ConfigError
from ..serve_settings import API_KEY_ENV, ServeSettings


def run_names(paths: list[str]) -> dict[str, str]:
    """NAME=PATH, or PATH named by its folder (runs/glue-sst2/model -> glue-sst2)."""
    names = {}
    for spec in paths:
        name, _, path = spec.partition("=") if "=" in spec and not Path(spec).exists() else ("", "", spec)
        if "=" in spec and not Path(spec).exists() and (not name.strip() or not path.strip()):
            raise ConfigError(f"{spec!r}: name a run as NAME=RUN, both non-empty (or give the run dir alone)")
        if not name:
            folder = Path(path).resolve()
            name = folder.parent.name if folder.name in ("model", "onnx") else folder.name
        if name in names:
            raise ConfigError(f"two runs are called {name!r} ({names[name]} and {path}); name them: NAME=PATH")
        names[name] = path
    return names


def load_runs(paths: list[str], settings: ServeSettings) -> dict[str, inference.Run]:
    return {name: inference.load_run(path, settings.engine, settings.precision)
            for name, path in run_names(paths).items()}


def with_key_from_environment(settings: ServeSettings) -> ServeSettings:
    """The API key from BERTFIT_API_KEY when none was given (a key on the command line shows in `ps`)."""
    if settings.api_key is None and os.environ.get(API_KEY_ENV):
        return replace(settings, api_key=os.environ[API_KEY_ENV])
    return settings


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, IPv4 or IPv6 as the host resolves, not yet listening."""
    host = host.strip()
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1], as in a URL
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        listener = socket.socket(family, kind, proto)
    except (OSError, UnicodeError, ValueError) as exc:
        raise ConfigError(f"cannot listen on {shown} ({getattr(exc, 'strerror', None) or exc}); give --host as an "
                          f"address of this machine (127.0.0.1, 0.0.0.0, ::1, ::) or a name it resolves") from None
    try:
        if os.name == "posix":  # as asyncio does: a port left in TIME_WAIT by a server just stopped is free
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except OSError as exc:
        listener.close()
        raise ConfigError(f"cannot listen on {shown} ({exc.strerror or exc}); pick another --host or --port") from None
    return listener


def url(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    return f"http://[{host}]:{port}" if listener.family == socket.AF_INET6 else f"http://{host}:{port}"


def headers_deadline(settings: ServeSettings):
    """uvicorn's HTTP/1.1 protocol (h11), closing a connection that has not sent a request's headers whole within
    --timeout of its opening or of its last answer. uvicorn has no such limit: a connection that sent nothing, or
    half a request line, was held for ever (the guard's deadline starts only once the headers are in)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        waiting = None  # the timer of the headers awaited

        def connection_made(self, transport):
            super().connection_made(transport)
            self.await_headers()

        def on_response_complete(self):
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self.await_headers()

        def handle_events(self):
            super().handle_events()
            if self.waiting is not None and self.conn.their_state is not h11.IDLE:  # a request's headers are in
                self.waiting.cancel()
                self.waiting = None

        def connection_lost(self, exc):
            if self.waiting is not None:
                self.waiting.cancel()
            super().connection_lost(exc)

        def await_headers(self):
            if self.waiting is not None:
                self.waiting.cancel()
            self.waiting = self.loop.call_later(settings.timeout, self.headers_too_slow)

        def headers_too_slow(self):
            self.waiting = None
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self.transport.close()

    return Protocol


def serve(paths: list[str], settings: ServeSettings | None = None, say=print) -> None:
    """Load the runs, listen, answer until SIGTERM or Ctrl-C, then finish what is in flight and return."""
    settings = with_key_from_environment(settings or ServeSettings())
    settings.validate()
    from .app import create_app

    listener = bind(settings.host, settings.port)
    try:
        runs = load_runs(paths, settings)
        run_server(create_app(runs, settings), listener, settings, say)
    finally:
        listener.close()


def run_server(app, listener: socket.socket, settings: ServeSettings, say) -> None:
    """Answer on `listener` until SIGTERM or Ctrl-C; then answer what was begun before it, and return."""
    import uvicorn

    service = app.state.service
    for name, run in service.runs.items():
        chosen = f" from --precision {settings.precision}" if settings.precision == "auto" and run.engine == "torch" else ""
        say(f"{name}: {run.task} ({run.head}, {run.engine}, {run.precision}{chosen}) from {run.folder}")
    address = url(listener)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            service.stopping = True  # at once: the guard refuses every request that begins from now on
            super().handle_exit(sig, frame)

        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            # said once uvicorn's signal handlers are in place: a SIGTERM from then on is a clean stop
            say(f"serving on {address} (page at /, API docs at /docs, metrics at /metrics, "
                f"{'API key required' if settings.api_key else 'no API key'})", flush=True)

        async def shutdown(self, sockets=None):
            # still listening, so that a request sent meanwhile gets the guard's 503 rather than a refused connection
            deadline = time.monotonic() + self.config.timeout_graceful_shutdown
            while service.answering and not self.force_exit and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await super().shutdown(sockets=sockets)

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", http=headers_deadline(settings),
                            timeout_graceful_shutdown=int(settings.timeout) + 5)
    server = Server(config)
    # uvicorn turns SIGTERM and SIGINT into a graceful stop, then raises the signal again under the
    # handler that was there before it: a quiet one here, so the process exits 0 after a clean stop
    received = []
    previous = {sig: signal.signal(sig, lambda number, frame: received.append(number))
                for sig in (signal.SIGTERM, signal.SIGINT)}
    started = time.monotonic()
    try:
        server.run(sockets=[listener])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    say(f"stopped after {time.monotonic() - started:.0f} s", file=sys.stderr)
