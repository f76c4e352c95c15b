"""The queue and the dynamic batching: requests already encoded (`inference.Prepared`) wait per model, and each
model pass takes the oldest waiting sequences up to --max-batch-tokens, from one request or many.

A request larger than a pass runs over several passes, and each model has at most one pass waiting for the
one model thread, which takes them first come, first served: models take turns, so one model's long request
never holds the thread from another's. A request whose client timed out or went away is dropped from the queue,
and what it had not yet run never runs. Nothing here reads JSON or knows a route.
"""
from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .. import inference
from ..batching import Features
from ..serve_settings import ServeSettings
from .errors import RequestError
from .metrics import Metrics

log = logging.getLogger("bertfit.serve")


@dataclass(eq=False)  # a job is itself: found in the queue by identity
class Job:
    """One request's sequences on their way through the model."""

    prepared: inference.Prepared
    future: asyncio.Future
    arrived: float
    sent: int = 0  # sequences given to passes so far
    outputs: list = field(default_factory=list)  # the model's outputs so far, in order
    dropped: str | None = None  # why it was dropped: "timeout" or "disconnected"

    @property
    def waiting_tokens(self) -> int:
        offsets = self.prepared.features.offsets
        return int(offsets[-1] - offsets[self.sent])


@dataclass
class Counters:
    queued: int = 0  # requests with sequences waiting for a pass, every model together
    in_flight: int = 0  # POST requests from their headers to their answer, bodies arriving included (the guard)
    passes: int = 0
    served: int = 0


def rows(features: Features, start: int, stop: int) -> Features:
    """Sequences start..stop-1 of `features`, as views."""
    first, last = features.offsets[start], features.offsets[stop]
    return Features(features.ids[first:last], features.type_ids[first:last], features.offsets[start : stop + 1] - first,
                    {name: column[start:stop] for name, column in features.columns.items()})


class Batcher:
    """One model's queue. `model_thread` is shared by every model; `finishing` turns outputs into answers
    (decoding spans, softmax) off the event loop and off the model thread."""

    def __init__(self, name: str, run: inference.Run, settings: ServeSettings, counters: Counters, metrics: Metrics,
                 model_thread: ThreadPoolExecutor, finishing: ThreadPoolExecutor):
        self.name, self.run, self.settings, self.counters, self.metrics = name, run, settings, counters, metrics
        self.model_thread, self.finishing = model_thread, finishing
        self.pending: deque[Job] = deque()
        self.pending_tokens = 0
        self.arrival = asyncio.Event()
        self.finishers: set[asyncio.Task] = set()

    def submit(self, prepared: inference.Prepared) -> Job:
        if self.counters.queued >= self.settings.max_queue:
            raise RequestError(503, f"the server is busy ({self.counters.queued} requests waiting); retry shortly",
                               kind="overloaded", headers={"Retry-After": "1"})
        loop = asyncio.get_running_loop()
        job = Job(prepared, loop.create_future(), loop.time())
        self.pending.append(job)
        self.pending_tokens += job.waiting_tokens
        self.counters.queued += 1
        self.arrival.set()
        return job

    async def result(self, job: Job, deadline: float | None = None,
                     disconnected: asyncio.Event | None = None) -> list[dict]:
        """The answers of `job`; 504 past `deadline` (loop time; default --timeout from its arrival), and the job
        dropped then, or when `disconnected` is set (the client went away)."""
        loop = asyncio.get_running_loop()
        deadline = job.arrived + self.settings.timeout if deadline is None else deadline
        watch = asyncio.ensure_future(disconnected.wait()) if disconnected is not None else None
        try:
            waits = [job.future] if watch is None else [job.future, watch]
            await asyncio.wait(waits, timeout=max(0.0, deadline - loop.time()), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if watch is not None:
                watch.cancel()
        if job.future.done():
            return job.future.result()
        if disconnected is not None and disconnected.is_set():
            self.drop(job, "disconnected")
            raise RequestError(499, "the client closed the connection", kind="client_closed")
        self.drop(job, "timeout")
        raise RequestError(504, f"no answer within {self.settings.timeout:g} s (--timeout); the server is "
                                f"overloaded or the request is very large", kind="timeout")

    def drop(self, job: Job, reason: str) -> None:
        """Forget `job`: what it has not run never runs."""
        if job.dropped or job.future.done():
            return
        job.dropped = reason
        self.metrics.dropped.labels(self.name, reason).inc()
        if job in self.pending:
            self.pending.remove(job)
            self.pending_tokens -= job.waiting_tokens
            self.counters.queued -= 1
            self.arrival.set()  # the oldest request may have changed

    async def serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self.settings.max_wait_ms / 1000
        while True:
            # the oldest request waits at most max_wait for company; a full budget goes at once
            while not self.pending or (self.pending_tokens < self.settings.max_batch_tokens
                                       and loop.time() < self.pending[0].arrived + wait):
                self.arrival.clear()
                try:
                    timeout = self.pending[0].arrived + wait - loop.time() if self.pending else None
                    await asyncio.wait_for(self.arrival.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
            segments = self._take()
            if segments:
                await self._run(segments)

    def _take(self) -> list[tuple[Job, int, int]]:
        """(job, first, stop) sequence ranges, oldest first, up to the token budget; the first sequence always goes."""
        segments, tokens, budget = [], 0, self.settings.max_batch_tokens
        now = asyncio.get_running_loop().time()
        while self.pending and tokens < budget:
            job = self.pending[0]
            lengths = job.prepared.features.lengths
            start = stop = job.sent
            while stop < len(lengths) and (tokens == 0 or tokens + lengths[stop] <= budget):
                tokens += int(lengths[stop])
                stop += 1
            if stop == start and len(lengths):
                break  # the next sequence does not fit; it opens the next pass
            if start == 0:
                self.metrics.queue_seconds.labels(self.name).observe(now - job.arrived)
            self.pending_tokens -= job.waiting_tokens
            job.sent = stop
            self.pending_tokens += job.waiting_tokens
            segments.append((job, start, stop))
            if stop < len(lengths):
                break  # the budget is spent inside this request
            self.pending.popleft()
            self.counters.queued -= 1
        return segments

    async def _run(self, segments: list[tuple[Job, int, int]]) -> None:
        loop = asyncio.get_running_loop()
        parts = [rows(job.prepared.features, start, stop) for job, start, stop in segments]
        features = inference.join(parts)
        self.counters.passes += 1
        started = time.perf_counter()
        try:
            # fill-mask: the pass keeps as many candidates per [MASK] as its most demanding request asks for
            top_k = max(job.prepared.top_k for job, _, _ in segments)
            outputs = await loop.run_in_executor(self.model_thread, inference.run_model, self.run, features,
                                                 self.settings.batch_size, top_k)
        except Exception:
            log.error("a model pass of %s failed:\n%s", self.name, traceback.format_exc())
            for job, _, _ in segments:
                self._fail(job)
            return
        self.metrics.model_pass(self.name, len({id(job) for job, _, _ in segments}), len(features),
                                int(features.offsets[-1]), time.perf_counter() - started)
        at = 0
        for job, start, stop in segments:
            job.outputs.extend(outputs[at : at + stop - start])
            at += stop - start
            if job.sent == len(job.prepared.features) and not job.dropped and job not in self.pending:
                task = asyncio.ensure_future(self._finish(job))
                self.finishers.add(task)
                task.add_done_callback(self.finishers.discard)

    async def _finish(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        try:
            answers = await loop.run_in_executor(self.finishing, inference.finish, self.run, job.prepared, job.outputs)
        except Exception:
            log.error("reading the answers of %s failed:\n%s", self.name, traceback.format_exc())
            self._fail(job)
            return
        if not job.future.done():
            job.future.set_result(answers)

    def _fail(self, job: Job) -> None:
        if job.dropped:
            return  # nobody waits for it
        if job in self.pending:
            self.drop(job, "failed")
        if not job.future.done():
            job.future.set_exception(RequestError(500, "the model failed on this request", kind="internal"))
