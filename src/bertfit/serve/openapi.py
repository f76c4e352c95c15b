"""The OpenAPI document at /openapi.json, made to say what this server accepts: its own models by name, its own
limits, and for the Hugging Face format one path per served model with that model's task. FastAPI's document
(from the pydantic models in `schemas`) gives the responses; the request bodies are written here, because what
a server accepts depends on what it serves (a fill-mask run's parameters are not a classifier's) and on its
settings (--max-inputs, --max-text-chars, ...), which pydantic's static models cannot say.

What no JSON Schema can say is left to the 422 response's description: the tokens of a text (a fill-mask
text must fit the model whole), the windows and tokens of a request (--max-windows, --max-request-tokens) and
the [MASK]s of a request (--max-masks). tests/test_serve_fuzz.py holds the document to this: Schemathesis
sends what it allows and what it forbids, and every answer must agree.
"""
from __future__ import annotations

import copy

from .. import inference
from ..serve_settings import ServeSettings
from .guard import PUBLIC

# The request bodies FastAPI documents from the pydantic models: replaced below, so dropped from the components
REQUEST_MODELS = ("ClassifyRequest", "AnswerRequest", "FillMaskRequest", "Question", "InferenceRequest", "TextPair",
                  "QuestionInput", "Parameters")
# The own routes, by head (app.ROUTES says the same the other way round)
OWN_ROUTES = {"/v1/classify": ("classification",), "/v1/answer": ("qa",), "/v1/fill-mask": inference.FILL_MASK_HEADS}
HF_TASKS = {"classification": "text-classification", "qa": "question-answering", "mlm": "fill-mask",
            "pretraining": "fill-mask"}
HF_PARAMETERS = ("top_k", "function_to_apply", "targets", "align_to_words", "doc_stride", "handle_impossible_answer",
                 "max_answer_len", "max_question_len", "max_seq_len")
TOO_LARGE = ("422: also past a limit no schema can state: a fill-mask text longer than the model reads, more "
             "windows or tokens than --max-windows or --max-request-tokens, more [MASK]s than --max-masks, "
             "a lone surrogate in a text")
NULL = {"type": "null"}
GIVEN = {"not": NULL}


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


def model_field(names: list[str]) -> tuple[dict, list[str]]:
    """The `model` field: a served name that answers the route; required where several do."""
    if len(names) == 1:
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


def hf_body(run: inference.Run, s: ServeSettings) -> dict:
    """{"inputs", "parameters"} of the Hugging Face format for one run's task: its inputs, and its parameters
    (the others' only as null, which counts as left out)."""
    task = HF_TASKS[run.head]
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
        version_2 = run.extra.get("version", "1.1") == "2.0"
        fixed = {"top_k": 1, "align_to_words": True, "handle_impossible_answer": version_2,
                 "doc_stride": run.extra.get("doc_stride", 128),
                 "max_answer_len": run.extra.get("max_answer_length", 30),
                 "max_question_len": run.extra.get("max_query_length", 64), "max_seq_len": run.max_seq_length}
        accepted = {name: {"enum": [value, None]} for name, value in fixed.items()}
    else:
        inputs = {"anyOf": [masked_text(s), some(masked_text(s), s.max_inputs)]}
        accepted = {"top_k": maybe(integer(1, min(50, run.tokenizer.get_vocab_size())))}
    parameters = record({name: accepted.get(name, NULL) for name in HF_PARAMETERS})
    return record({"inputs": inputs, "parameters": maybe(parameters)}, ["inputs"])


# ---- the document -------------------------------------------------------------------------------

def tighten(document: dict, runs: dict[str, inference.Run], settings: ServeSettings) -> dict:
    """FastAPI's `document` with the request bodies this server accepts; a route no served run answers left out."""
    document = copy.deepcopy(document)
    paths = document["paths"]
    for path, heads in OWN_ROUTES.items():
        names = [name for name, run in runs.items() if run.head in heads]
        if not names:
            paths.pop(path, None)  # every request gets 404: no served model answers it
            continue
        if path == "/v1/classify":
            body, example = classify_body(settings, names), {"texts": [EXAMPLES["text"]]}
        elif path == "/v1/answer":
            body, example = answer_body(settings, names), {"question": EXAMPLES["question"],
                                                           "context": EXAMPLES["context"]}
        else:
            body = fill_mask_body(settings, names, runs[names[0]].tokenizer.get_vocab_size())
            example = {"text": EXAMPLES["masked"]}
        set_body(paths[path]["post"], body, fitting({**example, "model": names[0]}, settings))
    template = paths.pop("/models/{name}")["post"]
    for name, run in runs.items():
        operation = copy.deepcopy(template)
        operation["parameters"] = [p for p in operation.get("parameters", []) if p.get("name") != "name"]
        operation["summary"] = f"{name}: {HF_TASKS[run.head]} in the Hugging Face inference format"
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


def hf_example(run: inference.Run) -> dict:
    task = HF_TASKS[run.head]
    if task == "question-answering":
        return {"inputs": {"question": EXAMPLES["question"], "context": EXAMPLES["context"]}}
    return {"inputs": EXAMPLES["masked" if task == "fill-mask" else "text"]}


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
