from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.deps import ResourcesDep

router = APIRouter(tags=["metrics"])

_PROMETHEUS_TEXT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The Prometheus text exposition format.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


@router.get(
    "/metrics", summary="Prometheus metrics", response_class=Response, responses=_PROMETHEUS_TEXT
)
async def metrics(resources: ResourcesDep) -> Response:
    return Response(resources.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
