"""`bertfit serve`: fine-tuned runs (and masked-language models, for fill-mask) behind an HTTP API, concurrent
requests batched into shared model passes.

A thin layer over `inference`, in the layers of Text Embeddings Inference:
- `guard`: ASGI middleware before any route: shutting down, the API key, content type, body size, the
  client going away, the metrics of every answer;
- `routes` (bertfit's /v1 routes) and `hf` (the Hugging Face inference format): validate a request, name
  the field at fault, and hand its inputs to `app.Service.answer`, which tokenizes them on threads apart
  from the event loop and the model, bounds the request's work, and queues it; no route touches the model;
- `batcher`: per model, the queue and the dynamic batching of encoded sequences into passes of the one model
  thread, models taking turns; it never reads JSON;
- `schemas` (request and response bodies, and so the OpenAPI document), `errors` (the one error shape),
  `metrics` (Prometheus), `process` (listening, signals), and the page, static/page.html.
"""
try:
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401
    import prometheus_client  # noqa: F401
except ImportError as missing:
    from ..errors import ConfigError

    raise ConfigError(f"bertfit serve needs FastAPI, uvicorn and prometheus_client ({missing.name} is missing): "
                      f"pip install 'bertfit[serve]'") from None

from ..serve_settings import API_KEY_ENV, ServeSettings
from .app import Service, create_app
from .batcher import Batcher, Counters, Job
from .errors import RequestError, error_body
from .metrics import Metrics
from .process import load_runs, run_names, serve, with_key_from_environment

__all__ = ["API_KEY_ENV", "Batcher", "Counters", "Job", "Metrics", "RequestError", "ServeSettings", "Service",
           "create_app", "error_body", "load_runs", "run_names", "serve", "with_key_from_environment"]
