"""One request must not stall `bertfit serve`: each request's work is bounded, tokenizing runs apart from the
event loop and the model thread, work whose client timed out or went away is dropped, and one model's long
request does not hold the model thread from another model. And the small defects around the edges: the API
key, lone surrogates, a body past the limit sent by an ordinary client, requests after SIGTERM, precision."""
import asyncio
import http.client
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import runs  # noqa: E402
from test_serve import call, post, wait_until  # noqa: E402

from bertfit import devices, inference  # noqa: E402
from bertfit.errors import ConfigError  # noqa: E402
from bertfit.serve import Batcher, Counters, Metrics, RequestError, ServeSettings, Service  # noqa: E402

KEY = "limits-key-51d0"
AUTH = {"Authorization": f"Bearer {KEY}"}
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("limit-runs")
    return {"sentiment": runs.classification_run(root / "glue-sst2"), "reader": runs.squad_run(root / "squad-v2.0")}


@pytest.fixture(scope="module")
def loaded(run_dirs):
    return {name: inference.load_run(path, precision="fp32") for name, path in run_dirs.items()}


@pytest.fixture(scope="module")
def server(run_dirs, tmp_path_factory):
    """Small limits, and no --precision: the default, auto."""
    served = runs.Server([f"{name}={path}" for name, path in run_dirs.items()], "--api-key", KEY,
                         "--max-windows", "8", "--max-request-tokens", "250", "--max-question-chars", "60",
                         log=tmp_path_factory.mktemp("limit-log") / "server.log")
    yield served
    assert served.stop() == 0


# ---- each request's work is bounded -------------------------------------------------------------

def test_a_request_of_too_many_windows_is_refused_naming_the_limit(server):
    # 48-token windows with a 16-token stride: the passage eight times over makes more than 8 windows
    status, _, error = post(server, "/v1/answer", {"question": "Who won?", "context": runs.PASSAGE * 8}, AUTH)
    assert status == 422 and error["error"]["field"] == "context"
    assert "--max-windows" in error["error"]["message"] and "at most 8" in error["error"]["message"]
    status, _, error = post(server, "/v1/answer", {"questions": [{"question": "Who won?", "context": runs.PASSAGE}] * 6},
                            AUTH)
    assert status == 422 and error["error"]["field"] == "questions" and "--max-windows" in error["error"]["message"]
    assert post(server, "/v1/answer", {"question": "Who won?", "context": runs.PASSAGE}, AUTH)[0] == 200


def test_a_request_of_too_many_tokens_is_refused_naming_the_limit(server):
    texts = [f"review {i}: " + "a long and winding text " * 6 for i in range(8)]  # 8 sequences, 32 tokens each
    status, _, error = post(server, "/v1/classify", {"texts": texts, "model": "sentiment"}, AUTH)
    assert status == 422 and error["error"]["field"] == "texts"
    assert "--max-request-tokens" in error["error"]["message"] and "at most 250" in error["error"]["message"]


def test_a_question_past_max_question_chars_is_refused(server):
    status, _, error = post(server, "/v1/answer", {"question": "Who " * 20, "context": runs.PASSAGE}, AUTH)
    assert status == 422 and error["error"]["field"] == "question" and "--max-question-chars" in error["error"]["message"]


# ---- tokenizing apart from the event loop and the model thread ----------------------------------

def in_service(runs_by_name, settings, body):
    """Run `body(service, loop)` inside a started Service (its threads and batchers), on a fresh event loop."""

    async def main():
        service = Service(runs_by_name, settings)
        async with service.running(None):
            return await body(service)

    return asyncio.run(main())


class Scope:
    """What `Service.answer` reads of a request: its ASGI scope."""

    def __init__(self, disconnected=None):
        self.scope = {} if disconnected is None else {"bertfit.disconnected": disconnected}


def test_requests_are_tokenized_off_the_event_loop_and_off_the_model_thread(loaded):
    threads = []

    def prepare(run, texts):
        threads.append(threading.current_thread().name)
        return inference.prepare_texts(run, texts)

    async def body(service):
        loop_thread = threading.current_thread().name
        answers = await service.answer(Scope(), service.batchers["sentiment"], "texts", prepare, ["a fine film"])
        return loop_thread, answers

    loop_thread, answers = in_service({"sentiment": loaded["sentiment"]}, ServeSettings(), body)
    assert answers == inference.classify(loaded["sentiment"], ["a fine film"])
    assert len(threads) == 1 and threads[0] != loop_thread and threads[0].startswith("bertfit-prepare")


def test_the_time_a_request_waits_to_be_tokenized_counts_against_its_timeout(loaded):
    release = threading.Event()

    def slow(run, texts):  # a tokenizer thread held up: the request waits before the queue
        release.wait(10)
        return inference.prepare_texts(run, texts)

    async def body(service):
        try:
            with pytest.raises(RequestError) as late:
                await service.answer(Scope(), service.batchers["sentiment"], "texts", slow, ["a fine film"])
        finally:
            release.set()
        return late.value

    late = in_service({"sentiment": loaded["sentiment"]}, ServeSettings(timeout=0.5), body)
    assert late.status == 504 and "tokenizing" in late.message


# ---- dropped work, and models taking turns ------------------------------------------------------

def batcher_for(run, worker, metrics=None, **settings):
    return Batcher("m", run, ServeSettings(**settings), Counters(), metrics or Metrics(), worker, worker)


def test_a_request_whose_client_went_away_is_dropped_before_it_runs(loaded):
    sentiment = loaded["sentiment"]

    async def main():
        metrics = Metrics()
        with ThreadPoolExecutor(1) as worker:
            batcher = batcher_for(sentiment, worker, metrics)
            gone = asyncio.Event()
            job = batcher.submit(inference.prepare_texts(sentiment, ["nobody waits for this"]))
            gone.set()  # the client closed its connection before the batcher started
            with pytest.raises(RequestError) as closed:
                await batcher.result(job, disconnected=gone)
            task = asyncio.create_task(batcher.serve_forever())
            answers = await batcher.result(batcher.submit(inference.prepare_texts(sentiment, ["on time"])))
            task.cancel()
        return closed.value, batcher.counters, answers, metrics

    closed, counters, answers, metrics = asyncio.run(main())
    assert closed.status == 499 and counters.queued == 0
    assert counters.passes == 1 and len(answers) == 1  # the one pass, for the request still waited for
    assert metrics.dropped.labels("m", "disconnected")._value.get() == 1


def test_a_timed_out_request_runs_none_of_its_remaining_passes(loaded):
    sentiment = loaded["sentiment"]
    texts = [f"review number {i} was good" for i in range(12)]

    async def main():
        with ThreadPoolExecutor(1) as worker:
            batcher = batcher_for(sentiment, worker, max_batch_tokens=1)  # one sequence a pass
            job = batcher.submit(inference.prepare_texts(sentiment, texts))
            task = asyncio.create_task(batcher.serve_forever())
            while batcher.counters.passes < 1:
                await asyncio.sleep(0.001)
            with pytest.raises(RequestError) as late:
                await batcher.result(job, deadline=asyncio.get_running_loop().time())  # its time is up now
            ran = batcher.counters.passes
            # the batcher goes idle: one more request gets one pass, right after whatever pass was running
            answers = await batcher.result(batcher.submit(inference.prepare_texts(sentiment, ["after"])))
            task.cancel()
        return late.value, ran, batcher.counters.passes, answers

    late, ran, passes, answers = asyncio.run(main())
    assert late.status == 504 and len(answers) == 1
    assert passes <= ran + 2 < len(texts)  # the one in flight when it timed out, and the one of "after"


def test_one_models_long_request_does_not_hold_the_model_thread_from_another(loaded):
    sentiment, reader = loaded["sentiment"], loaded["reader"]
    finished = []

    async def main():
        with ThreadPoolExecutor(1) as worker:  # the one model thread, shared
            counters, metrics = Counters(), Metrics()
            long = Batcher("long", reader, ServeSettings(max_batch_tokens=48), counters, metrics, worker, worker)
            short = Batcher("short", sentiment, ServeSettings(max_batch_tokens=48), counters, metrics, worker, worker)
            big = long.submit(inference.prepare_questions(reader, [("Who won?", runs.PASSAGE * 3)]))
            small = short.submit(inference.prepare_texts(sentiment, ["a fine film"]))
            tasks = [asyncio.create_task(b.serve_forever()) for b in (long, short)]

            async def wait(batcher, job, name):
                await batcher.result(job)
                finished.append(name)

            await asyncio.gather(wait(long, big, "long"), wait(short, small, "short"))
            for task in tasks:
                task.cancel()
        return big

    big = asyncio.run(main())
    assert len(big.prepared.features) > 4  # the long request needs several passes of 48 tokens
    assert finished == ["short", "long"]


def test_a_long_request_over_several_passes_gets_the_answers_of_one(loaded):
    reader = loaded["reader"]
    pairs = [("Who won Super Bowl 50?", runs.PASSAGE), ("Where was the game?", runs.PASSAGE * 2)]

    async def main():
        with ThreadPoolExecutor(1) as worker:
            batcher = batcher_for(reader, worker, max_batch_tokens=100)
            job = batcher.submit(inference.prepare_questions(reader, pairs))
            task = asyncio.create_task(batcher.serve_forever())
            answers = await batcher.result(job)
            task.cancel()
        return answers, batcher.counters.passes

    answers, passes = asyncio.run(main())
    assert passes > 2
    assert answers == inference.answer(reader, pairs)


def test_a_client_that_closes_its_connection_has_its_request_dropped_unrun(run_dirs, loaded, tmp_path):
    alone = ["a fine film, and a long one"]
    tokens = inference.prepare_texts(loaded["sentiment"], alone).num_tokens
    # a request waits for company until the pass is full: exactly `alone`'s tokens
    served = runs.Server([str(run_dirs["sentiment"])], "--precision", "fp32", "--max-wait-ms", "600000",
                         "--max-batch-tokens", str(tokens), log=tmp_path / "log")
    try:
        body = json.dumps({"texts": ["gone before its answer"]}).encode()
        with socket.create_connection((served.host, served.port), timeout=30) as sock:
            sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        wait_until(lambda: b'reason="disconnected"} 1.0' in metrics_text(served), "the request dropped")
        wait_until(lambda: b'bertfit_requests_total{method="POST",route="/v1/classify",status="499"} 1.0'
                   in metrics_text(served), "the request counted as 499")
        status, _, answer = post(served, "/v1/classify", {"texts": alone}, headers={})
        assert status == 200 and len(answer["predictions"]) == 1
        assert f'bertfit_tokens_total{{model="glue-sst2"}} {float(tokens)}'.encode() in metrics_text(served)
    finally:
        assert served.stop() == 0


def metrics_text(server) -> bytes:
    with urllib.request.urlopen(f"http://{server.host}:{server.port}/metrics", timeout=30) as response:
        return response.read()


# ---- the edges ----------------------------------------------------------------------------------

def test_an_api_key_that_is_not_printable_ascii_is_refused_at_start():
    for key in ("clé-secrète", "key with spaces", "tab\there"):
        with pytest.raises(ConfigError, match="printable ASCII"):
            ServeSettings(api_key=key).validate()
    ServeSettings(api_key="Ab9-._~+/=!").validate()


SERVE_AND_STOP = """
import os, signal, sys, torch
from bertfit.serve import serve
from bertfit.serve_settings import ServeSettings

mine = lambda number, frame: None
for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, mine)
torch.set_num_threads(2)

def say(text, **more):
    print(text, **more)
    if text.startswith("serving on"):
        os.kill(os.getpid(), signal.SIGTERM)  # a clean stop, from inside, once the server listens

serve([sys.argv[1]], ServeSettings(port=0, precision="fp32"), say=say)
print("after:", signal.getsignal(signal.SIGTERM) is mine, signal.getsignal(signal.SIGINT) is mine,
      torch.get_num_threads())
"""


def test_serve_called_from_python_gives_back_the_signal_handlers_and_threads_it_found(run_dirs):
    """reliability.md: a library call leaves the process as it found it (signals, threads)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", SERVE_AND_STOP, str(run_dirs["sentiment"])], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "after: True True 2", done.stdout


def test_a_lone_surrogate_is_a_422_naming_the_field(server):
    for raw, field in [(b'{"texts": ["fine", "\\ud800"], "model": "sentiment"}', "texts[1]"),
                       (b'{"question": "Who?\\udfff", "context": "Ann won."}', "question"),
                       (b'{"inputs": "\\ud800 a film"}', "inputs")]:
        path = "/models/sentiment" if b"inputs" in raw else ("/v1/answer" if b"question" in raw else "/v1/classify")
        status, _, error = post(server, path, None, AUTH, raw=raw)
        assert status == 422 and error["error"]["field"] == field, error
        assert "surrogate" in error["error"]["message"]
    status, _, error = post(server, "/v1/classify", None, AUTH, raw=b'{"\\ud800": 1}')
    assert status == 422 and "surrogate" in error["error"]["message"]


def test_a_body_past_the_limit_sent_by_urllib_gets_the_413_json(server):
    body = json.dumps({"texts": ["word " * 1000] * 2000, "model": "sentiment"}).encode()
    assert len(body) > 10_000_000
    request = urllib.request.Request(f"http://{server.host}:{server.port}/v1/classify", data=body,
                                     headers={"Content-Type": "application/json", **AUTH})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=120)
    assert refused.value.code == 413
    error = json.loads(refused.value.read())
    assert error["error"]["type"] == "too_large" and "--max-body-bytes" in error["error"]["message"]
    assert call(server, "GET", "/health")[0] == 200


def test_a_body_past_the_limit_announced_with_expect_100_continue_gets_413_before_it_is_sent(server):
    with socket.create_connection((server.host, server.port), timeout=60) as sock:
        sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer %s\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"
                     % (KEY.encode(), 2 << 20))  # and no body: the client waits for the go-ahead
        status, headers, answer = response_of(sock)
    assert status == 413 and answer["error"]["type"] == "too_large" and headers["Connection"] == "close"


def test_the_start_line_and_models_name_the_precision_auto_resolved_to(server):
    import torch

    resolved = {torch.float32: "fp32", torch.bfloat16: "bf16"}[devices.resolve_precision("auto", torch.device("cpu"))]
    started = [line for line in server.lines if line.startswith("sentiment:")]
    assert started and f"torch, {resolved} from --precision auto)" in started[0]
    _, _, body = call(server, "GET", "/v1/models", headers=AUTH)
    assert {m["precision"] for m in body["models"]} == {resolved}


def test_models_say_whether_a_classifier_reads_pairs(server):
    _, _, body = call(server, "GET", "/v1/models", headers=AUTH)
    assert {m["name"]: m.get("pairs") for m in body["models"]} == {"sentiment": False, "reader": None}


def test_after_sigterm_new_requests_get_503_until_the_last_one_in_flight_is_answered(run_dirs, tmp_path):
    served = runs.Server([str(run_dirs["sentiment"])], "--precision", "fp32", log=tmp_path / "log")
    kept = http.client.HTTPConnection(served.host, served.port, timeout=60)
    try:
        kept.request("GET", "/health")
        assert kept.getresponse().read()  # the connection is open, and kept alive
        body = json.dumps({"texts": ["a fine film"]}).encode()
        held = half_sent(served, body)  # begun before the signal: in flight until the rest of its body comes
        wait_until(lambda: call(served, "GET", "/health")[2]["in_flight"] == 1, "the request in flight")
        os.kill(served.process.pid, signal.SIGTERM)
        wait_until(lambda: call(served, "GET", "/health")[0] == 503, "the signal handled")  # fresh connections
        time.sleep(0.5)  # past uvicorn's next tick (every 0.1 s), where its own stop would close the listener
        for connection in (kept, None):  # a kept-alive connection, then a new one: 503, never a closed connection
            status, headers, answer = one_request(served, connection, "POST", "/v1/classify", body)
            assert status == 503 and answer["error"]["type"] == "shutting_down", answer
            assert headers["Connection"] == "close"
        status, headers, answer = call(served, "GET", "/health")
        assert status == 503 and answer["error"]["type"] == "shutting_down"
        held.sendall(body[len(body) // 2:])
        status, headers, answer = response_of(held)
        assert status == 200 and len(answer["predictions"]) == 1 and headers["Connection"] == "close"
    finally:
        kept.close()
        if served.process.poll() is None:  # a failure above never leaves the server running
            served.stop()
    assert served.process.wait(60) == 0
    with pytest.raises(ConnectionRefusedError):  # the last answer given, the server stopped listening
        socket.create_connection((served.host, served.port), timeout=10).close()


def test_sigterm_with_nothing_in_flight_stops_at_once_and_idle_connections_are_closed(run_dirs, tmp_path):
    served = runs.Server([str(run_dirs["sentiment"])], "--precision", "fp32", log=tmp_path / "log")
    kept = http.client.HTTPConnection(served.host, served.port, timeout=60)
    try:
        kept.request("GET", "/health")
        assert kept.getresponse().read()
        os.kill(served.process.pid, signal.SIGTERM)
        assert served.process.wait(60) == 0
        with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):  # closed by the server, unanswered
            kept.request("GET", "/health")
            kept.getresponse()
    finally:
        kept.close()
        if served.process.poll() is None:
            served.stop()


# ---- a body that is slow to come ----------------------------------------------------------------

def half_sent(server, body: bytes, path: str = "/v1/classify") -> socket.socket:
    """A connection that sent a POST's headers and the first half of its body, and holds the rest."""
    sock = socket.create_connection((server.host, server.port), timeout=60)
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (path.encode(), len(body), body[:len(body) // 2]))
    return sock


def response_of(sock: socket.socket):
    """(status, headers, JSON body) of the answer on a raw connection."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    data = response.read()
    return response.status, response.headers, json.loads(data) if data else None


def one_request(server, connection, method: str, path: str, body: bytes | None):
    """One request on `connection` (a new one when None); what the server answered."""
    connection = connection or http.client.HTTPConnection(server.host, server.port, timeout=60)
    connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    data = response.read()
    return response.status, response.headers, json.loads(data) if data else None


def test_a_body_that_stops_halfway_counts_against_max_queue_and_gets_408_at_the_timeout(run_dirs, tmp_path):
    served = runs.Server([str(run_dirs["sentiment"])], "--precision", "fp32", "--timeout", "2", "--max-queue", "3",
                         log=tmp_path / "log")
    body = json.dumps({"texts": ["a body sent by half"]}).encode()
    try:
        held = [half_sent(served, body) for _ in range(3)]
        wait_until(lambda: call(served, "GET", "/health")[2]["in_flight"] == 3, "three bodies in flight", limit=30)
        status, headers, answer = post(served, "/v1/classify", {"texts": ["one too many"]}, headers={})
        assert status == 503 and answer["error"]["type"] == "overloaded" and headers["Retry-After"] == "1"
        for sock in held:
            with sock:
                status, headers, answer = response_of(sock)  # sent when --timeout ran out
                assert status == 408 and answer["error"]["type"] == "timeout", answer
                assert "--timeout" in answer["error"]["message"] and headers["Connection"] == "close"
                assert sock.recv(1) == b""  # and closed
        assert call(served, "GET", "/health")[2]["in_flight"] == 0
        status, _, answer = post(served, "/v1/classify", {"texts": ["sent whole"]}, headers={})
        assert status == 200 and len(answer["predictions"]) == 1
        assert b'bertfit_request_errors_total{route="/v1/classify",status="408",type="timeout"} 3.0' in \
            metrics_text(served)
    finally:
        assert served.stop() == 0


def test_a_body_past_the_limit_that_stops_arriving_gets_408_not_a_hang(run_dirs, tmp_path):
    served = runs.Server([str(run_dirs["sentiment"])], "--precision", "fp32", "--timeout", "2",
                         "--max-body-bytes", "100", log=tmp_path / "log")
    body = json.dumps({"texts": ["word " * 100]}).encode()  # its first half is past the limit already
    try:
        with half_sent(served, body) as sock:
            status, _, answer = response_of(sock)
        assert status == 408 and answer["error"]["type"] == "timeout"
        assert call(served, "GET", "/health")[2]["in_flight"] == 0
    finally:
        assert served.stop() == 0


def test_a_connection_that_does_not_send_its_headers_whole_is_closed_at_the_timeout(run_dirs, tmp_path):
    served = runs.Server([str(run_dirs["sentiment"])], "--precision", "fp32", "--timeout", "2", log=tmp_path / "log")
    try:
        silent = socket.create_connection((served.host, served.port), timeout=60)
        partial = socket.create_connection((served.host, served.port), timeout=60)
        partial.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: test\r\nContent-")
        kept = http.client.HTTPConnection(served.host, served.port, timeout=60)
        for _ in range(2):  # answered, a kept-alive connection has the time again for its next request
            status, _, _ = one_request(served, kept, "GET", "/health", None)
            assert status == 200
        kept.sock.sendall(b"GET /health HTTP/1.1\r\nHo")
        for sock in (silent, partial, kept.sock):
            with sock:
                assert sock.recv(1) == b""  # closed by the server, not by the 60 s of the socket's own timeout
        assert call(served, "GET", "/health")[0] == 200
    finally:
        assert served.stop() == 0


def test_serves_on_ipv6_loopback(run_dirs, tmp_path):
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    served = runs.Server([str(run_dirs["sentiment"])], "--precision", "fp32", "--host", "::1", log=tmp_path / "log")
    try:
        assert served.host == "::1" and any(f"serving on http://[::1]:{served.port}" in line for line in served.lines)
        status, _, answer = post(served, "/v1/classify", {"texts": ["a fine film"]}, headers={})
        assert status == 200 and len(answer["predictions"]) == 1
    finally:
        assert served.stop() == 0


def test_top_k_beyond_a_small_vocabulary_is_refused_naming_the_field_each_route_reads():
    from types import SimpleNamespace

    from tokenizers import Tokenizer, models

    from bertfit.serve.routes import check_top_k

    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "film"])}
    run = SimpleNamespace(tokenizer=Tokenizer(models.WordPiece(vocab, unk_token="[UNK]")))
    check_top_k(run, 7, "top_k")  # every token of the vocabulary
    for field in ("top_k", "parameters.top_k"):
        with pytest.raises(RequestError) as refused:
            check_top_k(run, 8, field)
        assert refused.value.status == 422 and refused.value.field == field and "7 tokens" in refused.value.message
