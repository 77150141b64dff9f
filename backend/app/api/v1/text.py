from typing import Annotated

from fastapi import APIRouter, Header
from shared.text import (
    OPTIONS_BY_OPERATION,
    BatchRequest,
    BatchResponse,
    Operation,
    OperationInfo,
    OperationsResponse,
    TextProcessRequest,
    TextProcessResponse,
)

from app.api.deps import PrincipalDep, ResourcesDep, SettingsDep
from app.api.responses import PROVIDER_ERRORS, errors
from app.core.exceptions import ValidationError

router = APIRouter(prefix="/text", tags=["text"])

_DESCRIPTIONS = {
    Operation.SUMMARIZE: "A short summary of the text.",
    Operation.SENTIMENT: "Positive, negative or neutral, with a score and a confidence.",
    Operation.KEY_POINTS: "The most important points of the text.",
    Operation.QUESTIONS: "Questions the text answers.",
    Operation.QA: "The answer to `question`, from the text only.",
}
CacheControl = Annotated[
    str | None,
    Header(description="`no-cache` skips the cache read (the fresh answer is still cached)."),
]


def _reads_cache(cache_control: str | None) -> bool:
    return "no-cache" not in (cache_control or "").lower()


@router.get("/operations", summary="The operations and their options")
async def operations(_principal: PrincipalDep) -> OperationsResponse:
    return OperationsResponse(
        operations=[
            OperationInfo(
                name=operation,
                description=_DESCRIPTIONS[operation],
                options=sorted(OPTIONS_BY_OPERATION[operation]),
                requires_question=operation is Operation.QA,
            )
            for operation in Operation
        ]
    )


@router.post(
    "/process",
    summary="Process one text",
    responses={**errors(400, 413, 422, 429), **PROVIDER_ERRORS},
)
async def process(
    body: TextProcessRequest,
    principal: PrincipalDep,
    resources: ResourcesDep,
    cache_control: CacheControl = None,
) -> TextProcessResponse:
    return await resources.text_processor.process(
        body, principal.key_id, read_cache=_reads_cache(cache_control)
    )


@router.post(
    "/batch",
    summary="Process several texts; each item gets a result or an error, in order",
    responses={**errors(400, 413, 422, 429), 503: PROVIDER_ERRORS[503]},
)
async def batch(
    body: BatchRequest,
    principal: PrincipalDep,
    resources: ResourcesDep,
    settings: SettingsDep,
    cache_control: CacheControl = None,
) -> BatchResponse:
    if len(body.items) > settings.batch_max_items:
        raise ValidationError(
            f"A batch holds at most {settings.batch_max_items} items; got {len(body.items)}.",
            details={"max_items": settings.batch_max_items},
        )
    return await resources.text_processor.process_batch(
        body.items, principal.key_id, read_cache=_reads_cache(cache_control)
    )
