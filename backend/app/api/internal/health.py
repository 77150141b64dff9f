from fastapi import APIRouter
from shared.health import ReadinessResponse

from app.api.deps import ResourcesDep
from app.services.health import check_readiness

router = APIRouter(tags=["health"])


@router.get("/health", summary="Readiness: each dependency as ok, degraded or down")
async def ready(resources: ResourcesDep) -> ReadinessResponse:
    return await check_readiness(resources.database, resources.cache, resources.provider)
