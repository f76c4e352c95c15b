"""The request and response bodies as pydantic models: they validate requests, name the field at fault, and
make the OpenAPI document at /openapi.json. Limits that depend on the settings or the model (counts, lengths,
tokens) are checked by the routes, and documented there as 422."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool

from .errors import SURROGATES


def whole_characters(text: str) -> str:
    found = SURROGATES.search(text)
    if found:
        raise ValueError(f"a lone surrogate ({found.group()!r}) at character {found.start() + 1} is no character; "
                         f"send text as valid UTF-8")
    return text


def json_number(value):
    """What JSON calls a number: pydantic would also read true as 1 and "3" as 3, which the document forbids."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a whole number")
    return value


Text = Annotated[str, AfterValidator(whole_characters)]
Integer = Annotated[int, BeforeValidator(json_number)]  # 5 or 5.0; not true, not "5"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # pydantic never turns a number into a string; no unknown field


# ---- errors -------------------------------------------------------------------------------------

class ErrorDetail(BaseModel):
    type: str
    message: str
    status: int
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_responses(*statuses: int) -> dict:
    """The `responses` of a route: its error statuses, each with the one error shape."""
    meaning = {400: "The body is not valid JSON", 401: "No API key, or a wrong one", 404: "No such model",
               408: "The body did not arrive within --timeout",
               413: "The body is larger than --max-body-bytes", 415: "The body is not application/json",
               422: "A field is missing, of the wrong type, empty, or past a limit; `field` names it",
               499: "The client closed the connection (never received)",
               503: "The queue is full (Retry-After) or the server is shutting down",
               504: "No answer within --timeout"}
    return {status: {"model": ErrorResponse, "description": meaning[status]} for status in statuses}


# ---- bertfit's own routes -----------------------------------------------------------------------

class ClassifyRequest(Strict):
    texts: list[Text] | None = None
    pairs: list[tuple[Text, Text]] | None = None
    model: Text | None = None


class Prediction(BaseModel):
    label: str | None = None
    probability: float | None = None
    probabilities: dict[str, float] | None = None
    score: float | None = None  # regression runs
    truncated: bool


class ClassifyResponse(BaseModel):
    model: str
    predictions: list[Prediction]


class Question(Strict):
    question: Text
    context: Text


class AnswerRequest(Strict):
    question: Text | None = None
    context: Text | None = None
    questions: list[Question] | None = None
    model: Text | None = None


class Answer(BaseModel):
    answer: str  # "" when a v2.0 run judges the question unanswerable
    score: float | None
    probability: float | None
    start: int | None  # character offsets into the context
    end: int | None
    null_odds: float
    windows: int


class AnswerResponse(Answer):
    model: str


class AnswersResponse(BaseModel):
    model: str
    answers: list[Answer]


class FillMaskRequest(Strict):
    text: Text | None = None
    texts: list[Text] | None = None
    top_k: Integer = Field(5, ge=1, le=50)
    model: Text | None = None


class Candidate(BaseModel):
    token: str
    token_id: int
    probability: float


class FillMaskResponse(BaseModel):
    model: str
    # text: one list of candidates per [MASK]; texts: such a list per text
    predictions: list[list[Candidate]] | list[list[list[Candidate]]]


Aggregation = Literal["none", "simple", "first", "average", "max"]  # tag_decoding.STRATEGIES


class TagRequest(Strict):
    text: Text | None = None
    texts: list[Text] | None = None
    aggregation_strategy: Aggregation = "first"
    model: Text | None = None


class TokenEntity(BaseModel):
    """An entity (entity_group) or, with aggregation_strategy none, a sub-token (entity, index)."""
    entity_group: str | None = None
    entity: str | None = None
    index: int | None = None
    score: float
    word: str
    start: int
    end: int


class TagResponse(BaseModel):
    model: str
    # text: its entities; texts: a list of those per text
    predictions: list[TokenEntity] | list[list[TokenEntity]]


class Health(BaseModel):
    status: str
    models: list[str]
    queued: int
    in_flight: int
    passes: int
    served: int


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="allow")  # each task adds what a client needs (labels, threshold, ...)
    name: str
    task: str
    head: str
    engine: str
    precision: str
    max_seq_length: int


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


# ---- the Hugging Face inference format ----------------------------------------------------------

class TextPair(Strict):
    text: Text
    text_pair: Text | None = None


class QuestionInput(Strict):
    question: Text
    context: Text


class SimilarityInput(Strict):
    """sentence-similarity: one sentence against others, scored by the cosine of their embeddings."""
    source_sentence: Text
    sentences: list[Text]


class Parameters(Strict):
    """The parameters of the text-classification, question-answering and fill-mask tasks; each task reads its own
    and refuses the others'."""
    top_k: Integer | None = Field(None, ge=1)
    function_to_apply: Literal["softmax", "sigmoid", "none"] | None = None
    targets: list[Text] | None = None
    align_to_words: StrictBool | None = None
    doc_stride: Integer | None = None
    handle_impossible_answer: StrictBool | None = None
    max_answer_len: Integer | None = None
    max_question_len: Integer | None = None
    max_seq_len: Integer | None = None
    aggregation_strategy: Aggregation | None = None
    ignore_labels: list[Text] | None = None
    stride: Integer | None = None


class InferenceRequest(Strict):
    inputs: (Text | TextPair | QuestionInput | SimilarityInput | list[Text] | list[TextPair]
             | list[QuestionInput])
    parameters: Parameters | None = None
    # feature-extraction's own, beside inputs as TEI reads them (refused for every other task)
    normalize: StrictBool | None = None
    truncate: StrictBool | None = None
    truncation_direction: Literal["Right", "right"] | None = None
    prompt_name: Text | None = None
    dimensions: Integer | None = Field(None, ge=1)
    encoding_format: Literal["float"] | None = None


class ClassificationOutput(BaseModel):
    label: str
    score: float


class QuestionAnsweringOutput(BaseModel):
    answer: str
    score: float
    start: int
    end: int


class FillMaskOutput(BaseModel):
    sequence: str
    score: float
    token: int
    token_str: str


InferenceResponse = (list[list[ClassificationOutput]] | QuestionAnsweringOutput | list[QuestionAnsweringOutput]
                     | list[FillMaskOutput] | list[list[FillMaskOutput]] | list[list[list[FillMaskOutput]]]
                     # several texts, one with a [MASK] and another with more
                     | list[list[FillMaskOutput] | list[list[FillMaskOutput]]]
                     | list[list[float]] | list[float]  # feature-extraction; sentence-similarity
                     | list[TokenEntity] | list[list[TokenEntity]])
