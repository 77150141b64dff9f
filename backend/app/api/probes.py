"""Probes for orchestrators and load balancers, without a key: `/healthz` (the process is alive)
and `/readyz` (it can serve). `/internal/health` gives operators the same verdict with details."""

from typing import Any

from fastapi import APIRouter, Response, status
from shared.health import DependencyHealth, LivenessResponse, ReadinessResponse

from app.api.deps import ResourcesDep
from app.api.v1.health import VERSION
from app.services.health import check_readiness

router = APIRouter(tags=["probes"])

_NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": ReadinessResponse, "description": "The database, which it needs, is down."}
}


@router.get("/healthz", summary="Liveness: the process answers (no dependency is called)")
async def healthz() -> LivenessResponse:
    return LivenessResponse(version=VERSION)


@router.get(
    "/readyz",
    summary="Readiness: 200 when the service can serve (`degraded` included), 503 when not",
    description="`degraded`: Redis or the AI provider is impaired and the service answers from "
    "memory or the cache. The details are for operators, at `/internal/health`.",
    responses=_NOT_READY,
)
async def readyz(resources: ResourcesDep, response: Response) -> ReadinessResponse:
    report = await check_readiness(resources.database, resources.cache, resources.provider)
    if report.status == "down":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return ReadinessResponse(
        status=report.status,
        dependencies=[DependencyHealth(name=d.name, status=d.status) for d in report.dependencies],
    )
