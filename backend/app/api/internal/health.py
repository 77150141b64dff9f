from fastapi import APIRouter
from shared.health import ReadinessResponse

from app.api.deps import ResourcesDep
from app.services.health import cache_health, database_health, provider_health, readiness

router = APIRouter(tags=["health"])


@router.get("/health", summary="Readiness: each dependency as ok, degraded or down")
async def ready(resources: ResourcesDep) -> ReadinessResponse:
    provider = resources.provider
    return readiness(
        [
            await database_health(resources.database),
            await cache_health(resources.cache),
            await provider_health(provider.breaker, provider.model_id),
        ]
    )
