"""The app: what the routes share (`Service`), the error handlers that give every refusal the one JSON shape,
and the routes that are not a task (the page, /health, /v1/models, /metrics). The task routes are in
`routes` (bertfit's own) and `hf` (the Hugging Face inference format)."""
# No `from __future__ import annotations`: FastAPI reads the request schemas off the handlers' annotations.
import asyncio
import logging
import traceback
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import Match

from .. import heads, inference
from ..errors import BertfitError, DataError
from ..serve_settings import ServeSettings
from . import schemas
from .batcher import Batcher, Counters
from .errors import RequestError, error_body
from .guard import DEADLINE, DISCONNECTED, ERROR_TYPE, Guard
from .metrics import CONTENT_TYPE, Metrics

PAGE = Path(__file__).parent / "static" / "page.html"
# the routes each kind of run answers, its own first (heads.py)
ROUTES = {name: head.routes for name, head in heads.HEADS.items()}
log = logging.getLogger("bertfit.serve")


class Service:
    """The served models and what every route shares: settings, a batcher per model, the threads, the counts."""

    def __init__(self, runs: dict[str, inference.Run], settings: ServeSettings):
        self.runs, self.settings = runs, settings
        self.counters, self.metrics = Counters(), Metrics()
        self.batchers: dict[str, Batcher] = {}
        self.stopping = False  # set on SIGTERM: every new request is refused with 503 from then on
        self.answering = 0  # requests begun before SIGTERM and not yet answered: the server waits for them
        self.routes: list = []  # the app's routes, to name a request's route in the metrics
        self.model_thread: ThreadPoolExecutor | None = None
        self.preparing: ThreadPoolExecutor | None = None

    @asynccontextmanager
    async def running(self, app):
        """The threads and batchers live as long as the app: they start with it and stop after its last request."""
        self.model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bertfit-model")
        # tokenizing and decoding: off the event loop, and off the model's thread
        self.preparing = ThreadPoolExecutor(max_workers=self.settings.tokenizer_threads,
                                            thread_name_prefix="bertfit-prepare")
        self.batchers.update({name: Batcher(name, run, self.settings, self.counters, self.metrics, self.model_thread,
                                            self.preparing) for name, run in self.runs.items()})
        tasks = [asyncio.create_task(b.serve_forever(), name=f"batcher-{b.name}") for b in self.batchers.values()]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.model_thread.shutdown(wait=True)
            self.preparing.shutdown(wait=True)

    def route_of(self, scope) -> str:
        """The route template a request matched (/models/{name}), so that the metrics' labels stay few."""
        route = scope.get("route")
        if route is not None and hasattr(route, "path"):
            return route.path
        for route in self.routes:
            if getattr(route, "path", None) and route.matches(scope)[0] != Match.NONE:
                return route.path
        return "unmatched"

    def pick(self, name: str | None, route: str, field: str = "model") -> Batcher:
        """The model a request names, or the only one that answers `route`."""
        if name is not None:
            if name not in self.batchers:
                raise RequestError(404, f"no model {name!r}; served: {', '.join(self.batchers)}", field, "not_found")
            if route not in ROUTES[self.batchers[name].run.head] and route != "*":
                raise RequestError(422, f"model {name!r} is a {self.batchers[name].run.task} run; it answers "
                                        f"{', '.join(ROUTES[self.batchers[name].run.head])}", field)
            return self.batchers[name]
        fitting = [b for b in self.batchers.values() if route == "*" or route in ROUTES[b.run.head]]
        if len(fitting) == 1:
            return fitting[0]
        if not fitting:
            raise RequestError(404, f"no served model answers {route}; served: "
                                    f"{', '.join(f'{n} ({b.run.task})' for n, b in self.batchers.items())}", field,
                               "not_found")
        raise RequestError(422, f"several models are served ({', '.join(b.name for b in fitting)}); name one "
                                f"({'POST /models/NAME' if route == '*' else 'in the model field'})", field)

    async def answer(self, request: Request, batcher: Batcher, field: str, prepare, *args) -> list:
        """Encode on the preparing threads, check the request's size, queue it, and wait for its answers, by the
        deadline the guard set when the request's headers arrived (--timeout: its body counts too)."""
        loop = asyncio.get_running_loop()
        deadline = request.scope.get(DEADLINE) or loop.time() + self.settings.timeout
        try:
            prepared = await asyncio.wait_for(loop.run_in_executor(self.preparing, prepare, batcher.run, *args),
                                              max(0.0, deadline - loop.time()))
        except DataError as exc:  # what the inputs of `field` hold: the message says which one
            raise RequestError(422, str(exc), field) from None
        except BertfitError as exc:  # the request meets the model's own settings: no one field is at fault
            raise RequestError(422, str(exc)) from None
        except asyncio.TimeoutError:
            raise RequestError(504, f"no answer within {self.settings.timeout:g} s (--timeout); receiving and "
                                    f"tokenizing the request took it all", kind="timeout") from None
        self.check_size(prepared, field)
        job = batcher.submit(prepared)
        answers = await batcher.result(job, deadline, request.scope.get(DISCONNECTED))
        self.counters.served += 1
        return answers

    def check_size(self, prepared: inference.Prepared, field: str) -> None:
        """A request's work is bounded: its sequences (windows of long inputs included) and their tokens."""
        sequences, tokens = len(prepared.features), prepared.num_tokens
        if sequences > self.settings.max_windows:
            raise RequestError(422, f"{field} makes {sequences} sequences for the model (long texts and contexts are "
                                    f"read window by window); at most {self.settings.max_windows} per request "
                                    f"(--max-windows): send fewer or shorter inputs", field)
        if tokens > self.settings.max_request_tokens:
            raise RequestError(422, f"{field} makes {tokens} tokens for the model; at most "
                                    f"{self.settings.max_request_tokens} per request (--max-request-tokens): send "
                                    f"fewer or shorter inputs", field)


def describe(name: str, run: inference.Run) -> dict:
    """GET /v1/models for one run: the inference layer's description, and whether it reads text pairs."""
    info = {"name": name, **run.describe()}
    if run.head == "classification":
        from ..tasks.glue import GLUE_TASKS

        task = GLUE_TASKS.get(str(run.extra.get("task", "")).lower())
        info["pairs"] = None if task is None else len(task.text_columns) == 2  # None: a custom task, either
    return info


def create_app(runs: dict[str, inference.Run], settings: ServeSettings) -> FastAPI:
    """The ASGI app serving `runs` by name; batchers start with the app and stop after the last request."""
    from .. import __version__
    from . import embedding_routes, hf, openapi, routes

    service = Service(runs, settings)
    app = FastAPI(title="bertfit", version=__version__, lifespan=service.running, redoc_url=None,
                  description="Fine-tuned BERT runs: classification and extractive question answering; "
                              "masked-language models fill [MASK]s; sentence-embedding models embed (TEI's /embed, "
                              "OpenAI's /v1/embeddings) and classification runs rerank (/rerank). Every route but GET /health and the page needs "
                              "`Authorization: Bearer KEY` when the server has a key. Errors: "
                              '{"error": {"type", "message", "status", "field"}}.')
    app.state.service = service
    app.add_middleware(Guard, service=service)

    def error(request: Request, status, message, field=None, kind="invalid_request", headers=None) -> JSONResponse:
        request.scope[ERROR_TYPE] = kind
        return JSONResponse(error_body(status, message, field, kind), status_code=status, headers=headers)

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError):
        return error(request, exc.status, exc.message, exc.field, exc.kind, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return error(request, *validation_message(exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request")
        message = {404: f"no route {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # every route on the path, not only the first that matched it (GET / is the page, POST / a model)
            allowed = sorted({m for r in service.routes if getattr(r, "methods", None)
                              and r.matches(request.scope)[0] != Match.NONE for m in r.methods})
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
            if request.method == "POST" and request.url.path == "/" and len(service.runs) > 1:
                message += (f": several models are served ({', '.join(service.runs)}); POST /models/NAME "
                            f"names one")
        return error(request, exc.status_code, message, kind=kind, headers=headers)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):
        log.error("request %s failed:\n%s", request.url.path, traceback.format_exc())
        return error(request, 500, "internal error; the server log has the details", kind="internal")

    @app.get("/", response_class=HTMLResponse, summary="The page: classify, answer or fill masks in a browser (no "
                                                       "API key needed to load it; it asks for one)",
             responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "The page"},
                        **schemas.error_responses(503)})
    async def page():
        return FileResponse(PAGE, media_type="text/html")

    @app.get("/health", response_model=schemas.Health, responses=schemas.error_responses(503),
             summary="Liveness and load (no API key needed); 503 once the server is shutting down")
    async def health():
        c = service.counters
        return {"status": "ok", "models": list(service.batchers), "queued": c.queued, "in_flight": c.in_flight,
                "passes": c.passes, "served": c.served}

    @app.get("/v1/models", response_model=schemas.ModelsResponse, responses=schemas.error_responses(401, 503),
             summary="The served runs: task, labels, precision, maximum length, threshold")
    async def models():
        return {"models": [describe(name, b.run) for name, b in service.batchers.items()]}

    @app.get("/metrics", response_class=Response, responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}},
              "description": "Prometheus text format"}, **schemas.error_responses(401, 503)},
             summary="Prometheus metrics: requests and errors by route and status, latency, pass sizes, queue "
                     "depth, tokens (needs the API key when the server has one)")
    async def metrics():
        queued = {name: len(b.pending) for name, b in service.batchers.items()}
        return Response(service.metrics.render(queued, service.counters.in_flight), media_type=CONTENT_TYPE)

    routes.add_routes(app, service)
    embedding_routes.add_routes(app, service)
    hf.add_routes(app, service)
    service.routes = list(app.routes)

    def document() -> dict:
        """What this server accepts: its models, their tasks and its limits (`openapi.tighten`)."""
        if app.openapi_schema is None:
            app.openapi_schema = openapi.tighten(FastAPI.openapi(app), runs, settings)
        return app.openapi_schema

    app.openapi = document
    return app


TYPE_NAMES = {"str", "int", "float", "bool", "list", "dict", "tuple", "none"}


def validation_message(errors: list[dict]) -> tuple[int, str, str | None]:
    """(status, message, field) for the first problem pydantic found in a request body."""
    first = errors[0]
    kind = first.get("type", "")
    loc = list(first.get("loc", ()))
    loc = loc[1:] if loc[:1] == ["body"] else loc
    # pydantic names the members of a union it tried (str, TextPair, list[...]): not fields a client sent;
    # an unknown field's name is the client's own, kept as sent
    loc = [p for i, p in enumerate(loc) if isinstance(p, int) or (kind == "extra_forbidden" and i == len(loc) - 1)
           or (p.isidentifier() and p.islower() and p not in TYPE_NAMES)]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or None
    if kind == "json_invalid":
        return 400, f"the body is not valid JSON ({first.get('ctx', {}).get('error', 'malformed')})", None
    if kind == "string_unicode":  # a lone surrogate where pydantic reads a name, not a value
        return 422, f"{where or 'the body'} has a lone surrogate, which is no character; send text as valid UTF-8", where
    if where is None:
        if kind == "missing":
            return 422, "the request needs a JSON object as its body", None
        return 422, "the body must be a JSON object", None
    if kind == "extra_forbidden":
        return 422, f"unknown field {where!r}", where
    if kind == "missing":
        return 422, f"{where} is required", where
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return 422, f"{where}: {message}", where
