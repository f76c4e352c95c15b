"""bertfit's own routes: POST /v1/classify, /v1/answer, /v1/fill-mask and /v1/token-classification. Each validates its request, names
the field at fault, and hands the inputs to `Service.answer`; none touches the model."""
# No `from __future__ import annotations`: FastAPI reads the request schemas off the handlers' annotations.
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .. import inference
from ..serve_settings import ServeSettings
from . import schemas
from .errors import RequestError

ERRORS = schemas.error_responses(400, 401, 404, 408, 413, 415, 422, 503, 504)


def add_routes(app: FastAPI, service) -> None:
    settings = service.settings

    @app.post("/v1/classify", response_model=schemas.ClassifyResponse, responses=ERRORS,
              summary="Label texts or text pairs with a fine-tuned classification run")
    async def classify(body: schemas.ClassifyRequest, request: Request):
        batcher = service.pick(body.model, "/v1/classify")
        if (body.texts is None) == (body.pairs is None):
            raise RequestError(422, "give exactly one of texts (a list of strings) or pairs (a list of [a, b])", "texts")
        if body.texts is not None:
            check_texts("texts", body.texts, settings)
            answers = await service.answer(request, batcher, "texts", inference.prepare_texts, body.texts)
        else:
            check_texts("pairs", body.pairs, settings)
            answers = await service.answer(request, batcher, "pairs", inference.prepare_texts,
                                           [a for a, _ in body.pairs], [b for _, b in body.pairs])
        return JSONResponse({"model": batcher.name, "predictions": answers})

    @app.post("/v1/answer", response_model=schemas.AnswerResponse | schemas.AnswersResponse, responses=ERRORS,
              summary="Answer questions from contexts with a fine-tuned SQuAD run")
    async def answer(body: schemas.AnswerRequest, request: Request):
        batcher = service.pick(body.model, "/v1/answer")
        one = body.questions is None
        if one and (body.question is None or body.context is None):
            raise RequestError(422, "give question and context, or questions: [{question, context}, ...]",
                               "question" if body.question is None else "context")
        if not one and (body.question is not None or body.context is not None):
            raise RequestError(422, "give question and context, or questions, not both", "questions")
        pairs = [(body.question, body.context)] if one else [(q.question, q.context) for q in body.questions]
        check_questions(pairs, "questions", one, settings)
        answers = await service.answer(request, batcher, "context" if one else "questions",
                                       inference.prepare_questions, pairs)
        return JSONResponse({"model": batcher.name, **answers[0]} if one else {"model": batcher.name, "answers": answers})

    @app.post("/v1/fill-mask", response_model=schemas.FillMaskResponse, responses=ERRORS,
              summary="The most probable tokens for each [MASK] of a text, with a masked-language model")
    async def fill_mask(body: schemas.FillMaskRequest, request: Request):
        batcher = service.pick(body.model, "/v1/fill-mask")
        texts, name, one = text_or_texts(body, "a string with [MASK]s")
        check_masked(name, texts, settings, one)
        check_top_k(batcher.run, body.top_k, "top_k")
        answers = await service.answer(request, batcher, name, inference.prepare_masked, texts, body.top_k,
                                       settings.max_masks)
        return JSONResponse({"model": batcher.name, "predictions": answers[0] if one else answers})

    @app.post("/v1/token-classification", response_model=schemas.TagResponse, responses=ERRORS,
              summary="The entities (or tags) of texts with a `bertfit ner` run, with character offsets")
    async def tag(body: schemas.TagRequest, request: Request):
        batcher = service.pick(body.model, "/v1/token-classification")
        texts, name, one = text_or_texts(body, "a string")
        check_texts(name, texts, settings, one)
        answers = await service.answer(request, batcher, name, inference.prepare_tags, texts,
                                       body.aggregation_strategy)
        return JSONResponse({"model": batcher.name, "predictions": answers[0] if one else answers})


def text_or_texts(body, what: str) -> tuple[list[str], str, bool]:
    """The texts of a request that sends one `text` (`what` says what it is) or a list of `texts`, not both:
    (texts, the field they came in, whether it was one text)."""
    if (body.text is None) == (body.texts is None):
        raise RequestError(422, f"give text ({what}) or texts (a list of them)",
                           "texts" if body.texts is not None else "text")
    return ([body.text], "text", True) if body.texts is None else (body.texts, "texts", False)


def check_texts(name: str, values: list, settings: ServeSettings, one: bool = False) -> None:
    """Texts (or pairs) to classify: some, not too many, none empty or too long. `one`: `name` is a single text."""
    if not values:
        raise RequestError(422, f"{name} is an empty list; give at least one", name)
    if len(values) > settings.max_inputs:
        raise RequestError(422, f"{name} has {len(values)} entries; at most {settings.max_inputs} per request "
                                f"(--max-inputs)", name)
    for i, value in enumerate(values):
        for j, text in enumerate(value if isinstance(value, tuple) else (value,)):
            where = (name if one else f"{name}[{i}]") + (f"[{j}]" if isinstance(value, tuple) else "")
            if not text.strip():
                raise RequestError(422, f"{where} is empty: there is no text to read", where)
            if len(text) > settings.max_text_chars:
                raise RequestError(422, f"{where} has {len(text)} characters; at most {settings.max_text_chars} "
                                        f"(--max-text-chars; the model reads only its first tokens anyway)", where)


def check_masked(name: str, texts: list[str], settings: ServeSettings, one: bool = False) -> None:
    """Texts to fill: as check_texts, each with a [MASK], and at most --max-masks of them together (each mask
    keeps its candidates until the answer is sent)."""
    check_texts(name, texts, settings, one)
    for i, text in enumerate(texts):
        if inference.MASK_TOKEN not in text:
            where = name if one else f"{name}[{i}]"
            raise RequestError(422, f"{where} has no {inference.MASK_TOKEN}; write {inference.MASK_TOKEN} where a "
                                    f"word is to be filled in", where)
    masks = sum(text.count(inference.MASK_TOKEN) for text in texts)
    if masks > settings.max_masks:
        raise RequestError(422, f"{name} {'holds' if one else 'hold'} {masks} {inference.MASK_TOKEN}s; at most "
                                f"{settings.max_masks} in one request (--max-masks): send fewer, or split them over "
                                f"requests", name)


def check_top_k(run: inference.Run, top_k: int, field: str) -> None:
    """At most as many candidates per [MASK] as the tokenizer has tokens."""
    vocabulary = run.tokenizer.get_vocab_size()
    if not 1 <= top_k <= vocabulary:
        raise RequestError(422, f"{field} must be between 1 and the tokenizer's {vocabulary} tokens, not {top_k}", field)


def check_questions(pairs: list[tuple[str, str]], name: str, one: bool, settings: ServeSettings) -> None:
    """(question, context) pairs: some, not too many, none empty or too long. `one`: a single question given as
    top-level fields (/v1/answer) or as `name`'s (the Hugging Face format's inputs)."""
    if not pairs:
        raise RequestError(422, f"{name} is an empty list; give at least one", name)
    if len(pairs) > settings.max_inputs:
        raise RequestError(422, f"{name} has {len(pairs)} entries; at most {settings.max_inputs} per request "
                                f"(--max-inputs)", name)
    for i, (question, context) in enumerate(pairs):
        where = (f"{name}." if name != "questions" else "") if one else f"{name}[{i}]."
        if not question.strip():
            raise RequestError(422, f"{where}question is empty: there is nothing to answer", f"{where}question")
        if not context.strip():
            raise RequestError(422, f"{where}context is empty: there is nothing to find the answer in",
                               f"{where}context")
        if len(question) > settings.max_question_chars:
            raise RequestError(422, f"{where}question has {len(question)} characters; at most "
                                    f"{settings.max_question_chars} (--max-question-chars)", f"{where}question")
        if len(context) > settings.max_context_chars:
            raise RequestError(422, f"{where}context has {len(context)} characters; at most "
                                    f"{settings.max_context_chars} (--max-context-chars)", f"{where}context")
