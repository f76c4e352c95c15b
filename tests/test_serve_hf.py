"""`bertfit serve` as the tools users already run see it: huggingface_hub's InferenceClient (the Hugging Face
inference format at /models/NAME and /) and Prometheus (/metrics, parsed with prometheus_client's parser)."""
import json
import urllib.request

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
hub = pytest.importorskip("huggingface_hub")
parser = pytest.importorskip("prometheus_client.parser")

import runs  # noqa: E402

from bertfit import inference  # noqa: E402

KEY = "hf-key-7c1e"
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf-runs")
    return {"sentiment": runs.classification_run(root / "glue-sst2", labels=("negative", "positive")),
            "reader": runs.squad_run(root / "squad-v2.0"),
            "filler": runs.masked_lm_run(root / "pretrain")}


@pytest.fixture(scope="module")
def server(run_dirs, tmp_path_factory):
    served = runs.Server([f"{name}={path}" for name, path in run_dirs.items()], "--precision", "fp32",
                         "--api-key", KEY, log=tmp_path_factory.mktemp("hf-log") / "server.log")
    yield served
    assert served.stop() == 0


@pytest.fixture(scope="module")
def loaded(run_dirs):
    return {name: inference.load_run(path, precision="fp32") for name, path in run_dirs.items()}


def client(server, name: str | None = None, token: str | None = KEY):
    url = f"http://{server.host}:{server.port}" + (f"/models/{name}" if name else "")
    return hub.InferenceClient(url, token=token, timeout=120)


def test_inference_client_classifies_as_classify_does_with_the_key_as_its_token(server, loaded):
    text = "A gripping, beautifully acted film."
    labels = client(server, "sentiment").text_classification(text)
    (expected,) = inference.classify(loaded["sentiment"], [text])
    assert [item.label for item in labels] == sorted(expected["probabilities"], key=lambda k: -expected["probabilities"][k])
    for item in labels:
        assert item.score == pytest.approx(expected["probabilities"][item.label], abs=1e-5)
    (best,) = client(server, "sentiment").text_classification(text, top_k=1)
    assert best.label == expected["label"]


def test_inference_client_answers_as_qa_does(server, loaded):
    question = "Who won Super Bowl 50?"
    got = client(server, "reader").question_answering(question=question, context=runs.PASSAGE)
    (expected,) = inference.answer(loaded["reader"], [(question, runs.PASSAGE)])
    assert got.answer == expected["answer"]
    if expected["answer"]:
        assert (got.start, got.end) == (expected["start"], expected["end"])
        assert runs.PASSAGE[got.start : got.end] == got.answer
        assert got.score == pytest.approx(expected["probability"], abs=1e-5)
    else:  # v2.0, judged unanswerable: "" at 0..0, scored by the probability that there is no answer
        assert (got.start, got.end) == (0, 0) and 0.5 < got.score <= 1


def test_inference_client_fills_masks_as_fill_mask_does(server, loaded):
    text = "The cat sat on the [MASK]."
    got = client(server, "filler").fill_mask(text, top_k=3)
    ((expected,),) = inference.fill_mask(loaded["filler"], [text], top_k=3)
    assert [item.token for item in got] == [c["token_id"] for c in expected]
    assert [item.token_str for item in got] == [c["token"] for c in expected]
    assert [item.score for item in got] == pytest.approx([c["probability"] for c in expected], abs=1e-6)
    for item in got:
        assert item.sequence.startswith("The cat sat on the") and "[MASK]" not in item.sequence


def test_a_wrong_token_is_refused_with_401_in_the_one_error_shape(server):
    with pytest.raises(hub.errors.HfHubHTTPError) as refused:
        client(server, "sentiment", token="wrong").text_classification("a film")
    assert refused.value.response.status_code == 401
    assert refused.value.response.json()["error"]["type"] == "unauthorized"


def post(server, path: str, body, key: str | None = KEY):
    request = urllib.request.Request(f"http://{server.host}:{server.port}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {key}"} if key else {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


HF_MISTAKES = [
    # (what, path, body, status, field)
    ("an unknown model", "/models/nope", {"inputs": "a film"}, 404, "name"),
    ("POST / with several models served", "/", {"inputs": "a film"}, 405, None),
    ("no inputs", "/models/sentiment", {"parameters": {}}, 422, "inputs"),
    ("an empty list of inputs", "/models/sentiment", {"inputs": []}, 422, "inputs"),
    ("more [MASK]s than --max-masks", "/models/filler", {"inputs": ["[MASK] " * 65] * 2}, 422, "inputs"),
    ("true for top_k", "/models/filler", {"inputs": "a [MASK]", "parameters": {"top_k": True}}, 422, "parameters.top_k"),
    ("a string for a flag", "/models/reader", {"inputs": {"question": "Who?", "context": "Ann won."},
                                               "parameters": {"align_to_words": "yes"}}, 422,
     "parameters.align_to_words"),
    ("an empty text", "/models/sentiment", {"inputs": "  "}, 422, "inputs"),
    ("a question for a classifier", "/models/sentiment", {"inputs": {"question": "Who?", "context": "Ann."}}, 422,
     "inputs"),
    ("a text for a reader", "/models/reader", {"inputs": "Who won?"}, 422, "inputs"),
    ("a fill-mask parameter for a classifier", "/models/sentiment", {"inputs": "a film", "parameters": {"targets": ["x"]}},
     422, "parameters.targets"),
    ("sigmoid scores", "/models/sentiment", {"inputs": "a film", "parameters": {"function_to_apply": "sigmoid"}}, 422,
     "parameters.function_to_apply"),
    ("top_k 0", "/models/sentiment", {"inputs": "a film", "parameters": {"top_k": 0}}, 422, "parameters.top_k"),
    ("another doc_stride than the run's", "/models/reader",
     {"inputs": {"question": "Who?", "context": "Ann won."}, "parameters": {"doc_stride": 3}}, 422,
     "parameters.doc_stride"),
    ("several answers", "/models/reader",
     {"inputs": {"question": "Who?", "context": "Ann won."}, "parameters": {"top_k": 3}}, 422, "parameters.top_k"),
    ("fill-mask targets", "/models/filler", {"inputs": "a [MASK] film", "parameters": {"targets": ["good"]}}, 422,
     "parameters.targets"),
    ("a text without [MASK]", "/models/filler", {"inputs": "a fine film"}, 422, "inputs"),
    ("an unknown parameter", "/models/filler", {"inputs": "a [MASK]", "parameters": {"temperature": 2}}, 422,
     "parameters.temperature"),
]


@pytest.mark.parametrize("what, path, body, status, field", HF_MISTAKES, ids=[m[0] for m in HF_MISTAKES])
def test_a_bad_inference_request_is_a_4xx_in_the_one_error_shape(server, what, path, body, status, field):
    got, error = post(server, path, body)
    assert got == status, error
    assert set(error) == {"error"} and error["error"]["status"] == status and error["error"].get("field") == field


@pytest.mark.parametrize("name", ["sentiment", "reader", "filler"])
def test_an_empty_list_of_inputs_is_refused_as_empty(server, name):
    got, error = post(server, f"/models/{name}", {"inputs": []})
    assert (got, error["error"]["field"]) == (422, "inputs")
    assert error["error"]["message"] == "inputs is an empty list; give at least one"


def test_lists_of_inputs_get_a_list_of_answers(server, loaded):
    texts = ["a fine film", "a dull film"]
    status, body = post(server, "/models/sentiment", {"inputs": texts, "parameters": {"top_k": 1}})
    assert status == 200 and [[item["label"]] for item in [b[0] for b in body]] == [
        [p["label"]] for p in inference.classify(loaded["sentiment"], texts)]
    status, body = post(server, "/models/sentiment", {"inputs": {"text": "A man plays.", "text_pair": "Music."}})
    assert status == 200 and len(body) == 1 and len(body[0]) == 2
    status, body = post(server, "/models/filler", {"inputs": "Paris is the [MASK] of France, the [MASK] its river."})
    assert status == 200 and len(body) == 2 and all(len(candidates) == 5 for candidates in body)  # a list per [MASK]


def test_post_slash_answers_when_one_model_is_served(run_dirs, tmp_path):
    served = runs.Server([str(run_dirs["sentiment"])], "--precision", "fp32", log=tmp_path / "log")
    try:
        labels = hub.InferenceClient(f"http://{served.host}:{served.port}", timeout=120).text_classification("a film")
        assert {item.label for item in labels} == {"negative", "positive"}
        # the page and the model share the path: the document and Allow both say GET and POST
        document = json.loads(urllib.request.urlopen(f"http://{served.host}:{served.port}/openapi.json").read())
        assert set(document["paths"]["/"]) == {"get", "post"}
        status, headers = options(served, "/")
        assert status == 405 and headers["Allow"] == "GET, POST"
    finally:
        assert served.stop() == 0


def options(server, path: str):
    """(status, headers) of OPTIONS `path`; the headers are read in any case."""
    request = urllib.request.Request(f"http://{server.host}:{server.port}{path}", method="OPTIONS",
                                     headers={"Authorization": f"Bearer {KEY}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.headers


def test_post_slash_with_several_models_served_is_not_allowed_and_names_them(server):
    got, error = post(server, "/", {"inputs": "a film"})
    assert got == 405 and error["error"]["message"] == ("POST is not allowed on /: several models are served "
                                                        "(sentiment, reader, filler); POST /models/NAME names one")
    status, headers = options(server, "/")
    assert status == 405 and headers["Allow"] == "GET"


# ---- /metrics -----------------------------------------------------------------------------------

def scrape(server, key: str | None = KEY):
    request = urllib.request.Request(f"http://{server.host}:{server.port}/metrics",
                                     headers={"Authorization": f"Bearer {key}"} if key else {})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return {family.name: family for family in parser.text_string_to_metric_families(response.read().decode())}


def value(families, name: str, **labels) -> float:
    """The sum of the samples called `name` (bertfit_requests_total is a sample of the family bertfit_requests)."""
    return sum(s.value for family in families.values() for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_count_real_traffic_in_the_prometheus_text_format(server, loaded):
    before = scrape(server)
    texts = ["a fine film", "a dull film", "It is fine."]
    assert post(server, "/v1/classify", {"texts": texts, "model": "sentiment"})[0] == 200
    assert post(server, "/models/sentiment", {"inputs": "one more"})[0] == 200
    assert post(server, "/v1/classify", {"texts": [], "model": "sentiment"})[0] == 422
    assert post(server, "/v1/classify", {"texts": ["a"]}, key="wrong")[0] == 401
    after = scrape(server)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("bertfit_requests_total", route="/v1/classify", status="200") == 1
    assert grew("bertfit_requests_total", route="/models/{name}", status="200") == 1
    assert grew("bertfit_requests_total", route="/v1/classify", status="422") == 1
    assert grew("bertfit_requests_total", route="/v1/classify", status="401") == 1
    assert grew("bertfit_request_errors_total", route="/v1/classify", status="422", type="invalid_request") == 1
    assert grew("bertfit_request_errors_total", route="/v1/classify", status="401", type="unauthorized") == 1
    assert grew("bertfit_request_duration_seconds_count", route="/v1/classify") == 3
    tokens = sum(inference.prepare_texts(loaded["sentiment"], batch).num_tokens for batch in (texts, ["one more"]))
    assert grew("bertfit_tokens_total", model="sentiment") == tokens
    assert grew("bertfit_batch_requests_count", model="sentiment") >= 1
    assert grew("bertfit_batch_sequences_sum", model="sentiment") == 4
    assert value(after, "bertfit_queue_depth", model="sentiment") == 0
    assert {s.labels["model"] for s in after["bertfit_queue_depth"].samples} == {"sentiment", "reader", "filler"}
    assert after["bertfit_request_duration_seconds"].type == "histogram"


def test_every_metric_the_docs_list_is_served(server):
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "serving.md").read_text()
    table = page[page.index("### Metrics"):page.index("## How a request is answered")]
    documented = {name for row in re.findall(r"^\| (`bertfit_.*?) \|", table, re.M)
                  for name in re.findall(r"`(bertfit_\w+)`", row)}
    assert len(documented) >= 10
    assert {name.removesuffix("_total") for name in documented} <= set(scrape(server)), documented


def test_metrics_need_the_key_and_health_does_not(server):
    with pytest.raises(urllib.error.HTTPError) as refused:
        scrape(server, key=None)
    assert refused.value.code == 401
    with urllib.request.urlopen(f"http://{server.host}:{server.port}/health", timeout=60) as response:
        assert response.status == 200
