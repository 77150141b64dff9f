from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from shared.text import Operation

from app.api.deps import ResourcesDep
from app.api.responses import errors

router = APIRouter(prefix="/cache", tags=["cache"])


class CacheStatsResponse(BaseModel):
    backend: str = Field(description="redis, memory, or memory-fallback while Redis is down.")
    hits: int
    misses: int
    stale_hits: int
    hit_ratio: float
    key_count: int


class InvalidateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operation: Operation | None = Field(default=None, description="Only this operation; or all.")


class InvalidateResponse(BaseModel):
    removed: int


@router.get("/stats", summary="Hits, misses, hit ratio, backend and key count")
async def stats(resources: ResourcesDep) -> CacheStatsResponse:
    current = await resources.cache.stats()
    return CacheStatsResponse(
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
