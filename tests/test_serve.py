"""`bertfit serve` as a client sees it: a real server in a subprocess on 127.0.0.1, answers compared with the
CLI's functions, every kind of bad request, the bearer token, overload, SIGTERM with requests in flight, and
the page in a headless browser. The batcher's rules are tested in-process, where no timing is involved."""
import asyncio
import http.client
import json
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import runs  # noqa: E402
from runs import answer, classify  # noqa: E402

from bertfit import inference  # noqa: E402
from bertfit.serve import Batcher, Counters, Metrics, RequestError, ServeSettings, run_names  # noqa: E402

KEY = "test-key-3f9a"
AUTH = {"Authorization": f"Bearer {KEY}"}
TEXTS = ["A gripping, beautifully acted film.", "dull", "The plot never finds its footing, and the cast "
         "cannot save a script this thin; two hours pass like four, and the ending explains nothing at all.",
         "It is fine."]
PAIRS = [["A man is playing a guitar.", "Someone plays music."], ["Stocks fell.", "Markets rose sharply today."]]

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- a client -----------------------------------------------------------------------------------

def call(server, method: str, path: str, body=None, headers=None, raw: bytes | None = None, timeout: float = 120):
    """(status, headers, JSON body) of one request on a fresh connection."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        sent = {"Content-Type": "application/json", **(headers or {})}
        connection.request(method, path, body=payload, headers={k: v for k, v in sent.items() if v is not None})
        response = connection.getresponse()
        data = response.read()
        return response.status, response.headers, json.loads(data) if data else None  # headers: any case
    finally:
        connection.close()


def post(server, path, body, headers=AUTH, **kw):
    return call(server, "POST", path, body, headers, **kw)


def wait_until(condition, what: str, limit: float = 60):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"gave up waiting for {what}")


# ---- runs and servers ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-runs")
    return {"sentiment": runs.classification_run(root / "glue-sst2"),
            "similarity": runs.classification_run(root / "glue-stsb", labels=("score",), extra=runs.STSB_EXTRA),
            "reader": runs.squad_run(root / "squad-v2.0")}


@pytest.fixture(scope="module")
def server(run_dirs, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    served = runs.Server([f"{name}={path}" for name, path in run_dirs.items()], "--precision", "fp32",
                         "--api-key", KEY, "--max-inputs", "8", "--max-text-chars", "2000",
                         "--max-body-bytes", "50000", log=log)
    yield served
    assert served.stop() == 0


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    """A tiny sentence-embedding model, mean pooling, not normalised: a dot product of its vectors is no cosine."""
    return runs.embedding_folder(tmp_path_factory.mktemp("page-embedder") / "embedder", normalize=False)


@pytest.fixture(scope="module")
def page_server(run_dirs, embedder, tmp_path_factory):
    """The runs above and the embedding model beside them: a form of the page for each kind."""
    served = runs.Server([*(f"{name}={path}" for name, path in run_dirs.items()), f"embedder={embedder}"],
                         "--precision", "fp32", "--api-key", KEY, log=tmp_path_factory.mktemp("page-log") / "log")
    yield served
    assert served.stop() == 0


@pytest.fixture(scope="module")
def heavy_run(tmp_path_factory):
    """The embedded model: a request of 16 long texts keeps it busy for a second or so, long enough to queue
    others behind it."""
    return runs.embedded_classification_run(tmp_path_factory.mktemp("heavy") / "glue-sst2")


HEAVY_TEXTS = [f"{i}: " + " ".join(["the film was long, and its second half dragged badly"] * 12) for i in range(16)]


# ---- answers equal the CLI's --------------------------------------------------------------------

def test_served_probabilities_equal_classify_for_each_text(server, run_dirs):
    status, _, body = post(server, "/v1/classify", {"texts": TEXTS, "model": "sentiment"})
    assert status == 200 and body["model"] == "sentiment"
    assert len(body["predictions"]) == len(TEXTS)
    for text, prediction in zip(TEXTS, body["predictions"]):
        label, probability = classify(run_dirs["sentiment"], text)
        assert prediction["label"] == label
        assert prediction["probability"] == pytest.approx(probability, abs=1e-4)
        assert sum(prediction["probabilities"].values()) == pytest.approx(1, abs=1e-6)
        assert prediction["probabilities"][label] == prediction["probability"]
    # max_seq_length 32: the third text loses tokens, and says so
    assert [p["truncated"] for p in body["predictions"]] == [False, False, True, False]


def test_served_pairs_equal_classify_of_the_pair(server, run_dirs):
    status, _, body = post(server, "/v1/classify", {"pairs": PAIRS, "model": "sentiment"})
    assert status == 200
    for (a, b), prediction in zip(PAIRS, body["predictions"]):
        label, probability = classify(run_dirs["sentiment"], a, b)
        assert (prediction["label"], prediction["probability"]) == (label, pytest.approx(probability, abs=1e-4))


def test_served_regression_scores_equal_classify(server, run_dirs):
    status, _, body = post(server, "/v1/classify", {"pairs": PAIRS, "model": "similarity"})
    assert status == 200
    for (a, b), prediction in zip(PAIRS, body["predictions"]):
        name, score = classify(run_dirs["similarity"], a, b)
        assert name == "score" and set(prediction) == {"score", "truncated"}
        assert prediction["score"] == pytest.approx(score, abs=1e-4)


def test_served_answers_equal_qa_across_windows(server, run_dirs):
    questions = ["Who won Super Bowl 50?", "Where was the game played?", "What color was the theme?"]
    status, _, body = post(server, "/v1/answer", {"questions": [{"question": q, "context": runs.PASSAGE}
                                                                for q in questions]})
    assert status == 200 and body["model"] == "reader"
    for question, served in zip(questions, body["answers"]):
        expected = answer(run_dirs["reader"], question, runs.PASSAGE)
        assert served["windows"] == expected["windows"] > 1  # 48-token windows: the passage needs several
        assert served["answer"] == expected["answer"]
        assert served["null_odds"] == pytest.approx(expected["null_odds"], abs=1e-4)
        if expected["answer"]:
            assert (served["start"], served["end"]) == (expected["start"], expected["end"])
            assert runs.PASSAGE[served["start"] : served["end"]] == served["answer"]
            assert served["score"] == pytest.approx(expected["score"], abs=1e-4)


def test_one_question_gets_one_answer_object_and_the_saved_threshold_decides_empty_answers(server, run_dirs):
    question = "Who won Super Bowl 50?"
    status, _, body = post(server, "/v1/answer", {"question": question, "context": runs.PASSAGE})
    assert status == 200 and "answers" not in body
    expected = answer(run_dirs["reader"], question, runs.PASSAGE)
    assert body["answer"] == expected["answer"]
    # v2.0 at the saved threshold 0.5: the answer is "" exactly when the null odds pass it
    assert (body["answer"] == "") == (body["null_odds"] > runs.SQUAD2_EXTRA["null_threshold"])


def test_models_describes_each_run(server):
    status, _, body = call(server, "GET", "/v1/models", headers=AUTH)
    assert status == 200
    models = {m["name"]: m for m in body["models"]}
    assert models["sentiment"]["labels"] == ["negative", "positive"] and models["sentiment"]["max_seq_length"] == 32
    assert models["similarity"]["regression"] is True
    assert models["reader"]["null_threshold"] == 0.5 and models["reader"]["version"] == "2.0"
    assert {m["precision"] for m in body["models"]} == {"fp32"}


def test_openapi_document_says_what_this_server_accepts(server):
    status, _, body = call(server, "GET", "/openapi.json", headers=AUTH)
    assert status == 200
    paths = body["paths"]
    # no masked-language model, tagger or embedding model served: no /v1/fill-mask, /v1/token-classification, /embed
    # or /v1/embeddings; the classifiers rerank; one Hugging Face path per run; POST / only with one run
    assert set(paths) == {"/", "/health", "/v1/models", "/metrics", "/v1/classify", "/v1/answer", "/rerank",
                          "/models/sentiment", "/models/similarity", "/models/reader"}
    assert set(paths["/"]) == {"get"} and "text/html" in paths["/"]["get"]["responses"]["200"]["content"]
    classify = paths["/v1/classify"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert classify["properties"]["model"] == {"enum": ["sentiment", "similarity"]} and classify["required"] == ["model"]
    rerank = paths["/rerank"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert rerank["properties"]["model"] == {"enum": ["sentiment", "similarity"]} and "model" in rerank["required"]
    texts = classify["properties"]["texts"]["anyOf"][0]
    assert (texts["minItems"], texts["maxItems"], texts["items"]["maxLength"]) == (1, 8, 2000)  # the server's limits
    reader = paths["/models/reader"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    parameters = reader["properties"]["parameters"]["anyOf"][0]["properties"]
    assert parameters["doc_stride"] == {"enum": [16, None]} and parameters["function_to_apply"] == {"type": "null"}
    assert paths["/v1/answer"]["post"]["security"] == [{"bearer": []}] and "security" not in paths["/health"]["get"]


def test_concurrent_requests_each_get_their_own_answers(server):
    texts = [f"review {i}: {'good' if i % 2 else 'bad'} and {'moving' if i % 3 else 'long'}" for i in range(8)]
    with ThreadPoolExecutor(12) as pool:
        replies = list(pool.map(lambda t: post(server, "/v1/classify", {"texts": [t], "model": "sentiment"}), texts))
    _, _, alone = post(server, "/v1/classify", {"texts": texts, "model": "sentiment"})
    for (status, _, body), expected in zip(replies, alone["predictions"]):
        assert status == 200
        assert body["predictions"][0]["probability"] == pytest.approx(expected["probability"], abs=1e-5)


def test_serve_engine_onnx_answers_as_classify_does(run_dirs, tmp_path):
    pytest.importorskip("onnxruntime")
    from bertfit.export import export_onnx

    run = runs.classification_run(tmp_path / "glue-sst2")
    export_onnx(run, say=lambda *a: None)
    served = runs.Server([str(run)], "--engine", "onnx", log=tmp_path / "log")
    try:
        status, _, body = post(served, "/v1/classify", {"texts": TEXTS})
        assert call(served, "GET", "/v1/models")[2]["models"][0]["engine"] == "onnx"
    finally:
        assert served.stop() == 0
    assert status == 200
    for text, prediction in zip(TEXTS, body["predictions"]):
        label, probability = classify(run, text)
        assert (prediction["label"], prediction["probability"]) == (label, pytest.approx(probability, abs=1e-4))


# ---- bad requests -------------------------------------------------------------------------------

BAD_REQUESTS = [
    # (what, path, body or raw bytes, headers, status, field)
    ("malformed JSON", "/v1/classify", b'{"texts": ["a"', {}, 400, None),
    ("a body that is not an object", "/v1/classify", [1, 2], {}, 422, None),
    ("no body", "/v1/classify", b"", {}, 422, None),
    ("a number for a text", "/v1/classify", {"texts": ["ok", 3], "model": "sentiment"}, {}, 422, "texts[1]"),
    ("texts as one string", "/v1/classify", {"texts": "a film", "model": "sentiment"}, {}, 422, "texts"),
    ("an empty text", "/v1/classify", {"texts": ["fine", "  "], "model": "sentiment"}, {}, 422, "texts[1]"),
    ("an empty list", "/v1/classify", {"texts": [], "model": "sentiment"}, {}, 422, "texts"),
    ("a misspelt field", "/v1/classify", {"text": ["a film"]}, {}, 422, "text"),
    ("neither texts nor pairs", "/v1/classify", {"model": "sentiment"}, {}, 422, "texts"),
    ("a pair of one", "/v1/classify", {"pairs": [["only one"]], "model": "sentiment"}, {}, 422, "pairs[0][1]"),
    ("too many texts", "/v1/classify", {"texts": ["x"] * 9, "model": "sentiment"}, {}, 422, "texts"),
    ("a text too long", "/v1/classify", {"texts": ["word " * 500], "model": "sentiment"}, {}, 422, "texts[0]"),
    ("a body too large", "/v1/classify", {"texts": ["word " * 12000]}, {}, 413, None),
    ("an unknown model", "/v1/classify", {"texts": ["a"], "model": "nope"}, {}, 404, "model"),
    ("no model named where several classify", "/v1/classify", {"texts": ["a"]}, {}, 422, "model"),
    ("a QA model asked to classify", "/v1/classify", {"texts": ["a"], "model": "reader"}, {}, 422, "model"),
    ("a question without context", "/v1/answer", {"question": "Who?"}, {}, 422, "context"),
    ("an empty question", "/v1/answer", {"question": " ", "context": "Text."}, {}, 422, "question"),
    ("an empty context in a list", "/v1/answer", {"questions": [{"question": "Who?", "context": ""}]}, {}, 422,
     "questions[0].context"),
    ("a wrong content type", "/v1/classify", b"texts=a", {"Content-Type": "text/plain"}, 415, "Content-Type"),
    ("fill-mask without a masked-language model", "/v1/fill-mask", {"text": "a [MASK] film"}, {}, 404, "model"),
]


@pytest.mark.parametrize("what, path, body, headers, status, field", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_request_is_a_4xx_json_error_naming_the_field_and_the_server_answers_on(
        server, what, path, body, headers, status, field):
    raw = body if isinstance(body, bytes) else None
    got, _, error = post(server, path, None if raw is not None else body, headers={**AUTH, **headers}, raw=raw)
    assert got == status, error
    assert set(error) == {"error"} and error["error"]["status"] == status
    assert error["error"].get("field") == field
    assert "Traceback" not in error["error"]["message"]
    ok, _, body = post(server, "/v1/classify", {"texts": ["still here"], "model": "sentiment"})
    assert ok == 200 and len(body["predictions"]) == 1


def test_unknown_routes_and_methods_are_json_errors(server):
    assert call(server, "GET", "/v2/nothing", headers=AUTH)[::2] == (
        404, {"error": {"type": "not_found", "message": "no route /v2/nothing", "status": 404}})
    status, _, body = call(server, "GET", "/v1/classify", headers=AUTH)
    assert status == 405 and body["error"]["message"] == "GET is not allowed on /v1/classify"


# ---- fill-mask ----------------------------------------------------------------------------------

MASKED = ["The cat sat on the [MASK].", "Paris is the [MASK] of France, and the [MASK] is its river.",
          "A much longer sentence about the weather, which was [MASK] and wet, so nobody went out at all."]


@pytest.fixture(scope="module")
def fill_mask_dirs(run_dirs, tmp_path_factory):
    return {"filler": runs.masked_lm_run(tmp_path_factory.mktemp("serve-mlm") / "pretrain"),
            "sentiment": run_dirs["sentiment"]}


@pytest.fixture(scope="module")
def fill_mask_server(fill_mask_dirs, tmp_path_factory):
    served = runs.Server([f"{name}={path}" for name, path in fill_mask_dirs.items()], "--precision", "fp32",
                         "--max-inputs", "8", log=tmp_path_factory.mktemp("serve-mlm-log") / "server.log")
    yield served
    assert served.stop() == 0


def assert_same_fills(served: list, expected: list) -> None:
    """Per text (or mask), per candidate: the same tokens, and probabilities within float noise."""
    assert [[[c["token"], c["token_id"]] for c in m] for m in served] == \
        [[[c["token"], c["token_id"]] for c in m] for m in expected]
    for got, want in zip(served, expected):
        assert [c["probability"] for c in got] == pytest.approx([c["probability"] for c in want], abs=1e-6)


def test_served_fill_mask_equals_fill_mask_for_each_text(fill_mask_server, fill_mask_dirs):
    status, _, body = post(fill_mask_server, "/v1/fill-mask", {"texts": MASKED, "top_k": 3, "model": "filler"})
    expected = inference.fill_mask(inference.load_run(fill_mask_dirs["filler"], precision="fp32"), MASKED, top_k=3)
    assert status == 200 and body["model"] == "filler"
    assert [len(masks) for masks in body["predictions"]] == [1, 2, 1]
    for served, want in zip(body["predictions"], expected):
        assert_same_fills(served, want)
        assert all(set(c) == {"token", "token_id", "probability"} for m in served for c in m)


def test_one_text_gets_a_list_of_candidates_per_mask_from_the_only_masked_language_model(fill_mask_server, fill_mask_dirs):
    status, _, body = post(fill_mask_server, "/v1/fill-mask", {"text": MASKED[1]}, headers={})
    (expected,) = inference.fill_mask(inference.load_run(fill_mask_dirs["filler"], precision="fp32"), [MASKED[1]])
    assert status == 200 and body["model"] == "filler"  # no model named: the one that fills masks
    assert len(body["predictions"]) == 2 and all(len(m) == 5 for m in body["predictions"])  # top_k 5 by default
    assert_same_fills(body["predictions"], expected)


def test_models_describes_the_fill_mask_run(fill_mask_server):
    models = {m["name"]: m for m in call(fill_mask_server, "GET", "/v1/models")[2]["models"]}
    assert models["filler"] == {"name": "filler", "task": "fill-mask", "head": "mlm", "engine": "torch",
                                "precision": "fp32", "max_seq_length": 128, "mask_token": "[MASK]"}
    assert models["sentiment"]["task"] == "sst2"


BAD_FILL_MASK_REQUESTS = [
    # (what, path, body, status, field)
    ("a text without [MASK]", "/v1/fill-mask", {"text": "a fine film"}, 422, "text"),
    ("one of the texts without [MASK]", "/v1/fill-mask", {"texts": ["a [MASK] film", "a fine film"]}, 422, "texts[1]"),
    ("an empty text", "/v1/fill-mask", {"text": " "}, 422, "text"),
    ("an empty text in a list", "/v1/fill-mask", {"texts": ["[MASK] here", ""]}, 422, "texts[1]"),
    ("no texts at all", "/v1/fill-mask", {"texts": []}, 422, "texts"),
    ("neither text nor texts", "/v1/fill-mask", {"top_k": 3}, 422, "text"),
    ("both text and texts", "/v1/fill-mask", {"text": "a [MASK]", "texts": ["a [MASK]"]}, 422, "texts"),
    ("top_k of 0", "/v1/fill-mask", {"text": "a [MASK] film", "top_k": 0}, 422, "top_k"),
    ("top_k above 50", "/v1/fill-mask", {"text": "a [MASK] film", "top_k": 51}, 422, "top_k"),
    ("top_k as words", "/v1/fill-mask", {"text": "a [MASK] film", "top_k": "five"}, 422, "top_k"),
    ("a text too long for the model", "/v1/fill-mask", {"text": "[MASK] " + "word " * 200}, 422, "text"),
    ("one of the texts too long for the model", "/v1/fill-mask", {"texts": ["[MASK]", "[MASK] " + "word " * 200]},
     422, "texts"),
    ("too many texts", "/v1/fill-mask", {"texts": ["[MASK]"] * 9}, 422, "texts"),
    ("more [MASK]s than --max-masks", "/v1/fill-mask", {"texts": ["[MASK] " * 65] * 2}, 422, "texts"),
    ("more [MASK]s than --max-masks in the Hugging Face format", "/models/filler", {"inputs": ["[MASK] " * 65] * 2},
     422, "inputs"),
    ("a classifier asked to fill masks", "/v1/fill-mask", {"text": "a [MASK] film", "model": "sentiment"}, 422, "model"),
    ("the masked-language model asked to classify", "/v1/classify", {"texts": ["a film"], "model": "filler"}, 422,
     "model"),
]


@pytest.mark.parametrize("what, path, body, status, field", BAD_FILL_MASK_REQUESTS,
                         ids=[b[0] for b in BAD_FILL_MASK_REQUESTS])
def test_bad_fill_mask_request_is_a_4xx_json_error_naming_the_field(fill_mask_server, what, path, body, status, field):
    got, _, error = post(fill_mask_server, path, body)
    assert got == status, error
    assert set(error) == {"error"} and error["error"]["status"] == status
    assert error["error"].get("field") == field
    ok, _, answer = post(fill_mask_server, "/v1/fill-mask", {"text": "still [MASK]"})
    assert ok == 200 and len(answer["predictions"]) == 1


def test_fill_mask_routes_say_which_route_a_model_answers(fill_mask_server):
    _, _, error = post(fill_mask_server, "/v1/fill-mask", {"text": "a [MASK] film", "model": "sentiment"})
    assert "model 'sentiment' is a sst2 run; it answers /v1/classify" in error["error"]["message"]
    _, _, error = post(fill_mask_server, "/v1/classify", {"texts": ["a film"], "model": "filler"})
    assert "model 'filler' is a fill-mask run; it answers /v1/fill-mask" in error["error"]["message"]
    _, _, error = post(fill_mask_server, "/v1/fill-mask", {"text": "[MASK] " + "word " * 200})
    assert "is 203 tokens long" in error["error"]["message"]
    _, _, error = post(fill_mask_server, "/v1/fill-mask", {"texts": ["[MASK] " * 65] * 2})  # each fits the model
    assert error["error"]["message"].startswith("texts hold 130 [MASK]s; at most 128 in one request (--max-masks)")


# ---- the bearer token ---------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY},
                                     {"Authorization": f"Basic {KEY}"}], ids=["none", "wrong", "no scheme", "basic"])
def test_every_route_but_health_and_the_page_needs_the_bearer_token(server, headers):
    for method, path, body in [("POST", "/v1/classify", {"texts": ["a"], "model": "sentiment"}),
                               ("POST", "/v1/answer", {"question": "Who?", "context": "Ann."}),
                               ("GET", "/v1/models", None), ("GET", "/openapi.json", None), ("GET", "/docs", None)]:
        status, sent, error = call(server, method, path, body, headers)
        assert status == 401 and sent["WWW-Authenticate"] == "Bearer"
        assert error["error"]["type"] == "unauthorized"
    assert call(server, "GET", "/health")[0] == 200
    assert call(server, "GET", "/v1/models", headers=AUTH)[0] == 200


def test_the_key_comes_from_the_environment_unless_given(monkeypatch):
    from bertfit.serve import API_KEY_ENV, with_key_from_environment

    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert with_key_from_environment(ServeSettings()).api_key == "from-env"
    assert with_key_from_environment(ServeSettings(api_key="given")).api_key == "given"
    monkeypatch.delenv(API_KEY_ENV)
    assert with_key_from_environment(ServeSettings()).api_key is None


# ---- overload and shutdown ----------------------------------------------------------------------

def test_overload_answers_503_with_retry_after_and_the_rest_are_served(heavy_run, tmp_path):
    # one request per pass and at most two waiting: of a burst of ten, the first runs, two wait, the rest are refused
    served = runs.Server([str(heavy_run)], "--max-queue", "2", "--max-batch-tokens", "1", log=tmp_path / "log")
    try:
        for _attempt in range(3):  # a burst slower than a model pass would queue everything; try again
            with ThreadPoolExecutor(10) as pool:
                replies = list(pool.map(lambda _: post(served, "/v1/classify", {"texts": HEAVY_TEXTS}), range(10)))
            refused = [r for r in replies if r[0] == 503]
            if refused:
                break
        assert refused, [r[0] for r in replies]
        for status, headers, body in replies:
            if status == 503:
                assert headers["Retry-After"] == "1" and body["error"]["type"] == "overloaded"
            else:
                assert status == 200 and len(body["predictions"]) == len(HEAVY_TEXTS)
        assert call(served, "GET", "/health")[2]["status"] == "ok"
        assert post(served, "/v1/classify", {"texts": ["after the storm"]})[0] == 200
    finally:
        assert served.stop() == 0


def test_sigterm_answers_every_request_in_flight_then_exits_0(heavy_run, tmp_path):
    served = runs.Server([str(heavy_run)], "--max-batch-tokens", "1", log=tmp_path / "log")
    expected = inference.classify(inference.load_run(heavy_run, precision="auto"), HEAVY_TEXTS)
    with ThreadPoolExecutor(4) as pool:
        pending = [pool.submit(post, served, "/v1/classify", {"texts": HEAVY_TEXTS}) for _ in range(4)]
        wait_until(lambda: call(served, "GET", "/health")[2]["in_flight"] == 4, "4 requests in flight")
        served.process.send_signal(signal.SIGTERM)
        replies = [future.result() for future in pending]
    assert served.process.wait(60) == 0
    for status, _, body in replies:
        assert status == 200
        assert [p["label"] for p in body["predictions"]] == [p["label"] for p in expected]
        for got, want in zip(body["predictions"], expected):
            assert got["probability"] == pytest.approx(want["probability"], abs=1e-4)


# ---- the batcher, in-process --------------------------------------------------------------------

def batch_in_process(run, requests, prepare=inference.prepare_texts, **settings):
    """Submit every request before the batcher starts, then let it work: (answers, counters)."""

    async def main():
        counters = Counters()
        with ThreadPoolExecutor(1) as worker:
            batcher = Batcher("m", run, ServeSettings(**settings), counters, Metrics(), worker, worker)
            jobs = [batcher.submit(prepare(run, texts)) for texts in requests]
            task = asyncio.create_task(batcher.serve_forever())
            answers = await asyncio.gather(*(batcher.result(job) for job in jobs))
            task.cancel()
        return answers, counters

    return asyncio.run(main())


@pytest.fixture(scope="module")
def sentiment(run_dirs):
    return inference.load_run(run_dirs["sentiment"], precision="fp32")


def test_waiting_requests_share_one_pass_and_each_gets_its_own_answers(sentiment):
    requests = [[text] for text in TEXTS] + [TEXTS[:2]]
    answers, counters = batch_in_process(sentiment, requests)
    assert counters.passes == 1 and counters.queued == 0
    for texts, got in zip(requests, answers):
        want = inference.classify(sentiment, texts)
        assert [a["probability"] for a in got] == pytest.approx([w["probability"] for w in want], abs=1e-6)


def test_waiting_fill_mask_requests_share_one_pass_and_each_gets_its_own_candidates(run_dirs, tmp_path):
    filler = inference.load_run(runs.masked_lm_run(tmp_path / "pretrain"), precision="fp32")
    requests = [[text] for text in MASKED] + [MASKED[:2]]
    answers, counters = batch_in_process(filler, requests, inference.prepare_masked)
    assert counters.passes == 1 and counters.queued == 0
    for texts, got in zip(requests, answers):
        expected = inference.fill_mask(filler, texts)
        assert len(got) == len(expected) == len(texts)
        for served, want in zip(got, expected):
            assert_same_fills(served, want)


def test_fill_mask_requests_of_different_top_k_share_one_pass_and_each_gets_its_own_count(run_dirs, tmp_path):
    filler = inference.load_run(runs.masked_lm_run(tmp_path / "pretrain"), precision="fp32")
    top_ks = [2, 7, 1]
    requests = [[text] for text in MASKED]
    prepared = iter([inference.prepare_masked(filler, texts, k) for texts, k in zip(requests, top_ks)])
    answers, counters = batch_in_process(filler, requests, lambda run, texts: next(prepared))
    assert counters.passes == 1
    for texts, k, got in zip(requests, top_ks, answers):
        expected = inference.fill_mask(filler, texts, top_k=k)
        assert [len(c) for m in got for c in m] == [k] * sum(t.count("[MASK]") for t in texts)
        for served, want in zip(got, expected):
            assert_same_fills(served, want)


def test_a_pass_stops_at_the_token_budget(sentiment):
    requests = [[f"review number {i} was good"] for i in range(7)]  # the same number of tokens each
    tokens = {inference.prepare_texts(sentiment, texts).num_tokens for texts in requests}
    assert len(tokens) == 1
    _, counters = batch_in_process(sentiment, requests, max_batch_tokens=3 * tokens.pop())
    assert counters.passes == 3  # 3 + 3 + 1


def test_a_full_queue_refuses_with_503(sentiment):
    async def main():
        with ThreadPoolExecutor(1) as worker:
            batcher = Batcher("m", sentiment, ServeSettings(max_queue=2), Counters(), Metrics(), worker, worker)
            for _ in range(2):
                batcher.submit(inference.prepare_texts(sentiment, ["waiting"]))
            with pytest.raises(RequestError) as refused:
                batcher.submit(inference.prepare_texts(sentiment, ["one too many"]))
            return refused.value

    refused = asyncio.run(main())
    assert refused.status == 503 and refused.headers == {"Retry-After": "1"}


def test_a_request_that_times_out_gets_504_and_is_never_run(sentiment):
    async def main():
        counters, metrics = Counters(), Metrics()
        with ThreadPoolExecutor(1) as worker:
            batcher = Batcher("m", sentiment, ServeSettings(timeout=0.01), counters, metrics, worker, worker)
            late = batcher.submit(inference.prepare_texts(sentiment, ["too late"]))
            with pytest.raises(RequestError) as timed_out:
                await batcher.result(late)  # the batcher has not started: nothing can answer it
            task = asyncio.create_task(batcher.serve_forever())
            on_time = batcher.submit(inference.prepare_texts(sentiment, ["on time"]))
            batcher.settings.timeout = 60
            answers = await batcher.result(on_time)
            task.cancel()
        return timed_out.value, counters, answers, metrics

    timed_out, counters, answers, metrics = asyncio.run(main())
    assert timed_out.status == 504 and counters.queued == 0
    assert metrics.dropped.labels("m", "timeout")._value.get() == 1
    assert counters.passes == 1 and len(answers) == 1  # one pass, for the request still waited for


def test_runs_are_named_by_folder_or_name_equals_path(tmp_path):
    (tmp_path / "runs" / "glue-sst2" / "model").mkdir(parents=True)
    assert run_names([str(tmp_path / "runs" / "glue-sst2"), "mine=" + str(tmp_path / "x")]) == {
        "glue-sst2": str(tmp_path / "runs" / "glue-sst2"), "mine": str(tmp_path / "x")}
    assert run_names([str(tmp_path / "runs" / "glue-sst2" / "model")]) == {
        "glue-sst2": str(tmp_path / "runs" / "glue-sst2" / "model")}
    with pytest.raises(Exception, match="NAME=PATH"):
        run_names([str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run")])


def test_a_body_sends_one_text_or_a_list_of_texts_and_the_refusal_names_the_field():
    from types import SimpleNamespace

    from bertfit.serve.routes import text_or_texts

    assert text_or_texts(SimpleNamespace(text="a [MASK]", texts=None), "x") == (["a [MASK]"], "text", True)
    assert text_or_texts(SimpleNamespace(text=None, texts=["a", "b"]), "x") == (["a", "b"], "texts", False)
    for text, texts, field in [(None, None, "text"), ("a", ["a"], "texts")]:  # neither, both
        with pytest.raises(RequestError) as refused:
            text_or_texts(SimpleNamespace(text=text, texts=texts), "a string")
        assert (refused.value.status, refused.value.field) == (422, field)
        assert refused.value.message == "give text (a string) or texts (a list of them)"


# ---- the page, in a real browser ----------------------------------------------------------------

def browser():
    """Headless Chromium through selenium, or a skip where either is missing."""
    webdriver = pytest.importorskip("selenium.webdriver")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip("no chromium and chromedriver installed (Debian: apt-get install chromium chromium-driver)")
    import tempfile

    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="bertfit-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver_path), options=options), profile


def test_the_page_classifies_answers_and_compares_two_texts_in_a_browser(page_server):
    server = page_server
    driver, profile = browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    def visible(element_id):
        return WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, element_id).is_displayed()
                                               and d.find_element(By.ID, element_id))

    try:
        driver.get(f"http://{server.host}:{server.port}/")
        visible("key").send_keys(KEY)  # the server wants a key: the page asks for it
        driver.find_element(By.ID, "load").click()
        visible("form")
        Select(driver.find_element(By.ID, "model")).select_by_value("sentiment")
        driver.find_element(By.ID, "text").send_keys(TEXTS[0])
        driver.find_element(By.ID, "go").click()
        label = visible("label").text
        _, _, body = post(server, "/v1/classify", {"texts": [TEXTS[0]], "model": "sentiment"})
        assert label == body["predictions"][0]["label"]
        assert driver.find_element(By.ID, "probability").text == f"{body['predictions'][0]['probability']:.3f}"

        Select(driver.find_element(By.ID, "model")).select_by_value("reader")
        visible("question").send_keys("Who won Super Bowl 50?")
        driver.find_element(By.ID, "context").send_keys(runs.PASSAGE)
        driver.find_element(By.ID, "go").click()
        shown = visible("answer").text
        _, _, body = post(server, "/v1/answer", {"question": "Who won Super Bowl 50?", "context": runs.PASSAGE})
        assert shown == (body["answer"] or "No answer in this context")

        Select(driver.find_element(By.ID, "model")).select_by_value("embedder")
        visible("text").clear()
        driver.find_element(By.ID, "text").send_keys(PAIRS[0][0])
        visible("pair").send_keys(PAIRS[0][1])
        driver.find_element(By.ID, "go").click()
        assert float(visible("cosine").text) == pytest.approx(embed_cosine(server, *PAIRS[0]), abs=1e-4)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# ---- the page's script under Node, where there is no browser ------------------------------------

PAGE_HARNESS = r"""
// The page's script against the real server, with the little of the DOM it uses: elements by id (hidden as the
// HTML marks them), values, text, children and listeners. argv: base URL, API key, page file, steps (JSON).
const [base, key, file, stepsJson] = process.argv.slice(2);
const html = require("fs").readFileSync(file, "utf8");
const hiddenAtStart = new Set([...html.matchAll(/id="([\w-]+)"[^>]*\bhidden\b/g)].map((m) => m[1]));
const elements = {};
function element(id) {
  if (!elements[id]) elements[id] = {id, value: "", hidden: hiddenAtStart.has(id), textContent: "", placeholder: "",
    children: [], listeners: {},
    replaceChildren(...nodes) { this.children = nodes; if (id === "model") this.value = nodes[0] ? nodes[0].value : ""; },
    addEventListener(type, fn) { this.listeners[type] = fn; }};
  return elements[id];
}
global.document = {getElementById: element,
                   createElement: (tag) => ({tag, textContent: "", className: "", id: ""})};
global.Option = function (text, value) { this.text = text; this.value = value; };
let requests = 0;
const realFetch = fetch;
global.fetch = (path, options) => { requests += 1; return realFetch(base + path, options); };
element("key").value = key;
const script = html.slice(html.indexOf("<script>") + 8, html.indexOf("</script>"));
const settle = () => new Promise((resolve) => setTimeout(resolve, 50));
(async () => {
  eval(script);
  const report = [];
  for (const step of JSON.parse(stepsJson)) {
    for (let i = 0; i < 200 && elements.form && elements.form.hidden; i++) await settle();
    element("model").value = step.model;
    element("model").listeners.change();
    for (const [id, value] of Object.entries(step.fill || {})) element(id).value = value;
    const before = requests;
    if (step.submit) {
      await element("form").listeners.submit({preventDefault() {}});
      for (let i = 0; i < 200 && element("result").children.some((n) => n.textContent === "Working..."); i++) await settle();
    }
    const shown = element("result").children;
    report.push({pairHidden: element("pair-fields").hidden, requests: requests - before,
                 result: shown.map((n) => n.textContent).join(""),
                 byId: Object.fromEntries(shown.filter((n) => n.id).map((n) => [n.id, n.textContent]))});
  }
  console.log(JSON.stringify(report));
})().catch((error) => { console.error(error); process.exit(1); });
"""


def run_page(server, steps: list[dict], folder) -> list[dict]:
    """What the page shows after each step, its script run under Node against `server`."""
    import subprocess

    node = shutil.which("node")
    if not node:
        pytest.skip("no node to run the page's script")
    from bertfit.serve.app import PAGE

    harness = folder / "page.js"
    harness.write_text(PAGE_HARNESS)
    done = subprocess.run([node, str(harness), f"http://{server.host}:{server.port}", KEY, str(PAGE),
                           json.dumps(steps)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def embed_cosine(server, a: str, b: str) -> float:
    """The cosine similarity of two texts' vectors from TEI's /embed."""
    status, _, vectors = post(server, "/embed", {"inputs": [a, b], "model": "embedder", "normalize": False})
    assert status == 200
    u, v = np.array(vectors, np.float64)
    return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))


def test_the_page_offers_a_second_sentence_only_to_pair_runs_and_explains_an_empty_submit(page_server, tmp_path):
    server = page_server
    steps = [{"model": "sentiment", "submit": True, "fill": {"text": "   "}},  # single sentences; nothing written
             {"model": "similarity"},  # STS-B reads pairs
             {"model": "reader", "submit": True, "fill": {"question": "Who won?", "context": ""}},
             {"model": "sentiment", "submit": True, "fill": {"text": TEXTS[0], "pair": "left over from STS-B"}},
             # an embedding model takes a second text, but not without the first
             {"model": "embedder", "submit": True, "fill": {"text": " ", "pair": "only the second"}}]
    empty, pair, no_context, classified, embed_empty = run_page(server, steps, tmp_path)
    assert {k: empty[k] for k in ("pairHidden", "requests", "result")} == {
        "pairHidden": True, "requests": 0, "result": "Write a sentence to classify first."}
    assert pair["pairHidden"] is False
    assert no_context["requests"] == 0 and no_context["result"] == "Paste the passage that holds the answer in " \
                                                                    "Context first."
    # the hidden second-sentence box is not sent: the text is classified alone
    _, _, body = post(server, "/v1/classify", {"texts": [TEXTS[0]], "model": "sentiment"})
    assert classified["requests"] == 1 and classified["result"].startswith(body["predictions"][0]["label"])
    assert embed_empty["pairHidden"] is False
    assert (embed_empty["requests"], embed_empty["result"]) == (0, "Write a text to embed first.")


def test_the_page_shows_an_embedding_and_the_cosine_of_two_texts_as_embed_and_the_cli_give_them(
        page_server, embedder, tmp_path, capsys):
    from bertfit.cli import main

    a, b = PAIRS[0]
    one, two = run_page(page_server, [{"model": "embedder", "submit": True, "fill": {"text": a, "pair": ""}},
                                      {"model": "embedder", "submit": True, "fill": {"text": a, "pair": b}}], tmp_path)
    capsys.readouterr()
    assert main(["embed", str(embedder), a, b, "--precision", "fp32"]) == 0
    written = np.array([json.loads(line)["embedding"] for line in capsys.readouterr().out.splitlines()], np.float64)
    # one text: its length and first values, as `bertfit embed` writes them (four places)
    assert one["requests"] == 1 and one["byId"]["dimensions"] == str(written.shape[1])
    shown = one["byId"]["values"].split(", ")
    assert shown[-1] == "..." and len(shown) == 9
    assert [float(x) for x in shown[:8]] == pytest.approx(written[0, :8], abs=1e-4)
    # two texts: one request, and the cosine of the two vectors, not their dot product (the model does not normalise)
    cosine = float(written[0] @ written[1] / np.linalg.norm(written[0]) / np.linalg.norm(written[1]))
    assert abs(cosine - written[0] @ written[1]) > 1e-2
    assert two["requests"] == 1 and float(two["byId"]["cosine"]) == pytest.approx(cosine, abs=1e-4)
    assert float(two["byId"]["cosine"]) == pytest.approx(embed_cosine(page_server, a, b), abs=1e-4)


def test_the_page_ships_as_a_file_in_the_package(server):
    import tomllib
    from pathlib import Path

    from bertfit.serve.app import PAGE

    assert PAGE.is_file() and PAGE.parent.name == "static"
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "static/*" in project["tool"]["setuptools"]["package-data"]["bertfit.serve"]
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    connection.request("GET", "/")
    response = connection.getresponse()
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/html")
    assert response.read() == PAGE.read_bytes()
    connection.close()
