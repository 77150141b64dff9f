"""Batch-job contracts: a job of many texts, processed by workers, followed and read back later.

POST /v1/jobs takes a `JobRequest` and answers 202 with `JobAccepted`; GET /v1/jobs/{job_id}
answers `JobInfo`; GET /v1/jobs/{job_id}/results answers a `JobResultsPage` (or every item as
NDJSON, one `JobItemResult` per line, or CSV with `CSV_COLUMNS`); GET /v1/jobs answers a
`JobList`; DELETE /v1/jobs/{job_id} cancels what has not started and answers `JobInfo`.
The operator's GET /internal/jobs answers `JobsOverview`.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    TypeAdapter,
    field_validator,
)

from shared.errors import ErrorDetail
from shared.text import (
    REQUEST_TYPE_BY_OPERATION,
    BaseOptions,
    BaseTextRequest,
    KeyPointsOptions,
    Operation,
    QaOptions,
    Question,
    QuestionsOptions,
    SentimentOptions,
    SummarizeOptions,
    Text,
    TextProcessResponse,
    refuse_question,
)

MAX_ITEM_ID_LENGTH = 200
# Media types of the results' downloads (also accepted as `format=ndjson` / `format=csv`).
NDJSON = "application/x-ndjson"
CSV = "text/csv"
CSV_COLUMNS = (
    "index",
    "id",
    "status",
    "cached",
    "model",
    "result",  # the operation's result as JSON
    "error_code",
    "error_message",
)


class JobStatus(StrEnum):
    QUEUED = "queued"  # no item has started yet
    RUNNING = "running"
    COMPLETED = "completed"  # every item finished, at least one of them with a result
    FAILED = "failed"  # every item finished with an error
    CANCELLED = "cancelled"  # cancelled: items not started then will never run


class ItemStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_JOB_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class JobItemInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(
        default=None,
        max_length=MAX_ITEM_ID_LENGTH,
        description="The caller's own reference for the item, echoed in its result.",
    )
    text: Text


class BaseJobRequest(BaseModel):
    """One operation (with its options and question) applied to every item's text."""

    model_config = ConfigDict(extra="forbid")

    operation: Operation
    options: BaseOptions
    question: str | None = None
    items: list[JobItemInput] = Field(
        min_length=1,
        description="The texts, processed in any order and answered in this order. At most "
        "JOB_MAX_ITEMS (10,000 by default).",
    )

    def item_request(self, text: str) -> BaseTextRequest:
        """The single-text request an item stands for (a `TextProcessRequest`)."""
        fields: dict[str, Any] = {"operation": self.operation, "text": text}
        fields |= {"options": self.options, "question": self.question}
        return REQUEST_TYPE_BY_OPERATION[self.operation].model_validate(fields)


class _JobWithoutQuestion(BaseJobRequest):
    question: None = Field(default=None, description="Only `qa` takes a question.")
    _refuse_question = field_validator("question", mode="before")(refuse_question)


class SummarizeJob(_JobWithoutQuestion):
    operation: Literal[Operation.SUMMARIZE]
    options: SummarizeOptions = Field(default_factory=SummarizeOptions)


class SentimentJob(_JobWithoutQuestion):
    operation: Literal[Operation.SENTIMENT]
    options: SentimentOptions = Field(default_factory=SentimentOptions)


class KeyPointsJob(_JobWithoutQuestion):
    operation: Literal[Operation.KEY_POINTS]
    options: KeyPointsOptions = Field(default_factory=KeyPointsOptions)


class QuestionsJob(_JobWithoutQuestion):
    operation: Literal[Operation.QUESTIONS]
    options: QuestionsOptions = Field(default_factory=QuestionsOptions)


class QaJob(BaseJobRequest):
    operation: Literal[Operation.QA]
    options: QaOptions = Field(default_factory=QaOptions)
    question: Question


# One schema per operation, chosen by `operation`, as for /v1/text/process: the document shows
# each operation's own options, and that `qa` needs a question. Build one from a dict with
# `JOB_REQUEST.validate_python(...)`.
JobRequest = Annotated[
    SummarizeJob | SentimentJob | KeyPointsJob | QuestionsJob | QaJob,
    Discriminator("operation"),
]
JOB_REQUEST: TypeAdapter[JobRequest] = TypeAdapter(JobRequest)
JOB_TYPE_BY_OPERATION: dict[Operation, type[BaseJobRequest]] = {
    Operation.SUMMARIZE: SummarizeJob,
    Operation.SENTIMENT: SentimentJob,
    Operation.KEY_POINTS: KeyPointsJob,
    Operation.QUESTIONS: QuestionsJob,
    Operation.QA: QaJob,
}


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
    total: int


class JobInfo(BaseModel):
    job_id: str
    operation: Operation
    status: JobStatus
    total: int
    done: int = Field(description="Items answered.")
    failed: int = Field(description="Items that ended with an error (see their results).")
    cancelled: int = Field(description="Items that will not run: the job was cancelled first.")
    pending: int = Field(description="Items queued or running.")
    created_at: datetime
    started_at: datetime | None = Field(default=None, description="When the first item started.")
    finished_at: datetime | None = Field(
        default=None, description="When the last item finished, or the job was cancelled."
    )


class JobList(BaseModel):
    items: list[JobInfo] = Field(description="The caller's jobs, newest first.")
    total: int
    page: int
    page_size: int


class JobItemResult(BaseModel):
    index: int = Field(description="The item's position in the request, from 0.")
    id: str | None = None
    status: ItemStatus
    response: TextProcessResponse | None = None
    error: ErrorDetail | None = None


class JobResultsPage(BaseModel):
    job_id: str
    status: JobStatus
    items: list[JobItemResult] = Field(description="In item order.")
    total: int
    page: int
    page_size: int


class WorkerSeen(BaseModel):
    name: str
    last_seen: datetime
    concurrency: int


class StuckJob(BaseModel):
    job_id: str
    key_id: str
    pending: int
    last_progress_at: datetime


class JobsOverview(BaseModel):
    broker: str = Field(description="redis (workers anywhere) or memory (in this process).")
    queue_depth: int | None = Field(
        description="Messages not yet acknowledged (waiting or in a worker's hands); null when "
        "the broker cannot say."
    )
    queued_items: int = Field(description="Items of unfinished jobs not started, per database.")
    running_items: int
    workers: list[WorkerSeen] = Field(description="Workers heard from within the last minute.")
    stuck: list[StuckJob] = Field(
        description="Unfinished jobs with no item finished for JOB_STUCK_SECONDS."
    )
