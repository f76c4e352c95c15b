"""GET /metrics in the Prometheus text format, as Text Embeddings Inference exposes: requests and errors by
route and status, latency, pass sizes, queue depth, tokens. Every server keeps its own registry, so serving
leaves prometheus_client's global one as it was."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 65536)
CONTENT_TYPE = CONTENT_TYPE_LATEST


HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"}


class Metrics:
    def __init__(self):
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("bertfit_requests", "HTTP requests answered, by route and status",
                                ["route", "method", "status"], registry=registry)
        self.errors = Counter("bertfit_request_errors", "HTTP requests answered with a 4xx or 5xx, by route, "
                              "status and error type", ["route", "status", "type"], registry=registry)
        self.latency = Histogram("bertfit_request_duration_seconds", "Time from the request to the end of its "
                                 "answer", ["route"], buckets=LATENCY_BUCKETS, registry=registry)
        self.pass_requests = Histogram("bertfit_batch_requests", "Requests sharing one model pass", ["model"],
                                       buckets=SIZE_BUCKETS, registry=registry)
        self.pass_sequences = Histogram("bertfit_batch_sequences", "Sequences (texts, windows) in one model pass",
                                        ["model"], buckets=SIZE_BUCKETS, registry=registry)
        self.pass_tokens = Histogram("bertfit_batch_tokens", "Tokens in one model pass", ["model"],
                                     buckets=TOKEN_BUCKETS, registry=registry)
        self.pass_seconds = Histogram("bertfit_batch_duration_seconds", "Time of one model pass", ["model"],
                                      buckets=LATENCY_BUCKETS, registry=registry)
        self.tokens = Counter("bertfit_tokens", "Tokens the model read", ["model"], registry=registry)
        self.queue_seconds = Histogram("bertfit_queue_duration_seconds", "Time from a request's arrival in the queue "
                                       "to its first model pass", ["model"], buckets=LATENCY_BUCKETS, registry=registry)
        self.dropped = Counter("bertfit_requests_dropped", "Queued requests dropped before the model finished them, "
                               "by reason (timeout, disconnected)", ["model", "reason"], registry=registry)
        self.queue_depth = Gauge("bertfit_queue_depth", "Requests waiting for the model", ["model"], registry=registry)
        self.in_flight = Gauge("bertfit_requests_in_flight", "Requests being answered", registry=registry)

    def answered(self, route: str, method: str, status: int, seconds: float, kind: str | None) -> None:
        # any token parses as a method: a label per unknown one would grow the registry without bound
        method = method if method in HTTP_METHODS else "other"
        self.requests.labels(route, method, str(status)).inc()
        if status >= 400:
            self.errors.labels(route, str(status), kind or "unknown").inc()
        self.latency.labels(route).observe(seconds)

    def model_pass(self, model: str, requests: int, sequences: int, tokens: int, seconds: float) -> None:
        self.pass_requests.labels(model).observe(requests)
        self.pass_sequences.labels(model).observe(sequences)
        self.pass_tokens.labels(model).observe(tokens)
        self.pass_seconds.labels(model).observe(seconds)
        self.tokens.labels(model).inc(tokens)

    def render(self, queued: dict[str, int], in_flight: int) -> bytes:
        for model, depth in queued.items():
            self.queue_depth.labels(model).set(depth)
        self.in_flight.set(in_flight)
        return generate_latest(self.registry)
