from typing import Annotated

from fastapi import APIRouter, Body
from shared.operator import CacheStats, InvalidateRequest, InvalidateResponse

from app.api import examples
from app.api.deps import ResourcesDep
from app.api.responses import BODY_ERRORS, errors

router = APIRouter(prefix="/cache", tags=["cache"])


@router.get("/stats", summary="Hits, misses, hit ratio, backend and key count")
async def stats(resources: ResourcesDep) -> CacheStats:
    current = await resources.cache.stats()
    return CacheStats(
        backend=current.backend,
        hits=current.hits,
        misses=current.misses,
        stale_hits=current.stale_hits,
        hit_ratio=current.hit_ratio,
        key_count=current.key_count,
    )


@router.post(
    "/invalidate",
    summary="Remove cached answers of one operation, or all",
    responses={**BODY_ERRORS, **errors(503)},
)
async def invalidate(
    resources: ResourcesDep,
    body: Annotated[InvalidateRequest, Body(openapi_examples=examples.INVALIDATE)],
) -> InvalidateResponse:
    namespace = body.operation.value if body.operation else None
    return InvalidateResponse(removed=await resources.cache.invalidate(namespace))
