"""The Hugging Face inference format beside bertfit's own routes: POST /models/{name}, and POST / when one model
is served, take {"inputs": ..., "parameters": {...}} and answer in the shapes of the text-classification,
question-answering and fill-mask tasks (and, for a sentence-embedding model, feature-extraction and
sentence-similarity, by the shape of the inputs), so that `huggingface_hub.InferenceClient(URL)` works unchanged.

Where a parameter would change how the run reads its inputs (doc_stride, max_seq_len, ...), the run's own
setting is the only one accepted: the model answers as it was trained and evaluated, never otherwise.
"""
# No `from __future__ import annotations`: FastAPI reads the request schemas off the handlers' annotations.
import math

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .. import heads, inference
from . import schemas
from .errors import RequestError
from .routes import ERRORS, check_masked, check_questions, check_texts, check_top_k

TASKS = {name: head.hf_task for name, head in heads.HEADS.items()}
FEATURE_EXTRACTION = ("normalize", "truncate", "truncation_direction", "prompt_name", "dimensions", "encoding_format")
PARAMETERS = {"text-classification": {"top_k", "function_to_apply"},
              "question-answering": {"top_k", "align_to_words", "doc_stride", "handle_impossible_answer",
                                     "max_answer_len", "max_question_len", "max_seq_len"},
              "fill-mask": {"top_k", "targets"}, "feature-extraction": set(),
              "token-classification": {"aggregation_strategy", "ignore_labels", "stride"}}


def add_routes(app: FastAPI, service) -> None:
    summary = ("The Hugging Face inference format (text-classification, question-answering, fill-mask by the "
               "model's task): huggingface_hub.InferenceClient(URL) calls it")

    @app.post("/models/{name}", response_model=schemas.InferenceResponse, responses=ERRORS, summary=summary)
    async def named(name: str, body: schemas.InferenceRequest, request: Request):
        return await infer(service, service.pick(name, "*", "name"), body, request)

    if len(service.runs) != 1:
        return  # POST / answers for the one model served; with several, POST /models/NAME names one
    (name,) = service.runs

    @app.post("/", response_model=schemas.InferenceResponse, responses=ERRORS,
              summary=summary + f"; the one model served ({name})")
    async def only(body: schemas.InferenceRequest, request: Request):
        return await infer(service, service.pick(None, "*", "name"), body, request)


async def infer(service, batcher, body, request: Request) -> JSONResponse:
    run = batcher.run
    task = TASKS[run.head]
    parameters = body.parameters.model_dump(exclude_none=True) if body.parameters is not None else {}
    if task != "feature-extraction":
        for name in FEATURE_EXTRACTION:
            if getattr(body, name) is not None:
                raise RequestError(422, f"{name} is a field of feature-extraction; model {batcher.name!r} is a "
                                        f"{run.task} run", name)
    for name in parameters:
        if name not in PARAMETERS[task]:
            raise RequestError(422, f"parameters.{name} is not a parameter of {task} (model {batcher.name!r} is a "
                                    f"{run.task} run); its parameters: {', '.join(sorted(PARAMETERS[task])) or 'none'}",
                               f"parameters.{name}")
    one = not isinstance(body.inputs, list)
    items = [body.inputs] if one else body.inputs
    if not items:
        raise RequestError(422, "inputs is an empty list; give at least one", "inputs")
    if task == "question-answering":
        return JSONResponse(await answer(service, batcher, items, one, parameters, request))
    if task == "feature-extraction":
        from .embedding_routes import feature_extraction

        return JSONResponse(await feature_extraction(service, batcher, body, request))
    if any(isinstance(item, schemas.SimilarityInput) for item in items):
        raise RequestError(422, f"model {batcher.name!r} does {task}: inputs is text, not a source sentence and "
                                f"sentences (sentence-similarity needs a sentence-embedding model)", "inputs")
    if any(isinstance(item, schemas.QuestionInput) for item in items):
        raise RequestError(422, f"model {batcher.name!r} does {task}: inputs is text, not a question and a context",
                           "inputs")
    if task == "text-classification":
        return JSONResponse(await classify(service, batcher, items, one, parameters, request))
    if task == "token-classification":
        return JSONResponse(await tag(service, batcher, items, one, parameters, request))
    return JSONResponse(await fill_mask(service, batcher, items, one, parameters, request))


async def classify(service, batcher, items, one: bool, parameters: dict, request: Request) -> list:
    """[[{label, score}, ...]] per text, most probable first (top_k of them); a regression run: its score."""
    if parameters.get("function_to_apply", "softmax") != "softmax":
        raise RequestError(422, f"parameters.function_to_apply: this server answers softmax probabilities only, not "
                                f"{parameters['function_to_apply']!r}", "parameters.function_to_apply")
    pairs = [item if isinstance(item, schemas.TextPair) else schemas.TextPair(text=item) for item in items]
    if any(p.text_pair is not None for p in pairs) != all(p.text_pair is not None for p in pairs):
        raise RequestError(422, "give every input a text_pair, or none", "inputs")
    if pairs[0].text_pair is None:
        check_texts("inputs", [p.text for p in pairs], service.settings, one)
        answers = await service.answer(request, batcher, "inputs", inference.prepare_texts, [p.text for p in pairs])
    else:
        check_texts("inputs", [(p.text, p.text_pair) for p in pairs], service.settings, one)
        answers = await service.answer(request, batcher, "inputs", inference.prepare_texts,
                                       [p.text for p in pairs], [p.text_pair for p in pairs])
    top_k = parameters.get("top_k")
    results = []
    for prediction in answers:
        if "score" in prediction:
            results.append([{"label": "score", "score": prediction["score"]}])
            continue
        ranked = sorted(prediction["probabilities"].items(), key=lambda kv: -kv[1])[:top_k]
        results.append([{"label": label, "score": score} for label, score in ranked])
    return results


async def answer(service, batcher, items, one: bool, parameters: dict, request: Request):
    """{answer, score, start, end} per question; a v2.0 run's "no answer" is answer "" at 0..0, scored by the
    probability that there is none."""
    run = batcher.run
    if any(not isinstance(item, schemas.QuestionInput) for item in items):
        raise RequestError(422, f"model {batcher.name!r} does question-answering: inputs is "
                                f'{{"question": ..., "context": ...}}', "inputs")
    version_2 = run.setting("version") == "2.0"
    fixed = {"top_k": 1, "align_to_words": True, "handle_impossible_answer": version_2,
             "doc_stride": run.setting("doc_stride"), "max_answer_len": run.setting("max_answer_length"),
             "max_question_len": run.setting("max_query_length"), "max_seq_len": run.max_seq_length}
    for name, value in parameters.items():
        if value != fixed[name]:
            raise RequestError(422, f"parameters.{name}: model {batcher.name!r} answers with {name} "
                                    f"{str(fixed[name]).lower() if isinstance(value, bool) else fixed[name]}, as it "
                                    f"was trained and evaluated; leave it out", f"parameters.{name}")
    pairs = [(item.question, item.context) for item in items]
    check_questions(pairs, "inputs", one, service.settings)
    answers = await service.answer(request, batcher, "inputs", inference.prepare_questions, pairs)
    results = []
    for found in answers:
        if found["answer"]:
            results.append({"answer": found["answer"], "score": found["probability"], "start": found["start"],
                            "end": found["end"]})
        else:
            results.append({"answer": "", "score": 1 / (1 + math.exp(-max(-60.0, min(60.0, found["null_odds"])))),
                            "start": 0, "end": 0})
    return results[0] if one else results


async def fill_mask(service, batcher, items, one: bool, parameters: dict, request: Request) -> list:
    """[{sequence, score, token, token_str}, ...] for a text with one [MASK]; a list of those per [MASK] for a text
    with several (as transformers' pipeline answers); a list of either per text for a list of texts."""
    if "targets" in parameters:
        raise RequestError(422, "parameters.targets is not supported: the server ranks the whole vocabulary; "
                                "use top_k", "parameters.targets")
    top_k = parameters.get("top_k", 5)
    if top_k > 50:
        raise RequestError(422, f"parameters.top_k is {top_k}; at most 50", "parameters.top_k")
    if any(isinstance(item, schemas.TextPair) for item in items):
        raise RequestError(422, f"model {batcher.name!r} does fill-mask: inputs is a text with [MASK]s", "inputs")
    check_masked("inputs", items, service.settings, one)
    check_top_k(batcher.run, top_k, "parameters.top_k")
    answers = await service.answer(request, batcher, "inputs", inference.prepare_masked, items, top_k,
                                   service.settings.max_masks)
    results = []
    for text, masks in zip(items, answers):
        filled = [[{"sequence": fill(text, i, c["token"]), "score": c["probability"], "token": c["token_id"],
                    "token_str": c["token"]} for c in candidates] for i, candidates in enumerate(masks)]
        results.append(filled[0] if len(filled) == 1 else filled)
    return results[0] if one else results


async def tag(service, batcher, items, one: bool, parameters: dict, request: Request) -> list:
    """The entities of a text, as the token-classification pipeline gives them (entity_group, score, word, start,
    end; with aggregation_strategy none: entity, score, index, word, start, end); a list of those per text."""
    if any(isinstance(item, schemas.TextPair) for item in items):
        raise RequestError(422, f"model {batcher.name!r} does token-classification: inputs is text", "inputs")
    if parameters.get("ignore_labels", ["O"]) != ["O"]:
        raise RequestError(422, "parameters.ignore_labels: this server leaves out O alone; leave it out or give "
                                '["O"]', "parameters.ignore_labels")
    stride = batcher.run.setting("stride")
    if parameters.get("stride", stride) != stride:
        raise RequestError(422, f"parameters.stride: model {batcher.name!r} reads long texts in windows that share "
                                f"{stride} tokens, as it was trained and evaluated; leave it out", "parameters.stride")
    check_texts("inputs", items, service.settings, one)
    answers = await service.answer(request, batcher, "inputs", inference.prepare_tags, items,
                                   parameters.get("aggregation_strategy", "simple"))
    return answers[0] if one else answers


def fill(text: str, index: int, token: str) -> str:
    """`text` with its `index`-th [MASK] replaced by `token` (a word piece joins the word before it)."""
    parts = text.split(inference.MASK_TOKEN)
    before, after = inference.MASK_TOKEN.join(parts[: index + 1]), inference.MASK_TOKEN.join(parts[index + 1 :])
    if token.startswith("##"):
        return before.rstrip() + token[2:] + after
    return before + token + after
