"""`bertfit serve`: fine-tuned runs (and masked-language models, for fill-mask) behind an HTTP API,
concurrent requests batched into one pass.

A thin layer over `inference`: a request is validated, encoded by `inference.prepare_*` (as the
run encoded its data), queued, and joined with whatever other requests for the same model are
waiting into one `inference.run_many` on the single worker thread, so the event loop never waits
for the model and one model pass serves many requests. No model code lives here.

FastAPI on uvicorn: the ASGI stack most Python model servers use (and the one users write by
hand, which `bench/serve_load.py` compares against), with request schemas that give the OpenAPI
document at /openapi.json and the field of every type error for free. uvicorn stops on SIGTERM
the standard way: it stops accepting, lets every request in flight finish, then exits.
"""
# No `from __future__ import annotations`: FastAPI reads the request schemas off the handlers' annotations,
# which are built at run time in create_app.
import asyncio
import hmac
import json
import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from . import inference
from .errors import BertfitError, ConfigError
from .serve_settings import API_KEY_ENV, ServeSettings

PUBLIC_PATHS = ("/health", "/")  # the page holds no data; it asks for the key and sends it with each call
ROUTES = {"classification": "/v1/classify", "qa": "/v1/answer", "mlm": "/v1/fill-mask", "pretraining": "/v1/fill-mask"}


class RequestError(Exception):
    """A request the server refuses: the HTTP status, a message, and the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None, kind: str = "invalid_request",
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.kind, self.headers = status, message, field, kind, headers


def error_body(status: int, message: str, field: str | None = None, kind: str = "invalid_request") -> dict:
    error = {"type": kind, "message": message, "status": status}
    if field is not None:
        error["field"] = field
    return {"error": error}


# ---- batching -----------------------------------------------------------------------------------

@dataclass
class Job:
    prepared: inference.Prepared
    future: asyncio.Future
    arrived: float
    abandoned: bool = False  # its request timed out: skip it if it has not run yet


@dataclass
class Counters:
    queued: int = 0  # waiting for a pass, every model together
    in_flight: int = 0  # requests being answered
    passes: int = 0
    served: int = 0


class Batcher:
    """One model's queue: waiting requests go into the next pass of the model, up to a token budget."""

    def __init__(self, name: str, run: inference.Run, worker: ThreadPoolExecutor, settings: ServeSettings,
                 counters: Counters):
        self.name, self.run, self.worker, self.settings, self.counters = name, run, worker, settings, counters
        self.pending: deque[Job] = deque()
        self.pending_tokens = 0
        self.arrival = asyncio.Event()

    def submit(self, prepared: inference.Prepared) -> Job:
        if self.counters.queued >= self.settings.max_queue:
            raise RequestError(503, f"the server is busy ({self.counters.queued} requests waiting); retry shortly",
                               kind="overloaded", headers={"Retry-After": "1"})
        loop = asyncio.get_running_loop()
        job = Job(prepared, loop.create_future(), loop.time())
        self.pending.append(job)
        self.pending_tokens += prepared.num_tokens
        self.counters.queued += 1
        self.arrival.set()
        return job

    async def result(self, job: Job) -> list[dict]:
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), self.settings.timeout)
        except asyncio.TimeoutError:
            job.abandoned = True
            raise RequestError(504, f"no answer within {self.settings.timeout:g} s (--timeout); the server is "
                                    f"overloaded or the request is very large", kind="timeout") from None

    async def serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self.settings.max_wait_ms / 1000
        while True:
            while not self.pending:
                self.arrival.clear()
                await self.arrival.wait()
            # the oldest request waits at most max_wait for company; a full budget goes at once
            deadline = self.pending[0].arrived + wait
            while self.pending_tokens < self.settings.max_batch_tokens and (left := deadline - loop.time()) > 0:
                self.arrival.clear()
                try:
                    await asyncio.wait_for(self.arrival.wait(), left)
                except asyncio.TimeoutError:
                    break
            jobs = self._take()
            if not jobs:
                continue
            self.counters.passes += 1
            try:
                results = await loop.run_in_executor(self.worker, inference.run_many, self.run,
                                                     [job.prepared for job in jobs], self.settings.batch_size)
            except Exception:
                logging.getLogger("bertfit.serve").error("a model pass failed:\n%s", traceback.format_exc())
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(RequestError(500, "the model failed on this request", kind="internal"))
                continue
            for job, answers in zip(jobs, results):
                if not job.future.done():
                    job.future.set_result(answers)

    def _take(self) -> list[Job]:
        """Oldest first, until the next would pass the token budget; the first always goes."""
        jobs, tokens = [], 0
        while self.pending:
            job = self.pending[0]
            if jobs and tokens + job.prepared.num_tokens > self.settings.max_batch_tokens:
                break
            self.pending.popleft()
            self.pending_tokens -= job.prepared.num_tokens
            self.counters.queued -= 1
            if not job.abandoned:
                jobs.append(job)
                tokens += job.prepared.num_tokens
        return jobs


# ---- the app ------------------------------------------------------------------------------------

def run_names(paths: list[str]) -> dict[str, str]:
    """NAME=PATH, or PATH named by its folder (runs/glue-sst2/model -> glue-sst2)."""
    names = {}
    for spec in paths:
        name, _, path = spec.partition("=") if "=" in spec and not Path(spec).exists() else ("", "", spec)
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


def create_app(runs: dict[str, inference.Run], settings: ServeSettings):
    """The ASGI app serving `runs` by name; batchers start with the app and stop after the last request."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.exceptions import HTTPException

    schemas = _schemas()
    counters = Counters()
    state: dict[str, Batcher] = {}

    @asynccontextmanager
    async def lifespan(app):
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bertfit-model")
        state.update({name: Batcher(name, run, worker, settings, counters) for name, run in runs.items()})
        tasks = [asyncio.create_task(b.serve_forever(), name=f"batcher-{b.name}") for b in state.values()]
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        worker.shutdown(wait=True)

    app = FastAPI(title="bertfit", version=_version(), lifespan=lifespan, redoc_url=None,
                  description="Fine-tuned BERT runs: classification and extractive question answering; "
                              "masked-language models fill [MASK]s.")
    app.add_middleware(Guard, settings=settings)

    def error(status, message, field=None, kind="invalid_request", headers=None) -> JSONResponse:
        return JSONResponse(error_body(status, message, field, kind), status_code=status, headers=headers)

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError):
        return error(exc.status, exc.message, exc.field, exc.kind, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return error(*_validation_message(exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request")
        message = {404: f"no route {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        return error(exc.status_code, message, kind=kind, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):
        logging.getLogger("bertfit.serve").error("request %s failed:\n%s", request.url.path, traceback.format_exc())
        return error(500, "internal error; the server log has the details", kind="internal")

    def pick(name: str | None, route: str) -> Batcher:
        if name is not None:
            if name not in state:
                raise RequestError(404, f"no model {name!r}; served: {', '.join(state)}", "model", "not_found")
            if ROUTES[state[name].run.head] != route:
                raise RequestError(422, f"model {name!r} is a {state[name].run.task} run; it answers "
                                        f"{ROUTES[state[name].run.head]}", "model")
            return state[name]
        fitting = [b for b in state.values() if ROUTES[b.run.head] == route]
        if len(fitting) == 1:
            return fitting[0]
        if not fitting:
            raise RequestError(404, f"no served model answers {route}; served: "
                                    f"{', '.join(f'{n} ({b.run.task})' for n, b in state.items())}", "model", "not_found")
        raise RequestError(422, f"several models answer {route} ({', '.join(b.name for b in fitting)}); "
                                f"name one in the model field", "model")

    async def answer_with(batcher: Batcher, prepare, *args) -> list[dict]:
        counters.in_flight += 1
        try:
            try:
                prepared = prepare(batcher.run, *args)
            except BertfitError as exc:
                raise RequestError(422, str(exc)) from None
            job = batcher.submit(prepared)
            answers = await batcher.result(job)
            counters.served += 1
            return answers
        finally:
            counters.in_flight -= 1

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(PAGE)

    @app.get("/health", summary="Liveness and load (no API key needed)")
    async def health():
        return {"status": "ok", "models": list(state), "queued": counters.queued, "in_flight": counters.in_flight,
                "passes": counters.passes, "served": counters.served}

    @app.get("/v1/models", summary="The served runs: task, labels, maximum length, threshold")
    async def models():
        return {"models": [{"name": name, **b.run.describe()} for name, b in state.items()]}

    @app.post("/v1/classify", response_model=schemas["ClassifyResponse"],
              summary="Label texts or text pairs with a fine-tuned classification run")
    async def classify(body: schemas["ClassifyRequest"]):
        batcher = pick(body.model, "/v1/classify")
        if (body.texts is None) == (body.pairs is None):
            raise RequestError(422, "give exactly one of texts (a list of strings) or pairs (a list of [a, b])", "texts")
        if body.texts is not None:
            _check_texts("texts", body.texts, settings)
            answers = await answer_with(batcher, inference.prepare_texts, body.texts)
        else:
            _check_texts("pairs", body.pairs, settings)
            answers = await answer_with(batcher, inference.prepare_texts, [a for a, _ in body.pairs],
                                        [b for _, b in body.pairs])
        return JSONResponse({"model": batcher.name, "predictions": answers})

    @app.post("/v1/answer", response_model=schemas["AnswerResponse"] | schemas["AnswersResponse"],
              summary="Answer questions from contexts with a fine-tuned SQuAD run")
    async def answer(body: schemas["AnswerRequest"]):
        batcher = pick(body.model, "/v1/answer")
        one = body.questions is None
        if one and (body.question is None or body.context is None):
            raise RequestError(422, "give question and context, or questions: [{question, context}, ...]",
                               "question" if body.question is None else "context")
        if not one and (body.question is not None or body.context is not None):
            raise RequestError(422, "give question and context, or questions, not both", "questions")
        pairs = [(body.question, body.context)] if one else [(q.question, q.context) for q in body.questions]
        _check_questions(pairs, one, settings)
        answers = await answer_with(batcher, inference.prepare_questions, pairs)
        return JSONResponse({"model": batcher.name, **answers[0]} if one else {"model": batcher.name, "answers": answers})

    @app.post("/v1/fill-mask", response_model=schemas["FillMaskResponse"],
              summary="The most probable tokens for each [MASK] of a text, with a masked-language model")
    async def fill_mask(body: schemas["FillMaskRequest"]):
        batcher = pick(body.model, "/v1/fill-mask")
        if (body.text is None) == (body.texts is None):
            raise RequestError(422, "give text (a string with [MASK]s) or texts (a list of them)",
                               "texts" if body.texts is not None else "text")
        one = body.texts is None
        texts = [body.text] if one else body.texts
        name = "text" if one else "texts"
        _check_texts(name, texts, settings)
        for i, text in enumerate(texts):
            if inference.MASK_TOKEN not in text:
                where = name if one else f"texts[{i}]"
                raise RequestError(422, f"{where} has no {inference.MASK_TOKEN}; write {inference.MASK_TOKEN} where a "
                                        f"word is to be filled in", where)
        answers = await answer_with(batcher, inference.prepare_masked, texts, body.top_k)
        return JSONResponse({"model": batcher.name, "predictions": answers[0] if one else answers})

    return app


def _check_texts(name: str, values: list, settings: ServeSettings) -> None:
    if not values:
        raise RequestError(422, f"{name} is empty; give at least one", name)
    if len(values) > settings.max_inputs:
        raise RequestError(422, f"{name} has {len(values)} entries; at most {settings.max_inputs} per request "
                                f"(--max-inputs)", name)
    for i, value in enumerate(values):
        for j, text in enumerate(value if isinstance(value, tuple) else (value,)):
            where = name if name == "text" else f"{name}[{i}]" + (f"[{j}]" if isinstance(value, tuple) else "")
            if not text.strip():
                raise RequestError(422, f"{where} is empty", where)
            if len(text) > settings.max_text_chars:
                raise RequestError(422, f"{where} has {len(text)} characters; at most {settings.max_text_chars} "
                                        f"(--max-text-chars; the model reads only its first tokens anyway)", where)


def _check_questions(pairs: list[tuple[str, str]], one: bool, settings: ServeSettings) -> None:
    if not pairs:
        raise RequestError(422, "questions is empty; give at least one", "questions")
    if len(pairs) > settings.max_inputs:
        raise RequestError(422, f"questions has {len(pairs)} entries; at most {settings.max_inputs} per request "
                                f"(--max-inputs)", "questions")
    for i, (question, context) in enumerate(pairs):
        where = "" if one else f"questions[{i}]."
        if not question.strip():
            raise RequestError(422, f"{where}question is empty", f"{where}question")
        if not context.strip():
            raise RequestError(422, f"{where}context is empty", f"{where}context")
        if len(context) > settings.max_context_chars:
            raise RequestError(422, f"{where}context has {len(context)} characters; at most "
                                    f"{settings.max_context_chars} (--max-context-chars)", f"{where}context")


def _validation_message(errors: list[dict]) -> tuple[int, str, str | None]:
    """(status, message, field) for the first problem pydantic found in a request body."""
    first = errors[0]
    loc = [part for part in first.get("loc", ()) if part != "body"]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or None
    kind = first.get("type", "")
    if kind == "json_invalid":
        return 400, f"the body is not valid JSON ({first.get('ctx', {}).get('error', 'malformed')})", None
    if where is None:
        if kind == "missing":
            return 422, "the request needs a JSON object as its body", None
        return 422, "the body must be a JSON object", None
    if kind == "extra_forbidden":
        return 422, f"unknown field {where!r}", where
    if kind == "missing":
        return 422, f"{where} is required", where
    return 422, f"{where}: {first.get('msg', 'invalid')}", where


def _schemas() -> dict:
    """The request and response bodies, as pydantic models (they also make the OpenAPI document)."""
    from pydantic import BaseModel, ConfigDict, Field

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")  # pydantic never turns a number into a string

    class ClassifyRequest(Strict):
        texts: list[str] | None = None
        pairs: list[tuple[str, str]] | None = None
        model: str | None = None

    class Prediction(BaseModel):
        label: str | None = None
        probability: float | None = None
        probabilities: dict[str, float] | None = None
        score: float | None = None  # regression runs
        truncated: bool

    class ClassifyResponse(BaseModel):
        model: str
        predictions: list[Prediction]

    class Question(Strict):
        question: str
        context: str

    class AnswerRequest(Strict):
        question: str | None = None
        context: str | None = None
        questions: list[Question] | None = None
        model: str | None = None

    class Answer(BaseModel):
        answer: str  # "" when a v2.0 run judges the question unanswerable
        score: float | None
        probability: float | None
        start: int | None  # character offsets into the context
        end: int | None
        null_odds: float
        windows: int

    class AnswerResponse(Answer):
        model: str

    class AnswersResponse(BaseModel):
        model: str
        answers: list[Answer]

    class FillMaskRequest(Strict):
        text: str | None = None
        texts: list[str] | None = None
        top_k: int = Field(5, ge=1, le=50)
        model: str | None = None

    class Candidate(BaseModel):
        token: str
        token_id: int
        probability: float

    class FillMaskResponse(BaseModel):
        model: str
        # text: one list of candidates per [MASK]; texts: such a list per text
        predictions: list[list[Candidate]] | list[list[list[Candidate]]]

    return {cls.__name__: cls for cls in (ClassifyRequest, ClassifyResponse, AnswerRequest, AnswerResponse,
                                          AnswersResponse, FillMaskRequest, FillMaskResponse)}


class Guard:
    """ASGI middleware in front of every route: the bearer token, the JSON content type, the body size.

    The body is read here, up to the limit, before any route sees it; a larger one is refused
    with 413 without reading the rest.
    """

    def __init__(self, app, settings: ServeSettings):
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = self.settings.api_key
        if key is not None and scope["path"] not in PUBLIC_PATHS:
            given = headers.get("authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
                return await _send_json(send, 401, error_body(
                    401, "this server needs an API key: send the header Authorization: Bearer KEY",
                    "Authorization", "unauthorized"), {"WWW-Authenticate": "Bearer"})
        if scope["method"] != "POST":
            return await self.app(scope, receive, send)
        content_type = headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if content_type != "application/json":
            return await _send_json(send, 415, error_body(
                415, f"send the body as application/json, not {content_type}", "Content-Type", "unsupported_media_type"))
        limit = self.settings.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await _send_json(send, 413, _too_large(limit))
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                return await _send_json(send, 413, _too_large(limit))
            if not message.get("more_body"):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def _too_large(limit: int) -> dict:
    return error_body(413, f"the body is larger than {limit} bytes (--max-body-bytes)", None, "too_large")


async def _send_json(send, status: int, body: dict, headers: dict | None = None) -> None:
    payload = json.dumps(body, separators=(",", ":")).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


def _version() -> str:
    from . import __version__

    return __version__


# ---- running ------------------------------------------------------------------------------------

def with_key_from_environment(settings: ServeSettings) -> ServeSettings:
    """The API key from BERTFIT_API_KEY when none was given (a key on the command line shows in `ps`)."""
    if settings.api_key is None and os.environ.get(API_KEY_ENV):
        return replace(settings, api_key=os.environ[API_KEY_ENV])
    return settings


def serve(paths: list[str], settings: ServeSettings | None = None, say=print) -> None:
    """Load the runs, listen, answer until SIGTERM or Ctrl-C, then finish what is in flight and return."""
    settings = with_key_from_environment(settings or ServeSettings())
    settings.validate()
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("bertfit serve needs FastAPI and uvicorn: pip install 'bertfit[serve]'") from None
    runs = load_runs(paths, settings)
    app = create_app(runs, settings)
    try:
        listener = socket.create_server((settings.host, settings.port), reuse_port=False)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {settings.host}:{settings.port} ({exc.strerror}); "
                          f"pick another --port") from None
    host, port = listener.getsockname()[:2]
    for name, run in runs.items():
        say(f"{name}: {run.task} ({run.head}, {run.engine}, {run.precision}) from {run.folder}")
    say(f"serving on http://{host}:{port} (page at /, API docs at /docs, "
        f"{'API key required' if settings.api_key else 'no API key'})", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=int(settings.timeout) + 5)
    server = uvicorn.Server(config)
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
        listener.close()
    say(f"stopped after {time.monotonic() - started:.0f} s", file=sys.stderr)


PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bertfit</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  label { display: block; margin: .8rem 0 .2rem; font-weight: 600; }
  textarea, input, select { width: 100%; box-sizing: border-box; font: inherit; padding: .4rem; }
  textarea { min-height: 6rem; }
  button { margin-top: 1rem; font: inherit; padding: .4rem 1.2rem; }
  #result { margin-top: 1.2rem; padding: .8rem; background: #f4f4f4; white-space: pre-wrap; }
  #result:empty { display: none; }
  mark { background: #ffe27a; }
  .error { color: #a00; }
</style>
<h1>bertfit</h1>
<p id="status">Loading the served models...</p>
<div id="key-row" hidden>
  <label for="key">API key</label>
  <input id="key" type="password" autocomplete="off">
  <button id="load" type="button">Use this key</button>
</div>
<form id="form" hidden>
  <label for="model">Model</label>
  <select id="model"></select>
  <div id="classify-fields">
    <label for="text">Sentence</label>
    <textarea id="text" placeholder="A sentence to classify"></textarea>
    <div id="pair-fields">
      <label for="pair">Second sentence (pair tasks only)</label>
      <textarea id="pair" placeholder="Leave empty for single sentences"></textarea>
    </div>
  </div>
  <div id="answer-fields" hidden>
    <label for="question">Question</label>
    <input id="question" placeholder="Who won?">
    <label for="context">Context</label>
    <textarea id="context" placeholder="The passage that holds the answer"></textarea>
  </div>
  <button id="go" type="submit">Run</button>
</form>
<div id="result"></div>
<script>
const $ = (id) => document.getElementById(id);
let models = [];
function headers() {
  const h = {"Content-Type": "application/json"};
  if ($("key").value) h["Authorization"] = "Bearer " + $("key").value;
  return h;
}
async function call(path, body) {
  const response = await fetch(path, body === undefined ? {headers: headers()}
                                     : {method: "POST", headers: headers(), body: JSON.stringify(body)});
  const data = await response.json();
  if (!response.ok) throw Object.assign(new Error(data.error ? data.error.message : response.statusText),
                                        {status: response.status});
  return data;
}
function current() { return models.find((m) => m.name === $("model").value); }
function showFields() {
  const qa = current().head === "qa", fill = current().task === "fill-mask";
  $("classify-fields").hidden = qa;
  $("answer-fields").hidden = !qa;
  $("pair-fields").hidden = fill;
  $("text").placeholder = fill ? "A sentence with [MASK] where a word is missing" : "A sentence to classify";
}
async function loadModels() {
  try {
    models = (await call("/v1/models")).models;
  } catch (error) {
    $("status").textContent = error.status === 401 ? "This server needs an API key." : error.message;
    $("key-row").hidden = error.status !== 401;
    return;
  }
  $("key-row").hidden = !$("key").value;
  $("model").replaceChildren(...models.map((m) => new Option(`${m.name} (${m.task})`, m.name)));
  $("status").textContent = `${models.length} model${models.length === 1 ? "" : "s"} served.`;
  $("form").hidden = false;
  showFields();
}
function show(nodes) { $("result").replaceChildren(...nodes); }
function text(tag, value, id) {
  const node = document.createElement(tag);
  node.textContent = value;
  if (id) node.id = id;
  return node;
}
$("model").addEventListener("change", showFields);
$("load").addEventListener("click", loadModels);
$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const model = current();
  show([text("span", "Working...")]);
  try {
    if (model.head === "qa") {
      const context = $("context").value;
      const r = await call("/v1/answer", {model: model.name, question: $("question").value, context});
      if (!r.answer) {
        show([text("strong", "No answer in this context", "answer"),
              text("span", ` (null odds ${r.null_odds.toFixed(2)})`)]);
        return;
      }
      show([text("strong", r.answer, "answer"), text("span", ` (probability ${r.probability.toFixed(3)})\n\n`),
            text("span", context.slice(0, r.start)), text("mark", context.slice(r.start, r.end)),
            text("span", context.slice(r.end))]);
    } else if (model.task === "fill-mask") {
      const r = await call("/v1/fill-mask", {model: model.name, text: $("text").value});
      show(r.predictions.flatMap((candidates, i) => [
        text("strong", `[MASK] ${i + 1}: `),
        text("span", candidates.map((c) => `${c.token} ${c.probability.toFixed(3)}`).join(", ") + `\n`)]));
    } else {
      const pair = $("pair").value.trim();
      const body = pair ? {model: model.name, pairs: [[$("text").value, pair]]}
                        : {model: model.name, texts: [$("text").value]};
      const p = (await call("/v1/classify", body)).predictions[0];
      if (p.score !== undefined && p.label === undefined) {
        show([text("strong", p.score.toFixed(3), "score"), text("span", " (score)")]);
      } else {
        show([text("strong", p.label, "label"), text("span", " probability "),
              text("span", p.probability.toFixed(3), "probability")]);
      }
    }
  } catch (error) {
    const node = text("span", error.message, "error");
    node.className = "error";
    show([node]);
  }
});
loadModels();
</script>
</html>
"""
