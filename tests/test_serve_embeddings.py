"""`bertfit serve` for search, against a real server subprocess: TEI's /embed and /rerank, OpenAI's /v1/embeddings
(through the openai client, floats and base64), and huggingface_hub's InferenceClient feature_extraction and
sentence_similarity; every answer equal to what `bertfit embed` / the inference layer gives, every mistake a 4xx
naming its field."""
import base64
import json
import urllib.request

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
hub = pytest.importorskip("huggingface_hub")
parser = pytest.importorskip("prometheus_client.parser")

import runs  # noqa: E402

from bertfit import inference  # noqa: E402
from bertfit.cli import main  # noqa: E402
from bertfit.pretrained import embedded_model_path  # noqa: E402

KEY = "embed-key-51c2"
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.timeout(600)]
TEXTS = ["A man is playing a guitar.", "Stocks fell sharply on Monday.", "The cat sat on the mat.",
         "A woman plays the violin on stage."]
LONG = "word " * 400  # longer than the embedded model's 256 tokens


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed-runs")
    return {"minilm": embedded_model_path(),
            "tiny": runs.embedding_folder(root / "tiny", pooling="cls", normalize=False),
            "sts": runs.classification_run(root / "glue-stsb", labels=("score",), extra=runs.STSB_EXTRA),
            "mrpc": runs.classification_run(root / "glue-mrpc", labels=("not_equivalent", "equivalent"),
                                            extra={**runs.STSB_EXTRA, "task": "mrpc"}),
            "mnli": runs.classification_run(root / "glue-mnli", labels=("entailment", "neutral", "contradiction"),
                                            extra={**runs.STSB_EXTRA, "task": "mnli"})}


@pytest.fixture(scope="module")
def server(run_dirs, tmp_path_factory):
    served = runs.Server([f"{name}={path}" for name, path in run_dirs.items()], "--precision", "fp32",
                         "--api-key", KEY, "--max-inputs", "8", log=tmp_path_factory.mktemp("embed-log") / "log")
    yield served
    assert served.stop() == 0


@pytest.fixture(scope="module")
def loaded(run_dirs):
    return {name: inference.load_run(path, precision="fp32") for name, path in run_dirs.items()}


def post(server, path: str, body, key: str | None = KEY):
    request = urllib.request.Request(f"http://{server.host}:{server.port}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {key}"} if key else {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def cli_embeddings(capsys, *argv) -> np.ndarray:
    capsys.readouterr()
    assert main(["embed", *map(str, argv), "--precision", "fp32"]) == 0
    return np.array([json.loads(line)["embedding"] for line in capsys.readouterr().out.splitlines()], np.float32)


def test_embed_answers_what_the_cli_writes(server, capsys):
    status, body = post(server, "/embed", {"inputs": TEXTS, "model": "minilm"})
    assert status == 200
    expected = cli_embeddings(capsys, embedded_model_path(), *TEXTS)
    np.testing.assert_allclose(np.array(body, np.float32), expected, atol=1e-6)
    status, one = post(server, "/embed", {"inputs": TEXTS[0], "model": "minilm"})
    assert status == 200 and len(one) == 1  # one text: a list of one vector, as TEI answers
    np.testing.assert_allclose(one[0], expected[0], atol=1e-6)


def test_embed_normalises_unless_asked_not_to(server, loaded):
    raw = inference.embed(loaded["tiny"], TEXTS).vectors  # cls pooling, no Normalize module
    status, body = post(server, "/embed", {"inputs": TEXTS, "model": "tiny"})  # TEI's default: normalize true
    assert status == 200
    np.testing.assert_allclose(body, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)
    status, body = post(server, "/embed", {"inputs": TEXTS, "model": "tiny", "normalize": False})
    np.testing.assert_allclose(body, raw, atol=1e-5)


def test_a_long_text_is_refused_unless_truncate_and_then_cut_as_the_cli_cuts(server, capsys):
    status, body = post(server, "/embed", {"inputs": ["short", LONG], "model": "minilm"})
    assert status == 422 and body["error"]["field"] == "inputs"
    assert "text 2 is 402 tokens long" in body["error"]["message"] and "at most 256" in body["error"]["message"]
    status, body = post(server, "/embed", {"inputs": ["short", LONG], "model": "minilm", "truncate": True})
    assert status == 200
    np.testing.assert_allclose(body, cli_embeddings(capsys, embedded_model_path(), "short", LONG), atol=1e-6)


def test_openai_client_gets_the_cli_embeddings_as_floats_and_base64(server, capsys):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"http://{server.host}:{server.port}/v1", api_key=KEY, timeout=120)
    expected = cli_embeddings(capsys, embedded_model_path(), *TEXTS)
    response = client.embeddings.create(model="minilm", input=TEXTS, encoding_format="float")
    assert [d.index for d in response.data] == [0, 1, 2, 3] and response.model == "minilm"
    np.testing.assert_allclose(np.array([d.embedding for d in response.data], np.float32), expected, atol=1e-6)
    # asked for base64, the client hands the strings over as they came: little-endian float32
    encoded = client.embeddings.create(model="minilm", input=TEXTS, encoding_format="base64")
    decoded = np.stack([np.frombuffer(base64.b64decode(d.embedding), "<f4") for d in encoded.data])
    np.testing.assert_allclose(decoded, expected, atol=1e-6)
    default = client.embeddings.create(model="minilm", input=TEXTS[0])  # the client asks for base64 and decodes it
    np.testing.assert_allclose(default.data[0].embedding, expected[0], atol=1e-6)
    tokens = sum(inference.prepare_embed(inference.load_run("embedded", precision="fp32"), TEXTS).features.lengths)
    assert response.usage.prompt_tokens == response.usage.total_tokens == tokens
    assert len(client.embeddings.create(model="minilm", input=TEXTS, dimensions=384).data[0].embedding) == 384
    with pytest.raises(openai.UnprocessableEntityError, match="384-dimensional"):
        client.embeddings.create(model="minilm", input=TEXTS, dimensions=128)
    with pytest.raises(openai.NotFoundError, match="no model 'text-embedding-3-small'"):
        client.embeddings.create(model="text-embedding-3-small", input=TEXTS)


def test_inference_client_feature_extraction_and_sentence_similarity(server, loaded):
    client = hub.InferenceClient(f"http://{server.host}:{server.port}/models/minilm", token=KEY, timeout=120)
    expected = inference.embed(loaded["minilm"], TEXTS).vectors
    got = client.feature_extraction(TEXTS[0])
    np.testing.assert_allclose(np.asarray(got).reshape(-1), expected[0], atol=1e-6)
    similarities = client.sentence_similarity(TEXTS[0], other_sentences=TEXTS[1:])
    np.testing.assert_allclose(similarities, expected[1:] @ expected[0], atol=1e-6)
    assert similarities[2] == max(similarities)  # the violinist is nearer the guitarist than stocks or a cat


@pytest.mark.parametrize("model", ["sts", "mrpc"])
def test_rerank_orders_passages_by_the_cross_encoders_score(server, loaded, model):
    query, passages = "Who plays music?", TEXTS
    status, body = post(server, "/rerank", {"query": query, "texts": passages, "model": model, "return_text": True})
    assert status == 200
    results = inference.classify(loaded[model], [], [(query, p) for p in passages])
    run = loaded[model]
    expected = [r["score"] if model == "sts" else r["probabilities"]["equivalent"] for r in results]
    assert [r["index"] for r in body] == sorted(range(4), key=lambda i: -expected[i])
    assert [r["score"] for r in body] == pytest.approx(sorted(expected, reverse=True), abs=1e-6)
    assert all(r["text"] == passages[r["index"]] for r in body)
    status, raw = post(server, "/rerank", {"query": query, "texts": passages, "model": model, "raw_scores": True})
    assert [r["score"] for r in raw] == pytest.approx(
        [inference.relevance(run, results[r["index"]], raw=True) for r in raw], abs=1e-5)


MISTAKES = [
    # (what, path, body, status, field, words)
    ("an empty text", "/embed", {"inputs": ["a", " "], "model": "minilm"}, 422, "inputs[1]", "is empty"),
    ("an empty list", "/embed", {"inputs": [], "model": "minilm"}, 422, "inputs", "empty list"),
    ("a list over the limit", "/embed", {"inputs": ["a"] * 9, "model": "minilm"}, 422, "inputs", "at most 8"),
    ("a classification run asked to embed", "/embed", {"inputs": "a", "model": "sts"}, 422, "model",
     "answers /v1/classify, /rerank"),
    ("no model named, several serve", "/embed", {"inputs": "a"}, 422, "model", "several models are served"),
    ("dimensions other than the model's", "/embed", {"inputs": "a", "model": "minilm", "dimensions": 64}, 422,
     "dimensions", "384-dimensional"),
    ("a prompt", "/embed", {"inputs": "a", "model": "minilm", "prompt_name": "query"}, 422, "prompt_name", "no prompts"),
    ("truncating the left", "/embed", {"inputs": "a", "model": "minilm", "truncation_direction": "Left"}, 422,
     "truncation_direction", ""),
    ("token ids to OpenAI's route", "/v1/embeddings", {"input": [[101, 102]], "model": "minilm"}, 422, "input",
     "token ids are not read"),
    ("OpenAI's route without a model", "/v1/embeddings", {"input": "a"}, 422, "model", "model is required"),
    ("an empty OpenAI input", "/v1/embeddings", {"input": "", "model": "minilm"}, 422, "input", "is empty"),
    ("a pair with no query", "/rerank", {"texts": ["a"], "model": "sts"}, 422, "query", "query is required"),
    ("a pair with an empty passage", "/rerank", {"query": "q", "texts": ["a", ""], "model": "sts"}, 422, "texts[1]",
     "is empty"),
    ("a pair with an empty query", "/rerank", {"query": " ", "texts": ["a"], "model": "sts"}, 422, "query",
     "is empty"),
    ("rerank with no passages", "/rerank", {"query": "q", "texts": [], "model": "sts"}, 422, "texts", "empty list"),
    ("rerank over the limit", "/rerank", {"query": "q", "texts": ["a"] * 9, "model": "sts"}, 422, "texts",
     "at most 8"),
    ("a three-label run as a reranker", "/rerank", {"query": "q", "texts": ["a"], "model": "mnli"}, 422, "model",
     "reranking needs a regression run"),
    ("an embedding model as a reranker", "/rerank", {"query": "q", "texts": ["a"], "model": "minilm"}, 422, "model",
     "answers /v1/embeddings, /embed"),
    ("a long pair without truncate", "/rerank", {"query": "q", "texts": [LONG], "model": "sts"}, 422, "texts",
     "with the query is longer than the model's 32 tokens"),
    ("similarity with no sentences", "/models/minilm", {"inputs": {"source_sentence": "a", "sentences": []}}, 422,
     "inputs.sentences", "empty list"),
    ("similarity for a classifier", "/models/sts", {"inputs": {"source_sentence": "a", "sentences": ["b"]}}, 422,
     "inputs", "sentence-similarity needs a sentence-embedding model"),
    ("feature-extraction fields for a classifier", "/models/sts", {"inputs": "a", "normalize": True}, 422,
     "normalize", "a field of feature-extraction"),
    ("a parameter to feature-extraction", "/models/minilm", {"inputs": "a", "parameters": {"top_k": 3}}, 422,
     "parameters.top_k", "its parameters: none"),
    ("a question to an embedding model", "/models/minilm", {"inputs": {"question": "q", "context": "c"}}, 422,
     "inputs", "does feature-extraction and sentence-similarity"),
    # a flag is true or false and a count a number, as the document says: not 1, "yes" or "384"
    ("a number for normalize", "/embed", {"inputs": "a", "model": "minilm", "normalize": 0}, 422, "normalize",
     "valid boolean"),
    ("a string for truncate", "/models/minilm", {"inputs": "a", "truncate": "yes"}, 422, "truncate", "valid boolean"),
    ("a number for raw_scores", "/rerank", {"query": "q", "texts": ["a"], "model": "sts", "raw_scores": 1}, 422,
     "raw_scores", "valid boolean"),
    ("a string for dimensions", "/v1/embeddings", {"input": "a", "model": "minilm", "dimensions": "384"}, 422,
     "dimensions", "whole number"),
]


@pytest.mark.parametrize("what, path, body, status, field, words", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_a_mistaken_request_is_refused_naming_its_field(server, what, path, body, status, field, words):
    got, answer = post(server, path, body)
    assert got == status, answer
    assert answer["error"]["status"] == status and answer["error"].get("field") == field, answer
    assert words in answer["error"]["message"], answer


def test_every_search_route_needs_the_key_and_is_counted(server):
    def scrape():
        request = urllib.request.Request(f"http://{server.host}:{server.port}/metrics",
                                         headers={"Authorization": f"Bearer {KEY}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return [s for f in parser.text_string_to_metric_families(response.read().decode()) for s in f.samples]

    def count(samples, route, status):
        return sum(s.value for s in samples if s.name == "bertfit_requests_total"
                   and s.labels.get("route") == route and s.labels.get("status") == status)

    before = scrape()
    for path, body in [("/embed", {"inputs": "a", "model": "minilm"}), ("/v1/embeddings", {"input": "a", "model": "minilm"}),
                       ("/rerank", {"query": "q", "texts": ["a"], "model": "sts"})]:
        assert post(server, path, body, key=None)[0] == 401
        assert post(server, path, body)[0] == 200
    after = scrape()
    for route in ("/embed", "/v1/embeddings", "/rerank"):
        assert count(after, route, "200") - count(before, route, "200") == 1
        assert count(after, route, "401") - count(before, route, "401") == 1
    assert any(s.name == "bertfit_tokens_total" and s.labels.get("model") == "minilm" and s.value > 0 for s in after)


def test_openapi_document_names_the_models_each_search_route_takes(server):
    request = urllib.request.Request(f"http://{server.host}:{server.port}/openapi.json",
                                     headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        paths = json.loads(response.read())["paths"]

    def body(path):
        return paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]

    # no tagger, no masked-language model, no SQuAD run served: their routes are left out
    assert not {"/v1/token-classification", "/v1/fill-mask", "/v1/answer"} & set(paths)
    embed, openai, rerank = body("/embed"), body("/v1/embeddings"), body("/rerank")
    assert embed["properties"]["model"] == {"enum": ["minilm", "tiny"]} and "model" in embed["required"]
    # each model's own dimensions only: minilm's 384, tiny's 32
    assert {"properties": {"model": {"const": "minilm"}, "dimensions": {"enum": [384, None]}}} in (
        embed["allOf"][0]["anyOf"])
    assert openai["required"] == ["input", "model"] and openai["properties"]["encoding_format"]["enum"] == [
        "float", "base64"]
    assert openai["properties"]["input"]["anyOf"][1]["items"]["type"] == "string"  # no token ids
    # the three-label run answers no /rerank, yet with three classifiers served the model is named
    assert rerank["properties"]["model"] == {"enum": ["sts", "mrpc"]} and "model" in rerank["required"]
    assert rerank["properties"]["texts"]["maxItems"] == 8
    extraction, similarity = body("/models/minilm")["oneOf"]
    assert extraction["properties"]["dimensions"] == {"enum": [384, None]}
    assert similarity["properties"]["inputs"]["properties"]["sentences"]["maxItems"] == 7  # the source counts
    assert body("/models/sts")["properties"]["normalize"] == {"type": "null"}
