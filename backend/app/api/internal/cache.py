from fastapi import APIRouter
from shared.operator import CacheStats, InvalidateRequest, InvalidateResponse

from app.api.deps import ResourcesDep
from app.api.responses import errors

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
    responses=errors(400, 413, 422, 503),
)
async def invalidate(resources: ResourcesDep, body: InvalidateRequest) -> InvalidateResponse:
    namespace = body.operation.value if body.operation else None
    return InvalidateResponse(removed=await resources.cache.invalidate(namespace))
