"""Text-processing contracts: operations, their options and their typed results."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import CoreSchema, ErrorDetails, core_schema

from shared.errors import ErrorDetail

MAX_TEXT_LENGTH = 10_000
MAX_QUESTION_LENGTH = 500


class Operation(StrEnum):
    SUMMARIZE = "summarize"
    SENTIMENT = "sentiment"
    KEY_POINTS = "key_points"
    QUESTIONS = "questions"
    QA = "qa"

    def __repr__(self) -> str:
        # Pydantic lists the expected tags of a discriminated union by repr: 'qa' reads better
        # in an error message than <Operation.QA: 'qa'>.
        return repr(self.value)


class BaseOptions(BaseModel):
    """An operation's options: unknown keys are refused, and an option of another operation is
    named as such (a caller who sent `max_points` to `summarize` learns where it belongs)."""

    model_config = ConfigDict(extra="forbid")
    operation: ClassVar[Operation]

    @model_validator(mode="before")
    @classmethod
    def _refuse_other_operations_options(cls, data: Any) -> Any:
        if isinstance(data, dict):
            own = set(cls.model_fields)
            if foreign := sorted(k for k in data if k in _EVERY_OPTION and k not in own):
                raise ValueError(f"option(s) {foreign} do not apply to '{cls.operation}'")
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _json_integers(cls, value: Any) -> Any:
        """JSON Schema's integer: 3 and 3.0 pass; `true` and "3", which pydantic would
        otherwise read as 1 and 3, are refused as the document says."""
        if isinstance(value, bool | str):
            raise ValueError("must be an integer")
        return value


class SummarizeOptions(BaseOptions):
    operation = Operation.SUMMARIZE
    max_sentences: int | None = Field(
        default=None, ge=1, le=20, description="Sentences in the summary (default 3)."
    )


class SentimentOptions(BaseOptions):
    operation = Operation.SENTIMENT


class KeyPointsOptions(BaseOptions):
    operation = Operation.KEY_POINTS
    max_points: int | None = Field(
        default=None, ge=1, le=20, description="Points to extract (default 5)."
    )


class QuestionsOptions(BaseOptions):
    operation = Operation.QUESTIONS
    max_questions: int | None = Field(
        default=None, ge=1, le=10, description="Questions to generate (default 3)."
    )


class QaOptions(BaseOptions):
    operation = Operation.QA


OPTIONS_TYPE_BY_OPERATION: dict[Operation, type[BaseOptions]] = {
    options.operation: options
    for options in (
        SummarizeOptions,
        SentimentOptions,
        KeyPointsOptions,
        QuestionsOptions,
        QaOptions,
    )
}
OPTIONS_BY_OPERATION: dict[Operation, frozenset[str]] = {
    operation: frozenset(options.model_fields)
    for operation, options in OPTIONS_TYPE_BY_OPERATION.items()
}
_EVERY_OPTION = frozenset().union(*OPTIONS_BY_OPERATION.values())


# At least one character that is neither whitespace nor a control character (which the server
# removes before processing): stated in the document as a pattern, enforced by `_has_content`
# with a message that says what is wrong.
_CONTENT = r"[^\s\x00-\x1f\x7f-\x9f]"


def _has_content(field: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if re.search(_CONTENT, value) is None:
            raise ValueError(f"{field} has no content: only whitespace or control characters")
        return value

    return check


Text = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_TEXT_LENGTH,
        json_schema_extra={"pattern": _CONTENT},
        description=f"The text to process, 1 to {MAX_TEXT_LENGTH} characters.",
    ),
    AfterValidator(_has_content("text")),
]
Question = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_QUESTION_LENGTH,
        json_schema_extra={"pattern": _CONTENT},
        description="What to answer from the text.",
    ),
    AfterValidator(_has_content("question")),
]


class BaseTextRequest(BaseModel):
    """What every operation takes; each subclass narrows `operation`, `options` and `question`."""

    model_config = ConfigDict(extra="forbid")

    operation: Operation
    text: Text
    options: BaseOptions
    question: str | None = None


def refuse_question(value: Any, info: ValidationInfo) -> Any:
    """A `question` validator for the operations that take none (texts and jobs alike): null is
    accepted, as it always was; a question is refused, naming the one operation that takes one."""
    if value is not None:
        operation = info.data.get("operation")  # validated first: it is the first field
        raise ValueError(f"'question' is only accepted by 'qa', not by '{operation}'")
    return value


class _NoQuestion(BaseTextRequest):
    question: None = Field(default=None, description="Only `qa` takes a question.")
    _refuse_question = field_validator("question", mode="before")(refuse_question)


class SummarizeRequest(_NoQuestion):
    operation: Literal[Operation.SUMMARIZE]
    options: SummarizeOptions = Field(default_factory=SummarizeOptions)


class SentimentRequest(_NoQuestion):
    operation: Literal[Operation.SENTIMENT]
    options: SentimentOptions = Field(default_factory=SentimentOptions)


class KeyPointsRequest(_NoQuestion):
    operation: Literal[Operation.KEY_POINTS]
    options: KeyPointsOptions = Field(default_factory=KeyPointsOptions)


class QuestionsRequest(_NoQuestion):
    operation: Literal[Operation.QUESTIONS]
    options: QuestionsOptions = Field(default_factory=QuestionsOptions)


class QaRequest(BaseTextRequest):
    operation: Literal[Operation.QA]
    options: QaOptions = Field(default_factory=QaOptions)
    question: Question


# One schema per operation, chosen by `operation`: the OpenAPI document shows each operation's
# own fields, and an error points at the field that is wrong.
TextProcessRequest = Annotated[
    SummarizeRequest | SentimentRequest | KeyPointsRequest | QuestionsRequest | QaRequest,
    Discriminator("operation"),
]

REQUEST_TYPE_BY_OPERATION: dict[Operation, type[BaseTextRequest]] = {
    Operation.SUMMARIZE: SummarizeRequest,
    Operation.SENTIMENT: SentimentRequest,
    Operation.KEY_POINTS: KeyPointsRequest,
    Operation.QUESTIONS: QuestionsRequest,
    Operation.QA: QaRequest,
}


class SummaryResult(BaseModel):
    kind: Literal["summary"] = "summary"
    summary: str


class SentimentResult(BaseModel):
    kind: Literal["sentiment"] = "sentiment"
    sentiment: Literal["positive", "negative", "neutral"]
    score: float = Field(
        ge=-1.0,
        le=1.0,
        description="-1 very negative to 1 very positive. From the offline `local` model "
        "(`model: local`) a heuristic: a sum of lexicon word scores, not a model's judgement.",
    )
    confidence: float = Field(
        ge=0.0,
        le=1.0,
        description="0 to 1. From the `local` model a heuristic (how much sentiment-bearing "
        "text there is and how much it agrees), not a calibrated probability.",
    )


class KeyPointsResult(BaseModel):
    kind: Literal["key_points"] = "key_points"
    key_points: list[str]


class QuestionsResult(BaseModel):
    kind: Literal["questions"] = "questions"
    questions: list[str]


class AnswerResult(BaseModel):
    kind: Literal["answer"] = "answer"
    answer: str
    confidence: float = Field(
        ge=0.0,
        le=1.0,
        description="0 to 1. From the offline `local` model (`model: local`) a heuristic: the "
        "word overlap between the question and the chosen sentence, not a probability.",
    )
    evidence: str | None = Field(default=None, description="The passage the answer rests on.")


OperationResult = Annotated[
    SummaryResult | SentimentResult | KeyPointsResult | QuestionsResult | AnswerResult,
    Field(discriminator="kind"),
]

RESULT_TYPE_BY_OPERATION: dict[Operation, type[BaseModel]] = {
    Operation.SUMMARIZE: SummaryResult,
    Operation.SENTIMENT: SentimentResult,
    Operation.KEY_POINTS: KeyPointsResult,
    Operation.QUESTIONS: QuestionsResult,
    Operation.QA: AnswerResult,
}


class TextProcessResponse(BaseModel):
    operation: Operation
    result: OperationResult
    model: str = Field(
        description="The model that produced the result, `local` for the offline one."
    )
    cached: bool = Field(description="True when the answer came from the cache.")
    degraded: bool = Field(
        default=False,
        description="True when served from a stale cache entry while the provider is unavailable.",
    )
    processing_time_ms: float


# The events of POST /v1/text/stream, in order: `meta`, any number of `delta`, then `done` or
# `error` (whose data is the `ErrorResponse` body the JSON error would carry).
# The operations whose result is prose, and the field their `delta` events spell out. The others
# (a label and scores, a list) are only useful whole: their stream has no `delta`, only `done`.
TEXT_FIELDS: dict[Operation, str] = {Operation.SUMMARIZE: "summary", Operation.QA: "answer"}


class StreamMeta(BaseModel):
    operation: Operation
    model: str
    cached: bool
    degraded: bool


class StreamDelta(BaseModel):
    text: str = Field(description="The next fragment of the result's text, appended to the last.")


class StreamDone(TextProcessResponse):
    time_to_first_token_ms: float = Field(
        description="From the request to the first text sent: the first `delta`, or the result "
        "itself for a cached answer or an operation without deltas."
    )


class OperationInfo(BaseModel):
    name: Operation
    description: str
    options: list[str]
    requires_question: bool


class OperationsResponse(BaseModel):
    operations: list[OperationInfo]


@dataclass(frozen=True, slots=True)
class InvalidItem:
    """A batch item that failed validation, kept in its place to be answered with its errors."""

    errors: list[ErrorDetails]
    input: Any

    @classmethod
    def __get_pydantic_core_schema__(cls, _source: Any, _handler: Any) -> CoreSchema:
        # Never read from JSON nor shown in the document: it only holds a refused item until
        # the batch answers it.
        return core_schema.is_instance_schema(cls)


_ONE_REQUEST: TypeAdapter[TextProcessRequest] = TypeAdapter(TextProcessRequest)


def _request_or_invalid(value: Any) -> "TextProcessRequest | InvalidItem":
    try:
        return _ONE_REQUEST.validate_python(value)
    except ValidationError as exc:
        return InvalidItem(exc.errors(include_url=False), value)


# Documented as a request, validated one by one: an invalid item does not refuse the batch.
BatchItem = Annotated[
    TextProcessRequest | SkipJsonSchema[InvalidItem],
    PlainValidator(_request_or_invalid, json_schema_input_type=TextProcessRequest),
]


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[BatchItem] = Field(
        min_length=1,
        description="Processed in order. An item that is not a valid request is answered in "
        "its place with a `validation_error`; the others are processed.",
    )


class BatchItemResult(BaseModel):
    index: int
    response: TextProcessResponse | None = None
    error: ErrorDetail | None = None


class BatchResponse(BaseModel):
    items: list[BatchItemResult]
    succeeded: int
    failed: int


class HistoryRecord(BaseModel):
    id: int
    operation: Operation
    text_length: int
    text_sha256: str
    model: str
    cached: bool
    degraded: bool
    latency_ms: float
    outcome: str = Field(
        description="`ok` (`completed` for a stream), `cancelled` (a stream its client left), "
        "or the error code the request ended with."
    )
    streamed: bool = Field(default=False, description="True for POST /v1/text/stream.")
    time_to_first_token_ms: float | None = Field(
        default=None, description="Streams only: see `StreamDone.time_to_first_token_ms`."
    )
    created_at: datetime
    input_tokens: int | None = Field(
        default=None,
        description="Tokens this request sent to the provider; 0 when it made no call (a cache "
        "hit), null for requests recorded before token counting.",
    )
    output_tokens: int | None = Field(default=None, description="Tokens the provider answered.")
    tokens_estimated: bool = Field(
        default=False,
        description="True when the model counts no tokens and they were estimated (`local`).",
    )
    job_id: str | None = Field(
        default=None, description="The batch job this row is an item of; null for a request."
    )
    job_item: int | None = Field(
        default=None,
        description="The item's position in its job (its `index` in the job's results).",
    )


class HistoryPage(BaseModel):
    items: list[HistoryRecord]
    total: int
    page: int
    page_size: int
    input_tokens: int = Field(default=0, description="Tokens in, over all the caller's requests.")
    output_tokens: int = Field(default=0, description="Tokens out, over all the caller's requests.")


def options_dict(options: BaseModel) -> dict[str, Any]:
    """The options a caller actually set, for cache keys and provider prompts."""
    return options.model_dump(exclude_none=True)
