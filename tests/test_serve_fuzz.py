"""The layer that finds the next defects of `bertfit serve`: Schemathesis against the OpenAPI document the server
publishes (no 5xx; every status, content type and body as documented), and Hypothesis property tests of request
validation (any JSON or bytes to every route: a documented status with a JSON body, never a 500 or a hang).
Bounded in examples and time; the server listens on 127.0.0.1 only."""
import http.client
import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import runs  # noqa: E402

KEY = "fuzz-key-0b7d"
AUTH = {"Authorization": f"Bearer {KEY}"}
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-runs")
    paths = {"sentiment": runs.classification_run(root / "glue-sst2"), "reader": runs.squad_run(root / "squad-v2.0"),
             "filler": runs.masked_lm_run(root / "pretrain"), "embedder": runs.embedding_folder(root / "embedder"),
             "tagger": runs.tagger_run(root / "ner")}
    # small limits keep every generated request cheap
    served = runs.Server([f"{name}={path}" for name, path in paths.items()], "--precision", "fp32", "--api-key", KEY,
                         "--max-inputs", "4", "--max-text-chars", "400", "--max-context-chars", "800",
                         "--max-windows", "16", "--timeout", "60", log=tmp_path_factory.mktemp("fuzz-log") / "log")
    yield served
    assert served.stop() == 0


@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(f"http://{server.host}:{server.port}/openapi.json", headers=AUTH, timeout=60)


@pytest.fixture(scope="module")
def document(server):
    status, body = request(server, "GET", "/openapi.json")
    assert status == 200
    return body


CHECKS = [schemathesis.checks.not_a_server_error, schemathesis.checks.status_code_conformance,
          schemathesis.checks.content_type_conformance, schemathesis.checks.response_schema_conformance]
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]


def operations(api_schema) -> list:
    return [result.ok() for result in api_schema.get_all_operations()]


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
def test_every_route_answers_as_its_openapi_document_says(api_schema, mode):
    # schemathesis' own pytest plugin is not used: each operation runs as a plain Hypothesis test here
    tested = []
    for operation in operations(api_schema):
        if mode == schemathesis.GenerationMode.NEGATIVE and operation.method.upper() == "GET":
            continue  # no body and no parameters: nothing to get wrong

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy(mode))
        def answers_as_documented(case):
            case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=60)

        answers_as_documented()
        tested.append(f"{operation.method.upper()} {operation.path}")
    assert {"POST /v1/classify", "POST /v1/answer", "POST /v1/fill-mask", "POST /v1/token-classification",
            "POST /models/{name}", "POST /", "POST /embed", "POST /rerank", "POST /v1/embeddings"} <= set(tested)
    assert mode == schemathesis.GenerationMode.NEGATIVE or {"GET /metrics", "GET /v1/models", "GET /health"} <= set(tested)


# ---- Hypothesis: any body to every route --------------------------------------------------------

def request(server, method: str, path: str, raw: bytes | None = None, headers: dict | None = None):
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        connection.request(method, path, body=raw, headers={"Content-Type": "application/json", **AUTH,
                                                            **(headers or {})})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def documented(document: dict, path: str) -> set[int]:
    template = "/models/{name}" if path.startswith("/models/") else path
    return {int(status) for status in document["paths"][template]["post"]["responses"]}


ROUTES = ["/v1/classify", "/v1/answer", "/v1/fill-mask", "/v1/token-classification", "/models/sentiment",
          "/models/reader", "/models/filler", "/models/tagger", "/models/nobody", "/", "/embed", "/rerank",
          "/v1/embeddings", "/models/embedder"]
scalars = st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=30)
any_json = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(["texts", "pairs", "text", "question", "context", "questions", "model", "top_k", "inputs",
                     "parameters", "text_pair", "input", "query", "normalize", "truncate", "dimensions",
                     "encoding_format", "source_sentence", "sentences"]) | st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
# shapes close to the real ones, so that validation goes deeper than the first field
near_real = st.fixed_dictionaries({}, optional={
    "texts": st.lists(st.text(max_size=40), max_size=5), "pairs": st.lists(st.lists(st.text(max_size=20), max_size=3),
                                                                           max_size=3),
    "text": st.text(max_size=40) | st.just("a [MASK] film"), "top_k": st.integers(-3, 80),
    "question": st.text(max_size=30), "context": st.text(max_size=60), "model": st.sampled_from(
        ["sentiment", "reader", "filler", "embedder", "tagger", "nobody"]),
    "input": st.text(max_size=40) | st.lists(st.text(max_size=20) | st.integers(-5, 40000), max_size=3),
    "query": st.text(max_size=30), "truncate": st.booleans(), "normalize": st.booleans(),
    "dimensions": st.integers(-2, 64), "encoding_format": st.sampled_from(["float", "base64", "int8"]),
    "inputs": st.text(max_size=40) | st.lists(st.text(max_size=20), max_size=3) | st.fixed_dictionaries(
        {"question": st.text(max_size=20), "context": st.text(max_size=40)}) | st.fixed_dictionaries(
        {"source_sentence": st.text(max_size=20), "sentences": st.lists(st.text(max_size=20), max_size=3)}),
    "aggregation_strategy": st.sampled_from(["none", "simple", "first", "average", "max", "best"]),
    "parameters": st.dictionaries(st.sampled_from(["top_k", "function_to_apply", "doc_stride", "targets",
                                                   "aggregation_strategy", "ignore_labels", "stride"]),
                                  scalars, max_size=2)})


def check_answer(server, document, path: str, raw: bytes) -> None:
    status, body = request(server, "POST", path, raw)
    assert status < 500 and status in documented(document, path), (status, body)
    if status >= 400:
        assert set(body) == {"error"} and body["error"]["status"] == status
        assert {"type", "message", "status"} <= set(body["error"])


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(path=st.sampled_from(ROUTES), body=any_json | near_real)
def test_any_json_body_gets_a_documented_status_and_a_json_answer(server, document, path, body):
    check_answer(server, document, path, json.dumps(body).encode())


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(path=st.sampled_from(ROUTES), raw=st.binary(max_size=200))
def test_any_bytes_get_a_documented_status_and_a_json_answer(server, document, path, raw):
    check_answer(server, document, path, raw)


@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000, b'{"texts": ["\xff\xfe"]}', b'"\\ud800"',
                                 b'{"texts": ["a"]}' + b" " * 10, b"\x00", b'{"texts": [1e999]}'],
                         ids=["deep nesting", "invalid UTF-8", "a lone surrogate alone", "trailing spaces", "a NUL",
                              "an infinite number"])
def test_bodies_that_break_parsers_get_a_documented_4xx(server, document, raw):
    for path in ("/v1/classify", "/models/sentiment"):
        check_answer(server, document, path, raw)
