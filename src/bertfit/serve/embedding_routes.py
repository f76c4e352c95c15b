"""The routes of search: Text Embeddings Inference's POST /embed and /rerank, OpenAI's POST /v1/embeddings, and the
Hugging Face feature-extraction and sentence-similarity tasks (called from `hf`). Each validates its request, names
the field at fault, and hands the texts to `Service.answer`; none touches the model.

A text longer than the model reads is refused unless the request asks for truncation (TEI's `truncate`), as TEI and
OpenAI refuse it: a vector of the first 256 tokens of a long document is not what a caller who did not ask expects.
`dimensions` is honoured only as the model's own: these models were not trained for shortened vectors.
"""
# No `from __future__ import annotations`: FastAPI reads the request schemas off the handlers' annotations.
import base64

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .. import inference
from ..errors import DataError
from . import embedding_schemas as schemas
from .errors import RequestError
from .routes import ERRORS, check_texts


def add_routes(app: FastAPI, service) -> None:
    settings = service.settings

    @app.post("/embed", response_model=list[list[float]], responses=ERRORS,
              summary="Text Embeddings Inference's /embed: one vector per text, from a sentence-embedding model")
    async def embed(body: schemas.EmbedRequest, request: Request):
        batcher = service.pick(body.model, "/embed")
        one = isinstance(body.inputs, str)
        texts = [body.inputs] if one else body.inputs
        check_texts("inputs", texts, settings, one)
        check_options(batcher, body.dimensions, body.prompt_name)
        answers = await service.answer(request, batcher, "inputs", inference.prepare_embed, texts, body.normalize,
                                       bool(body.truncate))
        return JSONResponse([a["embedding"].tolist() for a in answers])

    @app.post("/v1/embeddings", response_model=schemas.OpenAIEmbeddingResponse, responses=ERRORS,
              summary="OpenAI's embeddings route: the vectors of a sentence-embedding model, as floats or base64")
    async def openai_embeddings(body: schemas.OpenAIEmbeddingRequest, request: Request):
        batcher = service.pick(body.model, "/v1/embeddings")
        one = isinstance(body.input, str)
        texts = [body.input] if one else body.input
        if any(not isinstance(text, str) for text in texts):
            raise RequestError(422, "input: token ids are not read (they would be another tokenizer's); send text",
                               "input")
        check_texts("input", texts, settings, one)
        check_options(batcher, body.dimensions, None)
        answers = await service.answer(request, batcher, "input", inference.prepare_embed, texts, None, False)
        data = [{"object": "embedding", "index": i, "embedding": encoded(a["embedding"], body.encoding_format)}
                for i, a in enumerate(answers)]
        tokens = sum(a["tokens"] for a in answers)
        return JSONResponse({"object": "list", "data": data, "model": batcher.name,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    @app.post("/rerank", response_model=list[schemas.Rank], responses=ERRORS,
              summary="Text Embeddings Inference's /rerank: passages ranked by a cross-encoder (a regression or "
                      "two-label classification run) against a query, best first")
    async def rerank(body: schemas.RerankRequest, request: Request):
        batcher = service.pick(body.model, "/rerank")
        run = batcher.run
        if not reranks(run):
            raise RequestError(422, f"model {batcher.name!r} labels {len(run.labels)} classes "
                                    f"({', '.join(run.labels)}); reranking needs a regression run (STS-B) or a "
                                    f"two-label one (MRPC, QNLI, your own relevance file)", "model")
        check_texts("query", [body.query], settings, one=True)
        check_texts("texts", body.texts, settings)
        answers = await service.answer(request, batcher, "texts", prepare_pairs, [body.query] * len(body.texts),
                                       body.texts, bool(body.truncate))
        scores = [inference.relevance(run, a, body.raw_scores) for a in answers]
        order = sorted(range(len(scores)), key=lambda i: -scores[i])  # stable: ties keep the order sent
        return JSONResponse([{"index": i, "score": scores[i], **({"text": body.texts[i]} if body.return_text else {})}
                             for i in order])


def reranks(run: inference.Run) -> bool:
    """A cross-encoder: a regression run (its score) or a two-label one (the probability of its positive label)."""
    return run.labels == ["score"] or len(run.labels) == 2


def check_options(batcher, dimensions: int | None, prompt_name: str | None) -> None:
    """`dimensions` only as the model's own; no prompts (the model's folder declares none)."""
    sentence = batcher.run.sentence
    if dimensions is not None and dimensions != sentence.dimensions:
        raise RequestError(422, f"dimensions: model {batcher.name!r} makes {sentence.dimensions}-dimensional vectors "
                                f"and was not trained for shorter ones; leave dimensions out", "dimensions")
    if prompt_name is not None:
        raise RequestError(422, f"prompt_name: model {batcher.name!r} has no prompts", "prompt_name")


def encoded(vector: np.ndarray, encoding_format: str):
    """A vector as OpenAI sends it: floats, or base64 of its little-endian float32 bytes."""
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector.tolist()


def prepare_pairs(run: inference.Run, queries: list[str], texts: list[str], truncate: bool) -> inference.Prepared:
    """(query, passage) pairs encoded as the run encoded its pairs; a pair the run would cut is refused unless
    `truncate`."""
    prepared = inference.prepare_texts(run, queries, texts)
    if not truncate and any(prepared.truncated):
        i = prepared.truncated.index(True)
        raise DataError(f"texts[{i}] with the query is longer than the model's {run.max_seq_length} tokens; send "
                        f"a shorter text, or truncate: true to cut it")
    return prepared


async def feature_extraction(service, batcher, body, request: Request) -> list:
    """The Hugging Face format for a sentence-embedding model: feature-extraction (inputs: text or texts; a vector
    each, in a list even for one text, as TEI answers) or sentence-similarity (inputs: {source_sentence,
    sentences}; the cosine of each sentence's vector with the source's)."""
    from .schemas import SimilarityInput

    run, settings = batcher.run, service.settings
    if body.parameters is not None and body.parameters.model_dump(exclude_none=True):
        name = next(iter(body.parameters.model_dump(exclude_none=True)))
        raise RequestError(422, f"parameters.{name} is not a parameter of feature-extraction or sentence-similarity "
                                f"(model {batcher.name!r} is a sentence-embedding model)", f"parameters.{name}")
    if isinstance(body.inputs, SimilarityInput):
        for name in ("normalize", "truncate", "truncation_direction", "prompt_name", "dimensions", "encoding_format"):
            if getattr(body, name) is not None:
                raise RequestError(422, f"{name} is a field of feature-extraction, not of sentence-similarity", name)
        check_texts("inputs.source_sentence", [body.inputs.source_sentence], settings, one=True)
        check_texts("inputs.sentences", body.inputs.sentences, settings)
        texts = [body.inputs.source_sentence, *body.inputs.sentences]
        if len(texts) > settings.max_inputs:
            raise RequestError(422, f"inputs.sentences has {len(body.inputs.sentences)} entries; with the source "
                                    f"sentence at most {settings.max_inputs} texts per request (--max-inputs)",
                               "inputs.sentences")
        answers = await service.answer(request, batcher, "inputs", inference.prepare_embed, texts, True, True)
        source, others = answers[0]["embedding"], np.stack([a["embedding"] for a in answers[1:]])
        return [float(x) for x in others @ source]
    one = isinstance(body.inputs, str)
    texts = [body.inputs] if one else body.inputs
    if any(not isinstance(text, str) for text in texts):
        raise RequestError(422, f"model {batcher.name!r} does feature-extraction and sentence-similarity: inputs is "
                                f"text, texts, or {{\"source_sentence\": ..., \"sentences\": [...]}}", "inputs")
    check_texts("inputs", texts, settings, one)
    check_options(batcher, body.dimensions, body.prompt_name)
    normalize = True if body.normalize is None else body.normalize
    answers = await service.answer(request, batcher, "inputs", inference.prepare_embed, texts, normalize,
                                   bool(body.truncate))
    return [a["embedding"].tolist() for a in answers]
