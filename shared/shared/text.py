"""Text-processing contracts: operations, their options and their typed results."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


OPTIONS_BY_OPERATION: dict[Operation, frozenset[str]] = {
    Operation.SUMMARIZE: frozenset({"max_sentences"}),
    Operation.SENTIMENT: frozenset(),
    Operation.KEY_POINTS: frozenset({"max_points"}),
    Operation.QUESTIONS: frozenset({"max_questions"}),
    Operation.QA: frozenset(),
}

NonBlankText = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_LENGTH)]


class TextProcessRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
    outcome: str = Field(description="`ok` or the error code the request ended with.")
    created_at: datetime


class HistoryPage(BaseModel):
    items: list[HistoryRecord]
    total: int
    page: int
    page_size: int


def options_dict(options: TextOptions) -> dict[str, Any]:
    """The options a caller actually set, for cache keys and provider prompts."""
    return options.model_dump(exclude_none=True)
