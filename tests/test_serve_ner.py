"""A `bertfit ner` run served: /v1/token-classification answers as `inference.tag` does, and the Hugging Face
format (huggingface_hub's InferenceClient.token_classification) as transformers' pipeline does, per strategy."""
import json
import urllib.request

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
hub = pytest.importorskip("huggingface_hub")

import runs  # noqa: E402

from bertfit import inference  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.timeout(600)]
TEXT = "Mary Ann visited New York and Paris-Berlin yesterday, unbelievably."


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    return runs.tagger_run(tmp_path_factory.mktemp("ner-run") / "ner")


@pytest.fixture(scope="module")
def server(tagger, tmp_path_factory):
    served = runs.Server([f"tagger={tagger}"], "--precision", "fp32",
                         log=tmp_path_factory.mktemp("ner-log") / "server.log")
    yield served
    assert served.stop() == 0


def post(server, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://{server.host}:{server.port}{path}", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_route_answers_as_tag_does(server, tagger):
    run = inference.load_run(tagger, precision="fp32")
    status, body = post(server, "/v1/token-classification", {"texts": [TEXT, "Paris"], "aggregation_strategy": "max"})
    assert status == 200
    expected = inference.tag(run, [TEXT, "Paris"], "max")
    assert [[(e["entity_group"], e["start"], e["end"]) for e in text] for text in body["predictions"]] == \
           [[(e["entity_group"], e["start"], e["end"]) for e in text] for text in expected]
    status, body = post(server, "/v1/token-classification", {"text": "  "})
    assert status == 422 and body["error"]["field"] == "text"


@pytest.mark.parametrize("body, field", [({"aggregation_strategy": "max"}, "text"),
                                         ({"text": TEXT, "texts": [TEXT]}, "texts")], ids=["neither", "both"])
def test_the_route_takes_text_or_texts_and_names_the_field_otherwise(server, body, field):
    status, answer = post(server, "/v1/token-classification", body)
    assert status == 422 and answer["error"]["field"] == field
    assert answer["error"]["message"] == "give text (a string) or texts (a list of them)"


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_inference_client_gets_the_pipelines_entities(server, tagger, strategy):
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    pipeline = transformers.pipeline("token-classification", model=str(tagger / "model"),
                                     aggregation_strategy=strategy)
    client = hub.InferenceClient(f"http://{server.host}:{server.port}/models/tagger", timeout=120)
    got = client.token_classification(TEXT, aggregation_strategy=strategy)
    expected = pipeline(TEXT)
    key = "entity" if strategy == "none" else "entity_group"
    assert len(expected) > 1
    assert [(getattr(g, key), g.word, g.start, g.end) for g in got] == \
           [(e[key], e["word"], e["start"], e["end"]) for e in expected]
    assert np.allclose([g.score for g in got], [float(e["score"]) for e in expected], atol=1e-4)


@pytest.mark.parametrize("body, field", [
    ({"inputs": TEXT, "parameters": {"stride": 3}}, "parameters.stride"),
    ({"inputs": TEXT, "parameters": {"ignore_labels": ["O", "B-PER"]}}, "parameters.ignore_labels"),
    ({"inputs": TEXT, "parameters": {"top_k": 2}}, "parameters.top_k"),
    ({"inputs": {"question": "Who?", "context": TEXT}}, "inputs"),
    ({"inputs": ["", TEXT]}, "inputs[0]"),
])
def test_the_hugging_face_format_refuses_what_the_run_cannot_answer_naming_the_field(server, body, field):
    status, answer = post(server, "/models/tagger", body)
    assert status == 422 and answer["error"]["field"] == field, answer


def test_an_unknown_aggregation_strategy_is_refused(server):
    status, answer = post(server, "/v1/token-classification", {"text": TEXT, "aggregation_strategy": "longest"})
    assert status == 422 and "aggregation_strategy" in answer["error"]["field"]


def test_the_page_marks_the_entities_the_route_finds(server, tmp_path):
    import shutil
    import subprocess

    node = shutil.which("node")
    if not node:
        pytest.skip("no node to run the page's script")
    from test_serve import PAGE_HARNESS

    from bertfit.serve.app import PAGE

    harness = tmp_path / "page.js"
    harness.write_text(PAGE_HARNESS)
    steps = [{"model": "tagger", "submit": True, "fill": {"text": TEXT}}]
    done = subprocess.run([node, str(harness), f"http://{server.host}:{server.port}", "", str(PAGE), json.dumps(steps)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (shown,) = json.loads(done.stdout)
    _, body = post(server, "/v1/token-classification", {"text": TEXT})
    expected, at = "", 0
    for e in body["predictions"]:
        expected += TEXT[at : e["start"]] + TEXT[e["start"] : e["end"]] + f" {e['entity_group']} {e['score']:.2f}"
        at = e["end"]
    assert body["predictions"] and shown == {"pairHidden": True, "requests": 1, "result": expected + TEXT[at:],
                                             "byId": {}}


def test_openapi_document_says_what_the_tagger_accepts(server):
    with urllib.request.urlopen(f"http://{server.host}:{server.port}/openapi.json", timeout=60) as response:
        paths = json.loads(response.read())["paths"]
    assert "/v1/classify" not in paths and "/embed" not in paths  # no run served answers them
    own = paths["/v1/token-classification"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert own["properties"]["model"] == {"enum": ["tagger", None]}
    assert own["properties"]["aggregation_strategy"]["enum"] == ["none", "simple", "first", "average", "max"]
    for path in ("/models/tagger", "/"):  # POST /: the one model served
        hf = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        parameters = hf["properties"]["parameters"]["anyOf"][0]["properties"]
        assert parameters["stride"] == {"enum": [8, None]} and parameters["ignore_labels"] == {"enum": [["O"], None]}
        assert parameters["top_k"] == {"type": "null"} and hf["properties"]["normalize"] == {"type": "null"}
