"""The layer that finds the next defects of `bertfit serve`: Schemathesis against the OpenAPI document the server
publishes, with every check and every phase (`st run URL/openapi.json --checks all`: no 5xx; every status,
header, content type and body as documented; what the document allows accepted, what it forbids refused), and
Hypothesis property tests of request validation (any JSON or bytes to every route: a documented status with a
JSON body, never a 500 or a hang). Bounded in cases and time; the server listens on 127.0.0.1 only."""
import http.client
import json
import re
import subprocess
import sys

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
    # the classifier and the embedder read 128 tokens, so that a text to embed, or a query and a text to rerank,
    # fit whole without asking for truncation
    paths = {"sentiment": runs.classification_run(root / "glue-sst2", extra={**runs.SST2_EXTRA, "max_seq_length": 128}),
             "reader": runs.squad_run(root / "squad-v2.0"), "filler": runs.masked_lm_run(root / "pretrain"),
             "embedder": runs.embedding_folder(root / "embedder", max_seq_length=128),
             "tagger": runs.tagger_run(root / "ner")}
    # Small limits keep every generated request cheap. The limits no schema can state are set out of reach, so
    # that whatever the document allows must be answered: a text of 30 characters fits the fill-mask model's and
    # the embedder's 128 tokens whole (and a query with a text, the classifier's), and 4 contexts of 200
    # characters make far fewer windows than --max-windows.
    served = runs.Server([f"{name}={path}" for name, path in paths.items()], "--precision", "fp32", "--api-key", KEY,
                         "--max-inputs", "4", "--max-text-chars", "30", "--max-context-chars", "200",
                         "--max-windows", "1024", "--timeout", "60", log=tmp_path_factory.mktemp("fuzz-log") / "log")
    yield served
    assert served.stop() == 0


@pytest.fixture(scope="module")
def document(server):
    status, body = request(server, "GET", "/openapi.json")
    assert status == 200
    return body


def test_schemathesis_with_every_check_and_phase_finds_nothing(server, document, tmp_path):
    # the command line a user runs (`st run`), so that its defaults and the suite's are one; the coverage phase
    # sends every boundary the document draws (its count follows the document, not --max-examples)
    command = [sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()", "run",
               f"http://{server.host}:{server.port}/openapi.json", "--header", f"Authorization: Bearer {KEY}",
               "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", "4",
               "--seed", "20261207", "--workers", "1", "--request-timeout", "60", "--generation-database", "none",
               "--no-color"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=840, cwd=tmp_path)
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output[-20000:]
    operations = {f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item}
    assert re.search(rf"Tested: {len(operations)}\b", output), output[-3000:]
    cases = int(re.search(r"(\d+) generated, \1 passed", output).group(1))
    # it ran, and stayed bounded (16 operations with every head served: about 1,900 cases)
    assert 200 <= cases <= 2400, output[-3000:]


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
    """The statuses the document gives POST `path`. A path it does not name (an unknown model; POST / with several
    served) answers as the Hugging Face paths do (a body is checked first), or not found, or not allowed."""
    operation = document["paths"].get(path, {}).get("post")
    if operation is None:
        return {int(status) for status in document["paths"]["/models/sentiment"]["post"]["responses"]} | {404, 405}
    return {int(status) for status in operation["responses"]}


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
