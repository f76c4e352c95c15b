"""The bodies of the embedding and reranking routes, in the shapes their clients send: Text Embeddings
Inference's /embed and /rerank, and OpenAI's /v1/embeddings."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, StrictBool

from .schemas import Integer, Strict, Text

TruncationDirection = Literal["Right", "right"]  # TEI's default; cutting the start of a text is not offered


class EmbedRequest(Strict):
    """TEI's /embed."""
    inputs: Text | list[Text]
    normalize: StrictBool = True  # Strict: true or false, as the document says, not 1 or "yes"
    truncate: StrictBool | None = None  # None and false: a text longer than the model reads is refused
    truncation_direction: TruncationDirection = "Right"
    prompt_name: Text | None = None
    dimensions: Integer | None = Field(None, ge=1)
    model: Text | None = None


class RerankRequest(Strict):
    """TEI's /rerank: a query against passages, scored by a cross-encoder (a classification run)."""
    query: Text
    texts: list[Text]
    truncate: StrictBool | None = None
    truncation_direction: TruncationDirection = "Right"
    raw_scores: StrictBool = False
    return_text: StrictBool = False
    model: Text | None = None


class Rank(BaseModel):
    index: int
    score: float
    text: str | None = None


class OpenAIEmbeddingRequest(Strict):
    """OpenAI's /v1/embeddings. Token-id inputs are read by the schema so that the route can refuse them by name."""
    input: Text | list[Text] | list[int] | list[list[int]]
    model: Text
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Integer | None = Field(None, ge=1)
    user: Text | None = None


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str  # str: base64 of little-endian float32


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"]
    data: list[OpenAIEmbedding]
    model: str
    usage: Usage
