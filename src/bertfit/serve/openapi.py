"""The OpenAPI document at /openapi.json, made to say what this server accepts: its own models by name, its own
limits, and for the Hugging Face format one path per served model with that model's task. FastAPI's document
(from the pydantic models in `schemas` and `embedding_schemas`) gives the responses; the request bodies are
written here, because what a server accepts depends on what it serves (a fill-mask run's parameters are not a
classifier's, an embedding model's dimensions are its own) and on its settings (--max-inputs, --max-text-chars,
...), which pydantic's static models cannot say. Which heads answer a route, and which Hugging Face task a head
does, are read off `heads.HEADS`.

What no JSON Schema can say is left to the 422 response's description: the tokens of a text (a fill-mask
text must fit the model whole, and so must a text to embed or a query with its passage to rerank unless the
request asks for truncation), the windows and tokens of a request (--max-windows, --max-request-tokens) and
the [MASK]s of a request (--max-masks). tests/test_serve_fuzz.py holds the document to this: Schemathesis
sends what it allows and what it forbids, and every answer must agree.
"""
from __future__ import annotations

import copy

from .. import heads, inference
from ..serve_settings import ServeSettings
from ..tasks.tag_decoding import STRATEGIES
from .embedding_routes import reranks
from .guard import PUBLIC
from .hf import FEATURE_EXTRACTION
from .schemas import Parameters

# The request bodies FastAPI documents from the pydantic models: replaced below, so dropped from the components
REQUEST_MODELS = ("ClassifyRequest", "AnswerRequest", "FillMaskRequest", "TagRequest", "EmbedRequest",
                  "RerankRequest", "OpenAIEmbeddingRequest", "Question", "InferenceRequest", "TextPair",
                  "QuestionInput", "SimilarityInput", "Parameters")
# The routes of the heads, each with the heads that answer it (app.ROUTES says the same the other way round)
ROUTE_HEADS = {route: tuple(name for name, head in heads.HEADS.items() if route in head.routes)
               for route in dict.fromkeys(route for head in heads.HEADS.values() for route in head.routes)}
HF_TASKS = {name: head.hf_task for name, head in heads.HEADS.items()}
HF_PARAMETERS = tuple(Parameters.model_fields)
TRUNCATION_DIRECTION = {"enum": ["Right", "right"]}
TOO_LARGE = ("422: also past a limit no schema can state: a fill-mask text longer than the model reads, a text to "
             "embed or a rerank query with its text longer than the model reads when the request does not ask "
             "for truncation (OpenAI's /v1/embeddings never does), more windows or tokens than --max-windows or "
             "--max-request-tokens, more [MASK]s than --max-masks, a lone surrogate in a text")
NULL = {"type": "null"}
GIVEN = {"not": NULL}
BOOLEAN = {"type": "boolean"}


# ---- pieces of schemas --------------------------------------------------------------------------

def text(max_chars: int, must_hold: str = r"\S") -> dict:
    """A string of 1 to max_chars characters holding `must_hold` (a regular expression): by default, not blank."""
    return {"type": "string", "minLength": 1, "maxLength": max_chars, "pattern": must_hold}


def some(item: dict, max_items: int) -> dict:
    return {"type": "array", "items": item, "minItems": 1, "maxItems": max_items}


def maybe(schema: dict) -> dict:
    return {"anyOf": [schema, NULL]}


def record(properties: dict, required: list[str] = ()) -> dict:
    return {"type": "object", "additionalProperties": False, "properties": properties, "required": list(required)}


def one_of(*groups: tuple[str, ...]) -> list[dict]:
    """Exactly one group of fields given (not null); every field of the other groups null or left out."""
    branches = []
    for group in groups:
        others = [name for g in groups if g is not group for name in g]
        branches.append({"required": list(group), "properties": {**{name: GIVEN for name in group},
                                                                  **{name: NULL for name in others}}})
    return branches


def model_field(names: list[str], answering: int | None = None) -> tuple[dict, list[str]]:
    """The `model` field: a served name that answers the route; required where several served runs are of a head
    that answers it (`answering` of them; by default, `names`'s)."""
    if (len(names) if answering is None else answering) == 1:
        return {"enum": [*names, None]}, []
    return {"enum": names}, ["model"]


def integer(low: int, high: int | None = None) -> dict:
    schema = {"type": "integer", "minimum": low}
    return schema if high is None else {**schema, "maximum": high}


# ---- the request bodies -------------------------------------------------------------------------

def classify_body(s: ServeSettings, names: list[str]) -> dict:
    one = text(s.max_text_chars)
    model, required = model_field(names)
    body = record({"texts": maybe(some(one, s.max_inputs)),
                   "pairs": maybe(some({"type": "array", "items": one, "minItems": 2, "maxItems": 2}, s.max_inputs)),
                   "model": model}, required)
    return {**body, "oneOf": one_of(("texts",), ("pairs",))}


def question_record(s: ServeSettings) -> dict:
    return record({"question": text(s.max_question_chars), "context": text(s.max_context_chars)},
                  ["question", "context"])


def answer_body(s: ServeSettings, names: list[str]) -> dict:
    model, required = model_field(names)
    body = record({"question": maybe(text(s.max_question_chars)), "context": maybe(text(s.max_context_chars)),
                   "questions": maybe(some(question_record(s), s.max_inputs)), "model": model}, required)
    return {**body, "oneOf": one_of(("question", "context"), ("questions",))}


def masked_text(s: ServeSettings) -> dict:
    return text(s.max_text_chars, must_hold=r"\[MASK\]")


def fill_mask_body(s: ServeSettings, names: list[str], vocabulary: int) -> dict:
    model, required = model_field(names)
    body = record({"text": maybe(masked_text(s)), "texts": maybe(some(masked_text(s), s.max_inputs)),
                   "top_k": {**integer(1, min(50, vocabulary)), "default": 5}, "model": model}, required)
    return {**body, "oneOf": one_of(("text",), ("texts",))}


def tag_body(s: ServeSettings, names: list[str]) -> dict:
    model, required = model_field(names)
    body = record({"text": maybe(text(s.max_text_chars)), "texts": maybe(some(text(s.max_text_chars), s.max_inputs)),
                   "aggregation_strategy": {"enum": list(STRATEGIES), "default": "first"}, "model": model}, required)
    return {**body, "oneOf": one_of(("text",), ("texts",))}


def texts(s: ServeSettings) -> dict:
    """A text, or a list of them."""
    return {"anyOf": [text(s.max_text_chars), some(text(s.max_text_chars), s.max_inputs)]}


def dimensions(runs: dict[str, inference.Run], names: list[str]) -> tuple[dict, list[dict]]:
    """The `dimensions` field: only the model's own (or left out); where the named models' differ, each model's
    own, as branches to meet (allOf)."""
    sizes = {name: runs[name].sentence.dimensions for name in names}
    if len(set(sizes.values())) == 1:
        return {"enum": [next(iter(sizes.values())), None]}, []
    branches = [{"properties": {"model": {"const": name}, "dimensions": {"enum": [size, None]}}}
                for name, size in sizes.items()]
    return {"anyOf": [{"type": "integer"}, NULL]}, [{"anyOf": branches}]


def embed_body(s: ServeSettings, runs: dict[str, inference.Run], names: list[str]) -> dict:
    """TEI's /embed."""
    model, required = model_field(names)
    size, per_model = dimensions(runs, names)
    body = record({"inputs": texts(s), "normalize": {**BOOLEAN, "default": True}, "truncate": maybe(BOOLEAN),
                   "truncation_direction": {**TRUNCATION_DIRECTION, "default": "Right"}, "prompt_name": NULL,
                   "dimensions": size, "model": model}, ["inputs", *required])
    return {**body, "allOf": per_model} if per_model else body


def openai_body(s: ServeSettings, runs: dict[str, inference.Run], names: list[str]) -> dict:
    """OpenAI's /v1/embeddings: text only (token ids would be another tokenizer's), `model` always named."""
    size, per_model = dimensions(runs, names)
    body = record({"input": texts(s), "model": {"enum": names},
                   "encoding_format": {"enum": ["float", "base64"], "default": "float"}, "dimensions": size,
                   "user": maybe({"type": "string"})}, ["input", "model"])
    return {**body, "allOf": per_model} if per_model else body


def rerank_body(s: ServeSettings, names: list[str], answering: int) -> dict:
    """TEI's /rerank, by the served cross-encoders (`names`; `answering`: the classification runs served)."""
    model, required = model_field(names, answering)
    return record({"query": text(s.max_text_chars), "texts": some(text(s.max_text_chars), s.max_inputs),
                   "truncate": maybe(BOOLEAN), "truncation_direction": {**TRUNCATION_DIRECTION, "default": "Right"},
                   "raw_scores": {**BOOLEAN, "default": False}, "return_text": {**BOOLEAN, "default": False},
                   "model": model}, ["query", "texts", *required])


def hf_body(run: inference.Run, s: ServeSettings) -> dict:
    """{"inputs", "parameters"} of the Hugging Face format for one run's task: its inputs, and its parameters
    (the others' only as null, which counts as left out); feature-extraction's own fields beside them."""
    task = HF_TASKS[run.head]
    if task == "feature-extraction":
        return embedding_hf_body(run, s)
    if task == "text-classification":
        one = text(s.max_text_chars)
        single = record({"text": one, "text_pair": maybe(one)}, ["text"])
        alone, paired = record({"text": one, "text_pair": NULL}, ["text"]), record({"text": one, "text_pair": one},
                                                                                    ["text", "text_pair"])
        inputs = {"anyOf": [one, single, some(one, s.max_inputs), some(alone, s.max_inputs),
                            some(paired, s.max_inputs)]}  # a list: every input a pair, or none
        accepted = {"top_k": maybe(integer(1)), "function_to_apply": {"enum": ["softmax", None]}}
    elif task == "question-answering":
        inputs = {"anyOf": [question_record(s), some(question_record(s), s.max_inputs)]}
        # the run's own settings only: it answers as it was trained and evaluated
        version_2 = run.setting("version") == "2.0"
        fixed = {"top_k": 1, "align_to_words": True, "handle_impossible_answer": version_2,
                 "doc_stride": run.setting("doc_stride"), "max_answer_len": run.setting("max_answer_length"),
                 "max_question_len": run.setting("max_query_length"), "max_seq_len": run.max_seq_length}
        accepted = {name: {"enum": [value, None]} for name, value in fixed.items()}
    elif task == "token-classification":
        inputs = texts(s)
        # O alone is left out, and long texts are read in the run's own windows
        accepted = {"aggregation_strategy": {"enum": [*STRATEGIES, None]}, "ignore_labels": {"enum": [["O"], None]},
                    "stride": {"enum": [run.setting("stride"), None]}}
    else:
        inputs = {"anyOf": [masked_text(s), some(masked_text(s), s.max_inputs)]}
        accepted = {"top_k": maybe(integer(1, min(50, run.tokenizer.get_vocab_size())))}
    return record({"inputs": inputs, "parameters": maybe(parameters(accepted)),
                   **{name: NULL for name in FEATURE_EXTRACTION}}, ["inputs"])


def parameters(accepted: dict) -> dict:
    return record({name: accepted.get(name, NULL) for name in HF_PARAMETERS})


def embedding_hf_body(run: inference.Run, s: ServeSettings) -> dict:
    """A sentence-embedding model in the Hugging Face format: feature-extraction (a text or texts, with TEI's
    fields beside them), or sentence-similarity ({source_sentence, sentences}: the source counts among
    --max-inputs). No parameters of any task."""
    none = maybe(parameters({}))
    extraction = record({"inputs": texts(s), "parameters": none, "normalize": maybe(BOOLEAN),
                         "truncate": maybe(BOOLEAN), "truncation_direction": maybe(TRUNCATION_DIRECTION),
                         "prompt_name": NULL, "dimensions": {"enum": [run.sentence.dimensions, None]},
                         "encoding_format": {"enum": ["float", None]}}, ["inputs"])
    if s.max_inputs < 2:
        return extraction
    pair = record({"source_sentence": text(s.max_text_chars),
                   "sentences": some(text(s.max_text_chars), s.max_inputs - 1)}, ["source_sentence", "sentences"])
    similarity = record({"inputs": pair, "parameters": none, **{name: NULL for name in FEATURE_EXTRACTION}},
                        ["inputs"])
    return {"oneOf": [extraction, similarity]}


# ---- the document -------------------------------------------------------------------------------

def own_body(path: str, runs: dict[str, inference.Run], names: list[str], s: ServeSettings) -> tuple[dict, dict]:
    """The body of one of the heads' routes, and an example of it, for the served `names` that answer it."""
    if path == "/v1/classify":
        return classify_body(s, names), {"texts": [EXAMPLES["text"]]}
    if path == "/v1/answer":
        return answer_body(s, names), {"question": EXAMPLES["question"], "context": EXAMPLES["context"]}
    if path == "/v1/fill-mask":
        return fill_mask_body(s, names, runs[names[0]].tokenizer.get_vocab_size()), {"text": EXAMPLES["masked"]}
    if path == "/v1/token-classification":
        return tag_body(s, names), {"text": EXAMPLES["context"]}
    if path == "/embed":
        return embed_body(s, runs, names), {"inputs": EXAMPLES["text"]}
    if path == "/v1/embeddings":
        return openai_body(s, runs, names), {"input": EXAMPLES["text"]}
    if path == "/rerank":
        return rerank_body(s, names, len([run for run in runs.values() if run.head in ROUTE_HEADS[path]])), {
            "query": EXAMPLES["question"], "texts": [EXAMPLES["context"]]}
    raise KeyError(f"no request body is written for {path}")  # a new head's route: write its body above


def answers(path: str, run: inference.Run) -> bool:
    """Whether `run` answers `path`: its head's route, and for /rerank a cross-encoder."""
    return run.head in ROUTE_HEADS[path] and (path != "/rerank" or reranks(run))


def tighten(document: dict, runs: dict[str, inference.Run], settings: ServeSettings) -> dict:
    """FastAPI's `document` with the request bodies this server accepts; a route no served run answers left out."""
    document = copy.deepcopy(document)
    paths = document["paths"]
    for path in ROUTE_HEADS:
        names = [name for name, run in runs.items() if answers(path, run)]
        if not names:
            paths.pop(path, None)  # every request gets 404 (or 422): no served model answers it
            continue
        body, example = own_body(path, runs, names, settings)
        set_body(paths[path]["post"], body, fitting({**example, "model": names[0]}, settings))
    template = paths.pop("/models/{name}")["post"]
    for name, run in runs.items():
        operation = copy.deepcopy(template)
        operation["parameters"] = [p for p in operation.get("parameters", []) if p.get("name") != "name"]
        operation["summary"] = f"{name}: {hf_tasks(run)} in the Hugging Face inference format"
        operation["operationId"] = f"models_{name}_post"
        operation["responses"].pop("404", None)
        set_body(operation, hf_body(run, settings), fitting(hf_example(run), settings))
        paths[f"/models/{name}"] = {"post": operation}
    if "post" in paths.get("/", {}):  # served when one model is: its body is that model's
        (run,) = runs.values()
        set_body(paths["/"]["post"], hf_body(run, settings), fitting(hf_example(run), settings))
    for name in REQUEST_MODELS:
        document.get("components", {}).get("schemas", {}).pop(name, None)
    if settings.api_key is not None:
        document.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        for path, operations in paths.items():
            for method, operation in operations.items():
                if (method.upper(), path) not in PUBLIC:
                    operation["security"] = [{"bearer": []}]
    return document


EXAMPLES = {"text": "a gripping film", "question": "Who won?", "context": "Ann won the race.",
            "masked": "Paris is the [MASK] of France."}


def hf_tasks(run: inference.Run) -> str:
    task = HF_TASKS[run.head]
    return "feature-extraction and sentence-similarity" if task == "feature-extraction" else task


def hf_example(run: inference.Run) -> dict:
    task = HF_TASKS[run.head]
    if task == "question-answering":
        return {"inputs": {"question": EXAMPLES["question"], "context": EXAMPLES["context"]}}
    return {"inputs": EXAMPLES["masked" if task == "fill-mask" else "context" if task == "token-classification"
                               else "text"]}


def fitting(example: dict, s: ServeSettings) -> dict | None:
    """`example`, where its texts fit the server's limits (a tiny --max-text-chars may refuse it): else none."""
    fits = all(len(t) <= s.max_text_chars for t in EXAMPLES.values()) and len(EXAMPLES["context"]) <= min(
        s.max_context_chars, s.max_text_chars) and len(EXAMPLES["question"]) <= s.max_question_chars
    return example if fits else None


def set_body(operation: dict, schema: dict, example: dict | None = None) -> None:
    media = {"schema": schema, **({"example": example} if example is not None else {})}
    operation["requestBody"] = {"content": {"application/json": media}, "required": True}
    if "422" in operation["responses"]:
        described = operation["responses"]["422"]
        described["description"] = f"{described['description']}; {TOO_LARGE}"
