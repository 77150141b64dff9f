"""Text-processing contracts: operations, their options and their typed results."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict, JsonValue

from shared.errors import ErrorDetail

MAX_TEXT_LENGTH = 10_000
MAX_QUESTION_LENGTH = 500


class Operation(StrEnum):
    SUMMARIZE = "summarize"
    SENTIMENT = "sentiment"
    KEY_POINTS = "key_points"
    QUESTIONS = "questions"
    QA = "qa"


class TextOptions(BaseModel):
    """Per-operation options; an option that does not belong to the operation is rejected."""

    model_config = ConfigDict(extra="forbid")

    max_sentences: int | None = Field(
        default=None, ge=1, le=20, description="summarize: sentences in the summary (default 3)."
    )
    max_points: int | None = Field(
        default=None, ge=1, le=20, description="key_points: points to extract (default 5)."
    )
    max_questions: int | None = Field(
        default=None, ge=1, le=10, description="questions: questions to generate (default 3)."
    )

    @field_validator("max_sentences", "max_points", "max_questions", mode="before")
    @classmethod
    def _json_integer(cls, value: Any) -> Any:
        """JSON Schema's integer: 3 and 3.0 pass; `true` and "3", which pydantic would
        otherwise read as 1 and 3, are refused as the document says."""
        if isinstance(value, bool | str):
            raise ValueError("must be an integer")
        return value


OPTIONS_BY_OPERATION: dict[Operation, frozenset[str]] = {
    Operation.SUMMARIZE: frozenset({"max_sentences"}),
    Operation.SENTIMENT: frozenset(),
    Operation.KEY_POINTS: frozenset({"max_points"}),
    Operation.QUESTIONS: frozenset({"max_questions"}),
    Operation.QA: frozenset(),
}

# For the OpenAPI document: at least one character that is neither whitespace nor a control
# character. Enforced by `_check_operation_fields` and, for control characters, by the
# server, which removes them before processing.
_HAS_CONTENT = r"[^\s\x00-\x1f\x7f-\x9f]"
NonBlankText = Annotated[
    str,
    Field(min_length=1, max_length=MAX_TEXT_LENGTH, json_schema_extra={"pattern": _HAS_CONTENT}),
]


def _operation_rules() -> list[JsonValue]:
    """`_check_operation_fields` in JSON Schema, so the OpenAPI document states the rules too.

    Per operation: the options of other operations are refused, and `question` is required
    (and not blank) for `qa`, absent or null otherwise. The contract fuzzer checks that the
    document and the validator agree.
    """
    every_option = frozenset().union(*OPTIONS_BY_OPERATION.values())
    rules: list[JsonValue] = []
    for operation, allowed in OPTIONS_BY_OPERATION.items():
        properties: JsonDict = {}
        if foreign := sorted(every_option - allowed):
            properties["options"] = {"not": {"anyOf": [{"required": [o]} for o in foreign]}}
        then: JsonDict = {"properties": properties}
        if operation is Operation.QA:
            properties["question"] = {"type": "string", "pattern": r"\S"}
            then["required"] = ["question"]
        else:
            properties["question"] = {"type": "null"}
        when: JsonDict = {"properties": {"operation": {"const": operation.value}}}
        rules.append({"if": when, "then": then})
    return rules


class TextProcessRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"allOf": _operation_rules()})

    operation: Operation
    text: NonBlankText = Field(
        description=f"The text to process, 1 to {MAX_TEXT_LENGTH} characters."
    )
    options: TextOptions = Field(default_factory=TextOptions)
    question: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_QUESTION_LENGTH,
        description="Required for `qa`, refused for every other operation.",
    )

    @model_validator(mode="after")
    def _check_operation_fields(self) -> "TextProcessRequest":
        if not self.text.strip():
            raise ValueError("text must contain non-whitespace characters")
        if self.operation is Operation.QA and not (self.question and self.question.strip()):
            raise ValueError("operation 'qa' requires a non-empty 'question'")
        if self.operation is not Operation.QA and self.question is not None:
            raise ValueError(f"'question' is only accepted by 'qa', not by '{self.operation}'")
        allowed = OPTIONS_BY_OPERATION[self.operation]
        given = set(self.options.model_fields_set)
        if extra := sorted(given - allowed):
            raise ValueError(f"option(s) {extra} do not apply to '{self.operation}'")
        return self


class SummaryResult(BaseModel):
    kind: Literal["summary"] = "summary"
    summary: str


class SentimentResult(BaseModel):
    kind: Literal["sentiment"] = "sentiment"
    sentiment: Literal["positive", "negative", "neutral"]
    score: float = Field(ge=-1.0, le=1.0, description="-1 very negative to 1 very positive.")
    confidence: float = Field(ge=0.0, le=1.0)


class KeyPointsResult(BaseModel):
    kind: Literal["key_points"] = "key_points"
    key_points: list[str]


class QuestionsResult(BaseModel):
    kind: Literal["questions"] = "questions"
    questions: list[str]


class AnswerResult(BaseModel):
    kind: Literal["answer"] = "answer"
    answer: str
    confidence: float = Field(ge=0.0, le=1.0)
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


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[TextProcessRequest] = Field(min_length=1, description="Processed in order.")


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


class HistoryPage(BaseModel):
    items: list[HistoryRecord]
    total: int
    page: int
    page_size: int


def options_dict(options: TextOptions) -> dict[str, Any]:
    """The options a caller actually set, for cache keys and provider prompts."""
    return options.model_dump(exclude_none=True)
