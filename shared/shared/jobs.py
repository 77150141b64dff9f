"""Batch-job contracts: a job of many texts, processed by workers, followed and read back later.

POST /v1/jobs takes a `JobRequest` and answers 202 with `JobAccepted`; GET /v1/jobs/{job_id}
answers `JobInfo`; GET /v1/jobs/{job_id}/results answers a `JobResultsPage` (or every item as
NDJSON, one `JobItemResult` per line, or CSV with `CSV_COLUMNS`); GET /v1/jobs answers a
`JobList`; DELETE /v1/jobs/{job_id} cancels what has not started and answers `JobInfo`.
The operator's GET /internal/jobs answers `JobsOverview`.
"""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.errors import ErrorDetail
from shared.text import (
    OPTIONS_TYPE_BY_OPERATION,
    REQUEST_TYPE_BY_OPERATION,
    Operation,
    Text,
    TextProcessResponse,
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


class JobRequest(BaseModel):
    """One operation (with its options and question) applied to every item's text."""

    model_config = ConfigDict(extra="forbid")

    operation: Operation
    options: dict[str, Any] = Field(
        default_factory=dict, description="The operation's options, as /v1/text/process takes."
    )
    question: str | None = Field(default=None, description="Only `qa` takes (and needs) one.")
    items: list[JobItemInput] = Field(
        min_length=1,
        description="The texts, processed in any order and answered in this order. At most "
        "JOB_MAX_ITEMS (10,000 by default).",
    )

    @model_validator(mode="after")
    def _check_operation(self) -> "JobRequest":
        """The operation's own request type judges options and question, as for one text."""
        try:
            self.item_request(self.items[0].text)
        except ValidationError as exc:
            raise ValueError(_messages(exc)) from None
        return self

    def item_request(self, text: str) -> BaseModel:
        """The single-text request an item stands for (a `TextProcessRequest`)."""
        try:
            options = OPTIONS_TYPE_BY_OPERATION[self.operation].model_validate(self.options)
        except ValidationError as exc:
            raise ValueError(f"options: {_messages(exc)}") from None
        fields: dict[str, Any] = {"operation": self.operation, "text": text, "options": options}
        if self.question is not None:
            fields["question"] = self.question
        return REQUEST_TYPE_BY_OPERATION[self.operation].model_validate(fields)


def _messages(exc: ValidationError) -> str:
    return "; ".join(
        ".".join(str(part) for part in error["loc"])
        + ": "
        + error["msg"].removeprefix("Value error, ")
        if error["loc"]
        else error["msg"].removeprefix("Value error, ")
        for error in exc.errors(include_url=False)
    )


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
