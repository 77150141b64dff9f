from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

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
    body = generate_latest(resources.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
