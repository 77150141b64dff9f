"""Batch jobs: submit many texts at once, follow the job, read its results when they are ready.

Items are processed by workers (`make worker`, or the API's own embedded worker without Redis)
and charged to the key's rate limit as they run: a job over the limit waits, it does not fail.
"""

import csv
import io
import json
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Body, Header, Path, Query
from fastapi.responses import StreamingResponse
from shared.jobs import (
    CSV,
    CSV_COLUMNS,
    NDJSON,
    JobAccepted,
    JobInfo,
    JobItemResult,
    JobList,
    JobRequest,
    JobResultsPage,
)

from app.api import examples
from app.api.deps import PrincipalDep, ResourcesDep
from app.api.responses import BODY_ERRORS, errors
from app.core.exceptions import ValidationError
from app.services.auth import Role

router = APIRouter(prefix="/jobs", tags=["jobs"])
JobId = Annotated[str, Path(min_length=1, max_length=64, description="As POST /v1/jobs gave it.")]


class ResultsFormat(StrEnum):
    JSON = "json"
    NDJSON = "ndjson"
    CSV = "csv"


@router.post(
    "",
    status_code=202,
    summary="Submit a job: one operation over up to JOB_MAX_ITEMS texts",
    description="Answers at once (202) with the job's id; the items are processed by workers "
    "and charged to the key's rate limit as they run (a job over the limit waits). Any invalid "
    "part (an item's text, the operation's options or question, too many items) refuses the "
    "whole job (422). The body may be up to JOB_MAX_BODY_BYTES.",
    responses={**BODY_ERRORS, **errors(503)},
)
async def submit(
    body: Annotated[JobRequest, Body(title="JobRequest", openapi_examples=examples.JOB)],
    principal: PrincipalDep,
    resources: ResourcesDep,
) -> JobAccepted:
    settings = resources.settings
    if len(body.items) > settings.job_max_items:
        raise ValidationError(
            f"A job holds at most {settings.job_max_items} items; got {len(body.items)}.",
            details={"max_items": settings.job_max_items},
        )
    tier = None if principal.role is Role.OPERATOR else principal.tier or settings.default_tier
    return await resources.jobs.submit(body, principal.key_id, tier)


@router.get("", summary="The caller's jobs, newest first", responses=errors(422))
async def list_jobs(
    principal: PrincipalDep,
    resources: ResourcesDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JobList:
    return await resources.jobs.page(principal.key_id, page=page, page_size=page_size)


@router.get("/{job_id}", summary="A job's status, counts and timings", responses=errors(404, 422))
async def job(job_id: JobId, principal: PrincipalDep, resources: ResourcesDep) -> JobInfo:
    return await resources.jobs.info(job_id, principal.key_id)


@router.get(
    "/{job_id}/results",
    summary="Each item's result or error, in item order",
    description="JSON, a page at a time; or every item at once as NDJSON (a `JobItemResult` per "
    "line) or CSV, asked for with `format=ndjson|csv` or an `Accept` header of "
    f"`{NDJSON}` or `{CSV}`. Items not finished yet are listed with their status.",
    responses={
        **errors(404, 422),
        200: {
            "description": "A page of results, or the NDJSON or CSV download.",
            "content": {
                NDJSON: {"schema": {"type": "string"}},
                CSV: {"schema": {"type": "string"}},
            },
        },
    },
    response_model=JobResultsPage,
)
async def results(
    job_id: JobId,
    principal: PrincipalDep,
    resources: ResourcesDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
    format: Annotated[
        ResultsFormat | None, Query(description="Overrides the Accept header.")
    ] = None,
    accept: Annotated[str | None, Header()] = None,
) -> JobResultsPage | StreamingResponse:
    chosen = format or _negotiated(accept)
    if chosen is ResultsFormat.JSON:
        return await resources.jobs.results(
            job_id, principal.key_id, page=page, page_size=page_size
        )
    items = resources.jobs.all_results(job_id, principal.key_id)
    first = await anext(items, None)  # an unknown job is a 404 before the download starts
    if chosen is ResultsFormat.NDJSON:
        body, media_type, extension = _ndjson(first, items), NDJSON, "ndjson"
    else:
        body, media_type, extension = _csv(first, items), CSV, "csv"
    return StreamingResponse(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="job-{job_id}.{extension}"'},
    )


@router.delete(
    "/{job_id}",
    summary="Cancel a job: items not started will not run",
    description="Items already running finish and keep their results. A finished job is left "
    "as it is. Answers the job's status after the cancellation.",
    responses=errors(404, 422),
)
async def cancel(job_id: JobId, principal: PrincipalDep, resources: ResourcesDep) -> JobInfo:
    return await resources.jobs.cancel(job_id, principal.key_id)


def _negotiated(accept: str | None) -> ResultsFormat:
    accept = (accept or "").lower()
    if NDJSON in accept:
        return ResultsFormat.NDJSON
    if CSV in accept:
        return ResultsFormat.CSV
    return ResultsFormat.JSON


async def _ndjson(
    first: JobItemResult | None, rest: AsyncIterator[JobItemResult]
) -> AsyncIterator[str]:
    if first is not None:
        yield first.model_dump_json() + "\n"
    async for item in rest:
        yield item.model_dump_json() + "\n"


async def _csv(
    first: JobItemResult | None, rest: AsyncIterator[JobItemResult]
) -> AsyncIterator[str]:
    yield _csv_line(CSV_COLUMNS)
    if first is not None:
        yield _csv_line(_csv_row(first))
    async for item in rest:
        yield _csv_line(_csv_row(item))


def _csv_row(item: JobItemResult) -> tuple[object, ...]:
    response, error = item.response, item.error
    return (
        item.index,
        item.id or "",
        item.status.value,
        "" if response is None else str(response.cached).lower(),
        "" if response is None else response.model,
        "" if response is None else json.dumps(response.result.model_dump(mode="json")),
        "" if error is None else error.code,
        "" if error is None else error.message,
    )


def _csv_line(values: tuple[object, ...]) -> str:
    line = io.StringIO()
    csv.writer(line).writerow(values)
    return line.getvalue()
